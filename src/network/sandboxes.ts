/**
 * Records of `shoal run` sandboxes (and of netns attachments made by `shoal network connect`),
 * so `ps`, `stop`, `logs`, `port`, `gc` and `network rm` know what runs where.
 *
 *   sandboxes/<id> -> SandboxRecord (JSON)
 *
 * Liveness is the supervisor's pid plus its start time (from /proc/<pid>/stat), so a recycled
 * pid is never mistaken for a live sandbox.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import type { Store } from '../store/store.js';

export const SANDBOXES_PREFIX = 'sandboxes/';

export interface SandboxAttachment {
  network: string;
  ifname: string;
  addresses: string[];
}

export interface SandboxRecord {
  id: string;
  name: string;
  /** "host", "none", or the network name(s) attached. */
  networkMode: string;
  /** /run/netns/<name> made for the sandbox; undefined with --network host. */
  netns?: string;
  /** The netns is someone else's (network connect to an existing netns): never deleted by us. */
  externalNetns?: boolean;
  attachments: SandboxAttachment[];
  hostname: string;
  aliases: string[];
  ports: Array<{ hostPort: number; containerPort: number; protocol: string; hostIP: string }>;
  command: string[];
  detached: boolean;
  /** The supervising `shoal` process, which DELs everything when the command exits. */
  supervisorPid?: number;
  supervisorStart?: string;
  /** The command's pid (in the host pid namespace). */
  pid?: number;
  logFile?: string;
  /** Directory holding resolv.conf, hosts, hostname for the bind mounts. */
  filesDir?: string;
  status: 'created' | 'running' | 'exited';
  exitCode?: number;
  created: string;
}

export function newSandboxId(): string {
  return randomBytes(32).toString('hex');
}

export function sandboxKey(id: string): string {
  return SANDBOXES_PREFIX + id;
}

export async function putSandbox(store: Store, rec: SandboxRecord): Promise<void> {
  await store.put(sandboxKey(rec.id), JSON.stringify(rec));
}

export async function listSandboxes(store: Store): Promise<SandboxRecord[]> {
  return (await store.list(SANDBOXES_PREFIX)).map((kv) => JSON.parse(kv.value) as SandboxRecord).sort((a, b) => a.created.localeCompare(b.created));
}

/** By exact id, exact name, or unique id prefix (>= 3 characters). */
export async function findSandbox(store: Store, query: string): Promise<SandboxRecord | undefined> {
  const all = await listSandboxes(store);
  const exact = all.find((s) => s.id === query || s.name === query);
  if (exact) return exact;
  if (query.length < 3) return undefined;
  const pre = all.filter((s) => s.id.startsWith(query));
  return pre.length === 1 ? pre[0] : undefined;
}

/** Field 22 of /proc/<pid>/stat: start time in clock ticks since boot. */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces and parentheses: split after the last ")".
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // A zombie (killed, not yet reaped by its new parent) is dead for our purposes.
    if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
    return fields[19];
  } catch {
    return undefined;
  }
}

export function isAlive(rec: SandboxRecord): boolean {
  if (rec.supervisorPid === undefined) return false;
  const start = processStartTime(rec.supervisorPid);
  return start !== undefined && start === rec.supervisorStart;
}
