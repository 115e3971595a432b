import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/store/sqlite.js';
import { ensureBuilt, removeBuiltCopy, netconf, runPlugin, startPlugin, type PluginRun } from './ipam-helpers.js';

// Many shoal-ipam processes at once on one fresh store: the store's write lock must make every
// allocation unique, and kill -9 at any moment must never corrupt it or duplicate an address.

let dir: string;
beforeAll(() => {
  ensureBuilt();
  dir = mkdtempSync(path.join(os.tmpdir(), 'shoal-ipam-race-'));
}, 120_000);
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  removeBuiltCopy();
});

function addressesOf(run: PluginRun): string[] {
  return ((run.json?.['ips'] as Array<{ address: string }> | undefined) ?? []).map((ip) => ip.address.split('/')[0]!);
}

/** Every address record and attachment index in the store, checked for agreement. */
async function storeContents(stateDir: string): Promise<{ byOwner: Map<string, string[]>; integrity: string }> {
  const store = new SqliteStore(path.join(stateDir, 'shoal.db'));
  try {
    const byOwner = new Map<string, string[]>();
    for (const kv of await store.list('ipam/ipamtest/addr/')) {
      const owner = JSON.parse(kv.value) as { containerId: string; ifname: string };
      const id = `${owner.containerId}/${owner.ifname}`;
      byOwner.set(id, [...(byOwner.get(id) ?? []), kv.key.slice('ipam/ipamtest/addr/'.length)]);
    }
    const indexed = (await store.list('ipam/ipamtest/attachment/')).map((kv) => kv.key.split('/').slice(-2).join('/'));
    expect(indexed.sort()).toEqual([...byOwner.keys()].sort());
    return { byOwner, integrity: store.integrityCheck() };
  } finally {
    store.close();
  }
}

describe('shoal-ipam under concurrency', () => {
  it('64 parallel ADDs from separate processes get 64 distinct addresses', async () => {
    const stateDir = path.join(dir, 'parallel');
    const config = netconf(stateDir, { ranges: [[{ subnet: '10.81.0.0/24' }], [{ subnet: 'fd81::/64' }]] });
    const runs = await Promise.all(Array.from({ length: 64 }, (_, i) => runPlugin({ command: 'ADD', containerId: `c${i}`, config })));
    for (const run of runs) expect(run.code, run.stdout + run.stderr).toBe(0);
    const v4 = runs.map((run) => addressesOf(run)[0]!);
    const v6 = runs.map((run) => addressesOf(run)[1]!);
    expect(new Set(v4).size).toBe(64);
    expect(new Set(v6).size).toBe(64);
    const { byOwner, integrity } = await storeContents(stateDir);
    expect(integrity).toBe('ok');
    expect(byOwner.size).toBe(64);
  }, 180_000);

  it('kill -9 in a loop during ADDs, then GC: nothing leaked, nothing duplicated', async () => {
    const stateDir = path.join(dir, 'crash');
    const config = netconf(stateDir, { ranges: [[{ subnet: '10.82.0.0/24' }], [{ subnet: 'fd82::/64' }]] });
    const succeeded = new Map<string, string[]>();
    let killed = 0;
    // Calibrate: how long one ADD takes on this machine right now, so the kill delays cover a
    // process's whole life whether the machine is idle or busy.
    const started = Date.now();
    const probe = await runPlugin({ command: 'ADD', containerId: 'probe', config });
    expect(probe.code, probe.stdout).toBe(0);
    const lifetimeMs = Date.now() - started;
    succeeded.set('probe/eth0', addressesOf(probe));
    // Rounds of 6 concurrent ADDs; each process is killed after a random delay spread over its
    // whole life (start-up, store open, inside the transaction, printing), or, when the delay
    // outlives it, left to finish.
    for (let round = 0; round < 10; round++) {
      const batch = Array.from({ length: 6 }, (_, i) => {
        const containerId = `r${round}c${i}`;
        const { child, done } = startPlugin({ command: 'ADD', containerId, config });
        const delay = Math.floor(Math.random() * lifetimeMs * 2);
        const timer = setTimeout(() => child.kill('SIGKILL'), delay);
        return done.then((run) => {
          clearTimeout(timer);
          if (run.signal === 'SIGKILL') killed++;
          else if (run.code === 0) succeeded.set(`${containerId}/eth0`, addressesOf(run));
          else throw new Error(`ADD ${containerId} failed without being killed: ${run.stdout}`);
        });
      });
      await Promise.all(batch);
    }
    expect(killed).toBeGreaterThan(0);
    expect(succeeded.size).toBeGreaterThan(0);

    // Before GC: every finished ADD's addresses are in the store, owned by it, and no address
    // has two owners (the key is the address, so a duplicate would show as a lost record).
    const before = await storeContents(stateDir);
    expect(before.integrity).toBe('ok');
    for (const id of succeeded.keys()) expect(before.byOwner.has(id), id).toBe(true);
    expect(addresses(before.byOwner)).toHaveLength(new Set(addresses(before.byOwner)).size);

    const valid = [...succeeded.keys()].map((id) => ({ containerID: id.split('/')[0], ifname: 'eth0' }));
    const gc = await runPlugin({ command: 'GC', config: { ...config, 'cni.dev/valid-attachments': valid } });
    expect(gc.code, gc.stdout).toBe(0);

    const after = await storeContents(stateDir);
    expect(after.integrity).toBe('ok');
    expect([...after.byOwner.keys()].sort()).toEqual([...succeeded.keys()].sort());
    // Each survivor holds exactly one v4 and one v6 address, the ones its ADD printed.
    for (const [id, printed] of succeeded) {
      const held = after.byOwner.get(id)!;
      expect(held).toHaveLength(2);
      expect(held.map((k) => k.slice(0, 1)).sort()).toEqual(['4', '6']);
      expect(printed).toHaveLength(2);
    }
    const all = addresses(after.byOwner);
    expect(all).toHaveLength(new Set(all).size);
  }, 300_000);
});

function addresses(byOwner: Map<string, string[]>): string[] {
  return [...byOwner.values()].flat();
}
