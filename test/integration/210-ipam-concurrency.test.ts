import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/store/sqlite.js';
import { seededRandom } from '../helpers/random.js';
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

/**
 * An address as the store keys it ("4:0a510005", "6:<32 hex>"), from the text a plugin printed
 * ("10.81.0.5/24", "fd81::5/64"). Written here rather than taken from src/ipam, so the test
 * does not trust the code under test to read its own output.
 */
function keyOf(printed: string): string {
  const ip = printed.split('/')[0]!;
  if (!ip.includes(':')) return `4:${ip.split('.').map((o) => Number(o).toString(16).padStart(2, '0')).join('')}`;
  const [head, tail] = ip.includes('::') ? ip.split('::') : [ip, undefined];
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return `6:${groups.map((g) => g.padStart(4, '0')).join('').toLowerCase()}`;
}

/** The address keys an ADD printed in its result, in result order. */
function printedKeys(run: PluginRun): string[] {
  return ((run.json?.['ips'] as Array<{ address: string }> | undefined) ?? []).map((ip) => keyOf(ip.address));
}

interface StoreView {
  /** address key -> "<container id>/<ifname>" holding it (the address records: the truth). */
  owners: Map<string, string>;
  /** "<container id>/<ifname>" -> address keys (the attachment index). */
  index: Map<string, string[]>;
  integrity: string;
}

async function readStore(stateDir: string): Promise<StoreView> {
  const store = new SqliteStore(path.join(stateDir, 'shoal.db'));
  try {
    const owners = new Map<string, string>();
    for (const kv of await store.list('ipam/ipamtest/addr/')) {
      const owner = JSON.parse(kv.value) as { containerId: string; ifname: string };
      owners.set(kv.key.slice('ipam/ipamtest/addr/'.length), `${owner.containerId}/${owner.ifname}`);
    }
    const index = new Map<string, string[]>();
    for (const kv of await store.list('ipam/ipamtest/attachment/')) {
      const id = kv.key.slice('ipam/ipamtest/attachment/'.length).split('/').map(decodeURIComponent).join('/');
      index.set(id, (JSON.parse(kv.value) as { addresses: string[] }).addresses);
    }
    return { owners, index, integrity: store.integrityCheck() };
  } finally {
    store.close();
  }
}

const sorted = (xs: Iterable<string>) => [...xs].sort();

/**
 * What the ADD processes printed (container -> address keys) against each other and the store:
 * no address printed twice across processes; each container's printed addresses are held by it
 * in the address records and are exactly its attachment index entry; the store's two views agree;
 * and the store holds nothing else, except for containers in `unprinted` (ADDs killed after their
 * transaction committed, before they printed).
 */
function expectStoreMatchesPrinted(printed: Map<string, string[]>, view: StoreView, why: string, unprinted: ReadonlySet<string> = new Set()): void {
  expect(view.integrity, why).toBe('ok');
  const all = [...printed.values()].flat();
  const twice = all.filter((k, i) => all.indexOf(k) !== i);
  expect(twice, `${why}: addresses printed by two ADDs`).toEqual([]);
  for (const [id, keys] of printed) {
    for (const k of keys) expect(view.owners.get(k), `${why}: ${id} printed ${k}; the store says its holder is`).toBe(id);
    expect(sorted(view.index.get(id) ?? []), `${why}: attachment index of ${id}`).toEqual(sorted(keys));
  }
  for (const [k, owner] of view.owners) {
    if (printed.has(owner)) expect(printed.get(owner), `${why}: ${owner} holds ${k} but did not print it`).toContain(k);
    else expect(unprinted.has(owner), `${why}: ${k} is held by ${owner}, which no ADD printed`).toBe(true);
    expect(view.index.get(owner) ?? [], `${why}: ${k} held by ${owner} is missing from its attachment index`).toContain(k);
  }
  for (const [id, keys] of view.index) for (const k of keys) expect(view.owners.get(k), `${why}: index of ${id} lists ${k}`).toBe(id);
  expect(sorted(view.index.keys()).filter((id) => !printed.has(id) && !unprinted.has(id)), `${why}: attachments no ADD printed`).toEqual([]);
}

describe('shoal-ipam under concurrency', () => {
  it('64 parallel ADDs from separate processes print 64 distinct address pairs, exactly what the store holds', async () => {
    const stateDir = path.join(dir, 'parallel');
    const config = netconf(stateDir, { ranges: [[{ subnet: '10.81.0.0/24' }], [{ subnet: 'fd81::/64' }]] });
    const runs = await Promise.all(Array.from({ length: 64 }, (_, i) => runPlugin({ command: 'ADD', containerId: `c${i}`, config })));
    const printed = new Map<string, string[]>();
    runs.forEach((run, i) => {
      expect(run.code, run.stdout + run.stderr).toBe(0);
      const keys = printedKeys(run);
      // One address per range set, each from its own subnet.
      expect(keys, `c${i} printed ${run.stdout}`).toHaveLength(2);
      expect(keys[0], `c${i} printed ${run.stdout}`).toMatch(/^4:0a5100[0-9a-f]{2}$/);
      expect(keys[1], `c${i} printed ${run.stdout}`).toMatch(/^6:fd810{12}[0-9a-f]{16}$/);
      printed.set(`c${i}/eth0`, keys);
    });
    expectStoreMatchesPrinted(printed, await readStore(stateDir), '64 parallel ADDs');
    expect(new Set([...printed.values()].flat()).size).toBe(128);
  }, 180_000);

  it('kill -9 in a loop during ADDs, then GC: nothing leaked, nothing duplicated', async () => {
    const stateDir = path.join(dir, 'crash');
    const config = netconf(stateDir, { ranges: [[{ subnet: '10.82.0.0/24' }], [{ subnet: 'fd82::/64' }]] });
    const random = seededRandom();
    const why = (what: string) => `${what} (seed ${random.seed})`;
    const printed = new Map<string, string[]>();
    const killed = new Set<string>();
    // Calibrate: how long one ADD takes on this machine right now, so the kill delays cover a
    // process's whole life whether the machine is idle or busy.
    const started = Date.now();
    const probe = await runPlugin({ command: 'ADD', containerId: 'probe', config });
    expect(probe.code, probe.stdout).toBe(0);
    const lifetimeMs = Date.now() - started;
    printed.set('probe/eth0', printedKeys(probe));
    // Rounds of 6 concurrent ADDs; each process is killed after a random delay spread over its
    // whole life (start-up, store open, inside the transaction, printing), or, when the delay
    // outlives it, left to finish.
    for (let round = 0; round < 10; round++) {
      const batch = Array.from({ length: 6 }, (_, i) => {
        const containerId = `r${round}c${i}`;
        const { child, done } = startPlugin({ command: 'ADD', containerId, config });
        const timer = setTimeout(() => child.kill('SIGKILL'), random.int(lifetimeMs * 2));
        return done.then((run) => {
          clearTimeout(timer);
          if (run.signal === 'SIGKILL') killed.add(`${containerId}/eth0`);
          else if (run.code === 0) printed.set(`${containerId}/eth0`, printedKeys(run));
          else throw new Error(why(`ADD ${containerId} failed without being killed: ${run.stdout}`));
        });
      });
      await Promise.all(batch);
    }
    expect(killed.size, why('ADDs killed')).toBeGreaterThan(0);
    expect(printed.size, why('ADDs finished')).toBeGreaterThan(1);
    for (const [id, keys] of printed) expect(keys, why(`${id} printed`)).toHaveLength(2);

    // Before GC: what every finished ADD printed is in the store, held by it and by nobody else;
    // the only other holders are ADDs that were killed (after committing, before printing).
    expectStoreMatchesPrinted(printed, await readStore(stateDir), why('before GC'), killed);

    const valid = [...printed.keys()].map((id) => ({ containerID: id.split('/')[0], ifname: 'eth0' }));
    const gc = await runPlugin({ command: 'GC', config: { ...config, 'cni.dev/valid-attachments': valid } });
    expect(gc.code, gc.stdout).toBe(0);

    // After GC: the store holds exactly what the finished ADDs printed.
    expectStoreMatchesPrinted(printed, await readStore(stateDir), why('after GC'));
  }, 300_000);
});
