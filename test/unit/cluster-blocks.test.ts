import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { IpPrefix } from '../../src/addr.js';
import { BlocksExhaustedError, blockLength, claimBlock, claimStart, listBlocks, nodeBlocks, reapBlocks, releaseBlock } from '../../src/cluster/blocks.js';
import { SqliteStore } from '../../src/store/sqlite.js';

let dir: string;
let store: SqliteStore;
const subnet = IpPrefix.parse('10.197.0.0/24');

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'shoal-blocks-'));
  store = new SqliteStore(path.join(dir, 'shoal.db'));
});

afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('address blocks of overlay networks', () => {
  it('blocks are /26 (IPv4) or /122 (IPv6), or the subnet itself when it is smaller', () => {
    expect(blockLength(subnet)).toBe(26);
    expect(blockLength(IpPrefix.parse('10.0.0.0/28'))).toBe(28);
    expect(blockLength(IpPrefix.parse('fd00::/64'))).toBe(122);
    expect(blockLength(subnet, 28)).toBe(28);
  });

  it('claims hand out distinct blocks, a node\'s next one right after its last, until the subnet is used up', async () => {
    const got = [];
    for (const node of ['n1', 'n2', 'n1', 'n3']) got.push((await claimBlock(store, 'web', subnet, node)).toString());
    expect(new Set(got).size).toBe(4);
    const first = Number(claimStart('n1', 4n, []));
    // n1 starts where its name says; its second block follows its first when that one is free.
    expect(got[0]).toBe(`10.197.0.${first * 64}/26`);
    const n1 = (await nodeBlocks(store, 'web', 'n1')).map(String);
    expect(n1.sort()).toEqual([got[0], got[2]].sort());
    await expect(claimBlock(store, 'web', subnet, 'n2')).rejects.toBeInstanceOf(BlocksExhaustedError);
    await expect(claimBlock(store, 'web', subnet, 'n2')).rejects.toThrow('every /26 block of 10.197.0.0/24 is taken');
    // Another network has blocks of its own.
    expect((await claimBlock(store, 'db', subnet, 'n2')).toString()).toBe(`10.197.0.${Number(claimStart('n2', 4n, [])) * 64}/26`);
  });

  it('dual-stack: a node\'s IPv6 blocks lie in the IPv6 subnet and follow its IPv6 blocks, whatever IPv4 blocks it holds', async () => {
    const v6 = IpPrefix.parse('fd89:5348:4f42::/64');
    await claimBlock(store, 'dual', subnet, 'n1');
    const a = await claimBlock(store, 'dual', v6, 'n1');
    await claimBlock(store, 'dual', subnet, 'n1');
    const b = await claimBlock(store, 'dual', v6, 'n1');
    for (const block of [a, b]) expect(v6.overlaps(block), block.toString()).toBe(true);
    // The second follows the first (as for IPv4), not a place derived from the IPv4 blocks.
    expect(b.addr.value - a.addr.value).toBe(64n);
  });

  it('claimStart: after the node\'s last block, else spread by name', () => {
    expect(claimStart('a', 16n, [3n, 7n])).toBe(8n);
    expect(claimStart('a', 16n, [15n])).toBe(0n);
    const starts = new Set(Array.from({ length: 10 }, (_, i) => claimStart(`node-${i}`, 1024n, [])));
    expect(starts.size, 'ten nodes start at ten places').toBe(10);
  });

  it('claims through two connections (two nodes on one store) never get the same block', async () => {
    // Interleaved, not overlapping: two connections of one process cannot wait for each other's
    // lock (open.ts). Overlapping claims from many processes are the store's transaction
    // guarantee, tested for SQLite in 210 and for etcd in 800.
    const other = new SqliteStore(path.join(dir, 'shoal.db'));
    try {
      const big = IpPrefix.parse('10.196.0.0/20');
      const claims = [];
      for (let i = 0; i < 32; i++) claims.push(await claimBlock(i % 2 ? store : other, 'web', big, `n${i % 2}`));
      expect(new Set(claims.map(String)).size).toBe(32);
      expect(await listBlocks(store, 'web')).toHaveLength(32);
    } finally {
      other.close();
    }
  });

  it('a block goes back only from its owner', async () => {
    const block = await claimBlock(store, 'web', subnet, 'n1');
    expect(await releaseBlock(store, 'web', block, 'n2')).toBe(false);
    expect(await releaseBlock(store, 'web', block, 'n1')).toBe(true);
    expect(await listBlocks(store, 'web')).toEqual([]);
    // Free again: the four blocks of the /24 are claimed again, that one among them.
    const again = [];
    for (const node of ['n2', 'n3', 'n4', 'n5']) again.push((await claimBlock(store, 'web', subnet, node)).toString());
    expect(again).toContain(block.toString());
  });

  it('blocks of a node that is gone are freed only after the grace; a node back in time keeps them', async () => {
    const dead = `web:${(await claimBlock(store, 'web', subnet, 'dead')).toString()}`;
    const flaky = `web:${(await claimBlock(store, 'web', subnet, 'flaky')).toString()}`;
    await claimBlock(store, 'web', subnet, 'live');
    const t0 = new Date('2026-12-03T10:00:00Z');
    const at = (s: number) => new Date(t0.getTime() + s * 1000);
    expect(await reapBlocks(store, new Set(['live']), 30_000, t0)).toEqual({ marked: [dead, flaky].sort(), freed: [], revived: [] });
    expect(await reapBlocks(store, new Set(['live', 'flaky']), 30_000, at(10))).toEqual({ marked: [], freed: [], revived: [flaky] });
    expect(await reapBlocks(store, new Set(['live', 'flaky']), 30_000, at(29))).toEqual({ marked: [], freed: [], revived: [] });
    expect(await reapBlocks(store, new Set(['live', 'flaky']), 30_000, at(30))).toEqual({ marked: [], freed: [dead], revived: [] });
    expect((await listBlocks(store, 'web')).map((b) => b.node).sort()).toEqual(['flaky', 'live']);
  });
});
