/**
 * The result cache, as libcni keeps it (/var/lib/cni/results/<net>-<cid>-<ifname>): after a
 * successful ADD the runner stores the final result with the config and the runtime arguments,
 * so DEL can hand plugins their `prevResult` (and run even if the network's conflist has since
 * changed or been removed) and CHECK can verify against what ADD returned.
 *
 * One JSON file per attachment under `<stateDir>/cni-results/`, written by rename so a reader
 * never sees half a file. Same document shape as libcni's `cniCacheV1`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface CachedAttachment {
  kind: 'cniCacheV1';
  containerId: string;
  ifName: string;
  networkName: string;
  netns: string;
  /** The conflist ADD ran with (as JSON text), for DEL after the file is gone. */
  config: string;
  cniArgs: Array<[string, string]>;
  capabilityArgs: Record<string, unknown>;
  /** The chain's final result, in the conflist's cniVersion. */
  result: Record<string, unknown>;
}

export function cacheDir(stateDir: string): string {
  return path.join(stateDir, 'cni-results');
}

function fileOf(stateDir: string, network: string, containerId: string, ifname: string): string {
  const enc = encodeURIComponent;
  return path.join(cacheDir(stateDir), `${enc(network)}-${enc(containerId)}-${enc(ifname)}`);
}

export function writeCached(stateDir: string, entry: CachedAttachment): void {
  const file = fileOf(stateDir, entry.networkName, entry.containerId, entry.ifName);
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(entry), { mode: 0o600 });
  fs.renameSync(tmp, file);
}

export function readCached(stateDir: string, network: string, containerId: string, ifname: string): CachedAttachment | undefined {
  try {
    return JSON.parse(fs.readFileSync(fileOf(stateDir, network, containerId, ifname), 'utf8')) as CachedAttachment;
  } catch {
    return undefined;
  }
}

export function removeCached(stateDir: string, network: string, containerId: string, ifname: string): void {
  fs.rmSync(fileOf(stateDir, network, containerId, ifname), { force: true });
}

/** Every cached attachment (unreadable files are skipped: a crash mid-write leaves only .tmp). */
export function listCached(stateDir: string): CachedAttachment[] {
  let names: string[];
  try {
    names = fs.readdirSync(cacheDir(stateDir));
  } catch {
    return [];
  }
  const out: CachedAttachment[] = [];
  for (const n of names) {
    if (n.includes('.tmp-')) continue;
    try {
      out.push(JSON.parse(fs.readFileSync(path.join(cacheDir(stateDir), n), 'utf8')) as CachedAttachment);
    } catch {
      // skip
    }
  }
  return out;
}
