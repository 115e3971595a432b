import { describe, expect, it } from 'vitest';
import { addressKey } from '../../src/ipam/address.js';
import { findFree } from '../../src/ipam/allocator.js';
import { addrPrefix } from '../../src/ipam/keys.js';
import type { Segment } from '../../src/ipam/pool.js';
import type { KeyValue, ListOptions } from '../../src/store/store.js';
import { prefixEnd } from '../../src/store/store.js';
import { seededRandom } from '../helpers/random.js';

/** A sorted in-memory key list with the store's list/count semantics, counting queries made. */
function fakeReader(used: Iterable<bigint>) {
  const prefix = addrPrefix('n');
  const keys = [...used].map((value) => prefix + addressKey({ family: 4, value })).sort();
  const queries = { n: 0 };
  const within = (p: string, o: ListOptions = {}) =>
    keys.filter((k) => k.startsWith(p) && k >= (o.from ?? p) && k <= (o.to ?? prefixEnd(p)));
  return {
    queries,
    list: async (p: string, o?: ListOptions): Promise<KeyValue[]> => {
      queries.n++;
      return within(p, o)
        .slice(0, o?.limit ?? Infinity)
        .map((key) => ({ key, value: '{}', createRevision: 1, modRevision: 1 }));
    },
    count: async (p: string, o?: ListOptions): Promise<number> => {
      queries.n++;
      return within(p, o).length;
    },
  };
}

function naive(order: Segment[], used: Set<bigint>): bigint | undefined {
  for (const s of order) for (let v = s.lo; v <= s.hi; v++) if (!used.has(v)) return v;
  return undefined;
}


describe('findFree', () => {
  it('agrees with a naive scan on random pools and segment orders', async () => {
    const rng = seededRandom();
    const random = () => rng.next();
    for (let trial = 0; trial < 300; trial++) {
      const size = 1 + Math.floor(random() * 300);
      const density = random();
      const used = new Set<bigint>();
      for (let v = 0; v < size; v++) if (random() < density) used.add(BigInt(v));
      const cut = BigInt(Math.floor(random() * size));
      const order: Segment[] = [
        { family: 4, lo: cut, hi: BigInt(size - 1), rangeIndex: 0 },
        ...(cut > 0n ? [{ family: 4 as const, lo: 0n, hi: cut - 1n, rangeIndex: 0 }] : []),
      ];
      expect(await findFree(fakeReader(used), 'n', order), `trial ${trial} (seed ${rng.seed})`).toBe(naive(order, used));
    }
  });

  it('skips 10,000 used addresses in a handful of queries', async () => {
    const used = Array.from({ length: 10_000 }, (_, i) => BigInt(i));
    const reader = fakeReader(used);
    const found = await findFree(reader, 'n', [{ family: 4, lo: 0n, hi: 65_535n, rangeIndex: 0 }]);
    expect(found).toBe(10_000n);
    expect(reader.queries.n).toBeLessThan(20);
  });

  it('returns undefined when every segment is full', async () => {
    const used = Array.from({ length: 100 }, (_, i) => BigInt(i));
    expect(await findFree(fakeReader(used), 'n', [{ family: 4, lo: 10n, hi: 99n, rangeIndex: 0 }, { family: 4, lo: 0n, hi: 9n, rangeIndex: 0 }])).toBeUndefined();
  });
});
