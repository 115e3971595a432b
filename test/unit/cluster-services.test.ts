import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { IpPrefix } from '../../src/addr.js';
import { claimBlock, listBlocks, reapBlocks, SERVICE_BLOCKS_OWNER } from '../../src/cluster/blocks.js';
import { clusterNetworkKey } from '../../src/cluster/networks.js';
import { createClusterService, removeClusterService } from '../../src/cluster/services.js';
import { SqliteStore } from '../../src/store/sqlite.js';

// The cluster's service records and VIPs on the Store contract (SQLite here; etcd in 817).
let dir: string;
let store: SqliteStore;

beforeEach(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'shoal-csvc-'));
  store = new SqliteStore(path.join(dir, 'shoal.db'));
  await store.put(clusterNetworkKey('ov'), JSON.stringify({ name: 'ov', subnets: [{ subnet: '10.196.0.0/28' }] }));
});

afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('services of overlay networks', () => {
  it('VIPs come from blocks of the @services owner, never the network, broadcast or gateway address, each once', async () => {
    const vips = [];
    // A /28 in /28 blocks: one block, 16 addresses, 13 usable for VIPs.
    for (let i = 0; i < 13; i++) vips.push((await createClusterService(store, { name: `s${i}`, network: 'ov', ports: [] })).vips[0]!);
    expect(new Set(vips).size).toBe(13);
    expect(vips).not.toContain('10.196.0.0');
    expect(vips).not.toContain('10.196.0.1');
    expect(vips).not.toContain('10.196.0.15');
    expect((await listBlocks(store, 'ov')).map((b) => b.node)).toEqual([SERVICE_BLOCKS_OWNER]);
    // The subnet is used up: a clear refusal, nothing written.
    await expect(createClusterService(store, { name: 'late', network: 'ov', ports: [] })).rejects.toThrow(/every \/28 block of 10\.196\.0\.0\/28 is taken/);
    // A removed service's VIP is free again.
    expect(await removeClusterService(store, 's3')).toBe(true);
    expect((await createClusterService(store, { name: 'again', network: 'ov', ports: [] })).vips).toEqual([vips[3]]);
  });

  it('a network no node has: refused naming it; dnsrr takes no VIP', async () => {
    await expect(createClusterService(store, { name: 'x', network: 'nope', ports: [] })).rejects.toThrow(/no overlay network "nope"/);
    expect((await createClusterService(store, { name: 'rr', network: 'ov', endpointMode: 'dnsrr', ports: [] })).vips).toEqual([]);
    expect(await listBlocks(store, 'ov')).toEqual([]);
  });

  it('the reaper never frees the services\' blocks', async () => {
    const subnet = IpPrefix.parse('10.196.0.0/28');
    await claimBlock(store, 'other', subnet, SERVICE_BLOCKS_OWNER);
    const t0 = new Date('2026-01-01T00:00:00Z');
    await reapBlocks(store, new Set(), 1000, t0);
    expect(await reapBlocks(store, new Set(), 1000, new Date(t0.getTime() + 5000))).toEqual({ marked: [], freed: [], revived: [] });
    expect((await listBlocks(store, 'other'))[0]?.node).toBe(SERVICE_BLOCKS_OWNER);
  });
});
