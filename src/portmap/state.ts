/**
 * One JSON file per attachment under `<stateDir>/portmap/`, so `shoal port` can answer by
 * container id, name or netns, and a conflict error can name the container holding a port.
 *
 * Why files and not only the nft comments: a comment holds 128 bytes and cannot carry the
 * container's name, netns or the mappings as the user wrote them (hostIP "" vs one entry per
 * family), and reading them needs an `nft` exec as root. The rules stay the truth for CHECK and
 * GC; the file is what humans are shown. Files are written to a temporary name and renamed, so
 * a reader never sees half a file.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Attachment, PortMapping } from './config.js';

export interface PortmapRecord {
  network: string;
  containerId: string;
  ifname: string;
  /** The container's name when the runtime sent one (K8S_POD_NAME, as podman does). */
  name?: string;
  netns: string;
  owner: string;
  mappings: PortMapping[];
  /** The container addresses the mappings forward to. */
  containerIPs: string[];
  created: string;
}

/** `stateDir` from the config, else SHOAL_STATE_DIR, else /var/lib/shoal (DESIGN §2). */
export function portmapDir(stateDir: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return path.join(stateDir || env['SHOAL_STATE_DIR'] || '/var/lib/shoal', 'portmap');
}

/** File name: the owner with "/" made safe (network and container id never contain "_" runs). */
export function recordFile(dir: string, a: Pick<Attachment, 'network' | 'containerId' | 'ifname'>): string {
  return path.join(dir, `${a.network}_${a.containerId}_${a.ifname}.json`);
}

export function writeRecord(dir: string, record: PortmapRecord): string {
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  const file = recordFile(dir, record);
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    fs.writeFileSync(tmp, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o644 });
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw new Error(`failed to write port mappings "${file}": ${(err as Error).message}`, { cause: err });
  }
  return file;
}

export function removeRecord(dir: string, a: Pick<Attachment, 'network' | 'containerId' | 'ifname'>): void {
  fs.rmSync(recordFile(dir, a), { force: true });
}

export function readRecord(dir: string, a: Pick<Attachment, 'network' | 'containerId' | 'ifname'>): PortmapRecord | undefined {
  try {
    return JSON.parse(fs.readFileSync(recordFile(dir, a), 'utf8')) as PortmapRecord;
  } catch {
    return undefined;
  }
}

/** Every record in the directory; unreadable or half-written files are skipped. */
export function listRecords(dir: string): PortmapRecord[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const out: PortmapRecord[] = [];
  for (const name of names.filter((n) => n.endsWith('.json')).sort()) {
    try {
      const rec = JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8')) as PortmapRecord;
      if (rec && typeof rec.containerId === 'string' && Array.isArray(rec.mappings)) out.push(rec);
    } catch {
      // a file being replaced, or not ours: skip
    }
  }
  return out;
}

/** The record whose owner comment is `owner`, for naming the holder of a port. */
export function recordByOwner(dir: string, owner: string): PortmapRecord | undefined {
  return listRecords(dir).find((r) => r.owner === owner);
}
