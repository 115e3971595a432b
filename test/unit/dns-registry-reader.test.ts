import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { endpointKey, loadRegistry, networkKey, type RegistryEndpoint } from '../../src/dns/registry.js';
import { RegistryReader } from '../../src/dns/registry-reader.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { seededRandom } from '../helpers/random.js';

let dir: string;
let store: SqliteStore;

beforeEach(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'shoal-reader-'));
  store = new SqliteStore(path.join(dir, 'shoal.db'));
  await store.put(networkKey('red'), JSON.stringify({ name: 'red', gateways: ['10.0.0.1'] }));
});

afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const ep = (id: string, name = id): RegistryEndpoint => ({ network: 'red', containerId: id, ifname: 'eth0', name, ipv4: ['10.0.0.9'] });
const put = (e: RegistryEndpoint) => store.put(endpointKey(e), JSON.stringify(e));
const del = (id: string) => store.delete(endpointKey({ network: 'red', containerId: id, ifname: 'eth0' }));
const names = (c: { endpoints: RegistryEndpoint[] }) => c.endpoints.map((e) => e.name).sort();

describe('incremental registry reader', () => {
  it('follows adds, changes, deletions and a delete plus add between two reads; keeps unchanged records by reference', async () => {
    const reader = new RegistryReader();
    for (const id of ['a', 'b', 'c']) await put(ep(id));
    const first = await reader.read(store);
    expect(names(first)).toEqual(['a', 'b', 'c']);
    await put(ep('b', 'bee'));
    await put(ep('d'));
    const second = await reader.read(store);
    expect(names(second)).toEqual(['a', 'bee', 'c', 'd']);
    expect(second.endpoints.find((e) => e.name === 'a')).toBe(first.endpoints.find((e) => e.name === 'a'));
    await del('c');
    await put(ep('e'));
    expect(names(await reader.read(store))).toEqual(['a', 'bee', 'd', 'e']);
    // A value that does not parse is not an endpoint (and not counted as a missing key either).
    await store.put(endpointKey({ network: 'red', containerId: 'bad', ifname: 'eth0' }), '{');
    expect(names(await reader.read(store))).toEqual(['a', 'bee', 'd', 'e']);
    await del('a');
    expect(names(await reader.read(store))).toEqual(['bee', 'd', 'e']);
  });

  it('after any random sequence of writes it reads what a full read reads', async () => {
    const random = seededRandom();
    const reader = new RegistryReader();
    for (let step = 0; step < 300; step++) {
      const id = `c${random.int(20)}`;
      if (random.int(3) === 0) await del(id);
      else await put(ep(id, `${id}-${random.int(5)}`));
      if (random.int(4) === 0) {
        const mine = await reader.read(store);
        const full = await loadRegistry(store);
        expect(names(mine), `step ${step} (seed ${random.seed})`).toEqual(names(full));
      }
    }
  });
});
