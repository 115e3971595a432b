/**
 * Undoing a sandbox: DEL of every attachment (with the cached result, reverse order), the
 * netns we made, the /etc files. Shared by the supervisor (normal exit, signals), `shoal stop`
 * (supervisor gone) and `shoal gc` (after kill -9). Every step runs even when an earlier one
 * failed; the errors come back for the caller to report.
 */
import * as fs from 'node:fs';
import { deleteNetns } from '../kernel/netns.js';
import type { Store } from '../store/store.js';
import { listCached } from './cache.js';
import { detach } from './attach.js';
import type { ChainOptions } from './chain.js';
import { getNetwork } from './model.js';
import type { SandboxRecord } from './sandboxes.js';

export async function teardownSandbox(store: Store, opts: ChainOptions, rec: SandboxRecord): Promise<string[]> {
  const errors: string[] = [];
  // The record's list, plus any cached attachment of this id: a crash between ADD and the
  // record update must not leak the attachment.
  const todo = new Map<string, { network: string; ifname: string }>();
  for (const a of rec.attachments) todo.set(`${a.network}/${a.ifname}`, a);
  for (const c of listCached(opts.stateDir)) if (c.containerId === rec.id) todo.set(`${c.networkName}/${c.ifName}`, { network: c.networkName, ifname: c.ifName });
  for (const a of [...todo.values()].reverse()) {
    try {
      const net = await getNetwork(store, a.network);
      await detach(opts, net, a.network, { containerId: rec.id, netns: rec.netns ?? '', ifname: a.ifname });
    } catch (err) {
      errors.push(`failed to disconnect "${rec.name}" from "${a.network}": ${(err as Error).message}`);
    }
  }
  rec.attachments = [];
  if (rec.netns && !rec.externalNetns) {
    try {
      deleteNetns(rec.netns);
    } catch (err) {
      errors.push((err as Error).message);
    }
  }
  if (rec.filesDir) fs.rmSync(rec.filesDir, { recursive: true, force: true });
  return errors;
}
