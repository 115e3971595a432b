import { describe, expect, it } from 'vitest';
import { BackendPool, type PoolSettings } from '../../src/lb/backend-pool.js';
import { createPolicy } from '../../src/lb/policy.js';
import { SLOW_START_MIN_WEIGHT, SlowStart } from '../../src/lb/slow-start.js';

/** A clock the test moves. */
function clock(start = 0) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

const share = (picks: string[], key: string) => picks.filter((p) => p === key).length / picks.length;

describe('slow start', () => {
  it('ramps a backend that comes back from 1/16 to full weight over the duration; not the initial set', () => {
    const c = clock();
    const s = new SlowStart(10_000, 1000, c.now);
    s.update(['a', 'b']);
    c.advance(500);
    s.update(['a', 'b', 'c']); // within the start grace: initial set
    expect([s.weight('a'), s.weight('b'), s.weight('c')]).toEqual([1, 1, 1]);
    c.advance(5000);
    s.update(['a', 'c']); // b fails
    c.advance(1000);
    s.update(['a', 'b', 'c']); // b rises
    expect(s.weight('b')).toBe(SLOW_START_MIN_WEIGHT);
    expect(s.ramping).toBe(true);
    c.advance(2500);
    expect(s.weight('b')).toBeCloseTo(0.25);
    c.advance(5000);
    expect(s.weight('b')).toBeCloseTo(0.75);
    c.advance(2500);
    expect(s.weight('b')).toBe(1);
    expect(s.ramping).toBe(false);
    s.update(['a', 'b', 'c', 'd']); // a new replica after start ramps too
    expect(s.weight('d')).toBe(SLOW_START_MIN_WEIGHT);
  });

  it('ramps only backends that enter rotation while it is on', () => {
    const c = clock();
    const s = new SlowStart(undefined, 0, c.now);
    s.update(['a']);
    c.advance(100);
    s.update(['a', 'b']); // off: b enters at full weight
    s.setDuration(10_000);
    expect(s.weight('b')).toBe(1);
    s.update(['a', 'b', 'c']);
    expect(s.weight('c')).toBe(SLOW_START_MIN_WEIGHT);
    s.setDuration(undefined); // off again: every ramp ends
    expect(s.weight('c')).toBe(1);
    expect(s.ramping).toBe(false);
  });

  it('rr, random and leastconn give a ramping backend its weighted share; source-hash ignores it', () => {
    const c = clock();
    const s = new SlowStart(10_000, 0, c.now);
    s.update(['a']);
    c.advance(1);
    s.update(['a', 'b']);
    c.advance(2500); // b at 0.25: a quarter of a's share, 0.25 / 1.25 = 20 % of picks
    const weight = (k: string) => s.weight(k);
    let seed = 1;
    const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
    for (const name of ['rr', 'random', 'leastconn'] as const) {
      const p = createPolicy(name, random);
      const picks = Array.from({ length: 1000 }, () => p.pick(['a', 'b'], { weight, active: new Map() })!);
      expect(share(picks, 'b'), name).toBeGreaterThan(0.15);
      expect(share(picks, 'b'), name).toBeLessThan(0.25);
    }
    c.advance(7500); // ramp over: even
    for (const name of ['rr', 'random', 'leastconn'] as const) {
      const p = createPolicy(name, random);
      const picks = Array.from({ length: 1000 }, () => p.pick(['a', 'b'], { weight, active: new Map() })!);
      expect(share(picks, 'b'), name).toBeGreaterThan(0.45);
      expect(share(picks, 'b'), name).toBeLessThan(0.55);
    }
    const sh = createPolicy('source-hash');
    const first = sh.pick(['a', 'b'], { client: '10.0.0.1', weight: () => 0.1 });
    expect(sh.pick(['a', 'b'], { client: '10.0.0.1', weight: (k) => (k === first ? 0.01 : 1) })).toBe(first);
  });

  it('leastconn weighs open connections by the ramp', () => {
    const lc = createPolicy('leastconn');
    // b holds 1 at weight 0.25 (4 per unit), a holds 3 at full weight: a is less loaded.
    expect(lc.pick(['a', 'b'], { active: new Map([['a', 3], ['b', 1]]), weight: (k) => (k === 'b' ? 0.25 : 1) })).toBe('a');
    expect(lc.pick(['a', 'b'], { active: new Map([['a', 5], ['b', 1]]), weight: (k) => (k === 'b' ? 0.25 : 1) })).toBe('b');
  });
});

describe('backend pool: max-conn and the queue', () => {
  const settings = (over: Partial<PoolSettings> = {}): PoolSettings => ({ policy: 'rr', maxConn: 1, maxQueue: 2, queueTimeoutMs: 200, ...over });

  it('never gives a backend more than max-conn slots; waiting clients get freed slots in order', () => {
    const pool = new BackendPool(settings(), 0);
    pool.update(['a', 'b'], settings());
    const none = new Set<string>();
    expect([pool.take(none), pool.take(none), pool.take(none)].sort()).toEqual(['a', 'b', undefined].sort());
    const served: string[] = [];
    const expired: number[] = [];
    expect(pool.wait(none, undefined, (b) => served.push(`1:${b}`), () => expired.push(1))).toBeDefined();
    expect(pool.wait(none, undefined, (b) => served.push(`2:${b}`), () => expired.push(2))).toBeDefined();
    expect(pool.wait(none, undefined, () => served.push('3'), () => expired.push(3))).toBeUndefined(); // queue full
    pool.release('b');
    expect(served).toEqual(['1:b']);
    expect(pool.active.get('b')).toBe(1);
    pool.update(['a', 'b', 'c'], settings()); // a new backend serves the next one
    expect(served).toEqual(['1:b', '2:c']);
    expect(pool.queued).toBe(0);
    pool.close();
  });

  it('a waiting client is expired after the queue timeout, or taken out when it cancels', async () => {
    const pool = new BackendPool(settings({ queueTimeoutMs: 50 }), 0);
    pool.update(['a'], settings({ queueTimeoutMs: 50 }));
    expect(pool.take(new Set())).toBe('a');
    let expired = 0;
    const cancel = pool.wait(new Set(), undefined, () => {}, () => (expired += 1))!;
    pool.wait(new Set(), undefined, () => {}, () => (expired += 10));
    cancel();
    await new Promise((r) => setTimeout(r, 120));
    expect(expired).toBe(10);
    expect(pool.queued).toBe(0);
  });

  it('a ramping backend\'s limit ramps from 1 with its weight', () => {
    const c = clock();
    const s = settings({ maxConn: 8, slowStartMs: 1000 });
    const pool = new BackendPool(s, 0, c.now);
    pool.update(['a'], s);
    c.advance(1);
    pool.update(['a', 'b'], s);
    const takeFrom = (b: string) => {
      let n = 0;
      while (pool.take(new Set(['a', 'b'].filter((x) => x !== b))) === b) n += 1;
      return n;
    };
    expect(takeFrom('b')).toBe(1);
    c.advance(500);
    expect(takeFrom('b')).toBe(3); // 4 at half weight
    c.advance(500);
    expect(takeFrom('b')).toBe(4); // full
    expect(takeFrom('a')).toBe(8);
  });
});

describe('backend pool: client affinity', () => {
  const settings = (over: Partial<PoolSettings> = {}): PoolSettings => ({ policy: 'rr', maxQueue: 0, queueTimeoutMs: 1000, affinityMs: 10_000, ...over });

  it('keeps a client on its backend while it comes back within the timeout; others still rotate', () => {
    const c = clock();
    const pool = new BackendPool(settings(), 0, c.now);
    pool.update(['a', 'b', 'c'], settings());
    const first = pool.take(new Set(), '10.0.0.1')!;
    const others = ['10.0.0.2', '10.0.0.3'].map((client) => pool.take(new Set(), client));
    expect(new Set([first, ...others]).size).toBe(3); // rr still spreads new clients
    for (let i = 0; i < 20; i += 1) {
      c.advance(9_000); // each new connection renews the timeout
      expect(pool.take(new Set(), '10.0.0.1')).toBe(first);
      expect(pool.pick('10.0.0.1')).toBe(first); // UDP flows too
    }
  });

  it('lets go after the timeout, and when the backend leaves rotation, is excluded or full', () => {
    const c = clock();
    const pool = new BackendPool(settings({ maxConn: 1 }), 0, c.now);
    pool.update(['a', 'b'], settings({ maxConn: 1 }));
    const held = pool.take(new Set(), 'x')!;
    const other = held === 'a' ? 'b' : 'a';
    // Full (x's own first connection holds its one slot): the second goes elsewhere and sticks.
    expect(pool.take(new Set(), 'x')).toBe(other);
    pool.release(held);
    pool.release(other);
    expect(pool.take(new Set(), 'x')).toBe(other);
    pool.release(other);
    expect(pool.take(new Set([other]), 'x')).toBe(held); // a retry after a failed connect excludes it
    pool.release(held);
    expect(pool.take(new Set(), 'x')).toBe(held);
    pool.release(held);
    pool.update([other], settings({ maxConn: 1 })); // held leaves rotation
    expect(pool.take(new Set(), 'x')).toBe(other);
    pool.release(other);
    pool.update([held], settings({ maxConn: 1 })); // and other leaves, held returns
    expect(pool.take(new Set(), 'x')).toBe(held);
    pool.release(held);
    pool.update(['a', 'b'], settings({ maxConn: 1 }));
    c.advance(10_001); // expired: the policy picks again (rr from where it was)
    const picks = new Set(Array.from({ length: 4 }, () => {
      const b = pool.take(new Set(), 'x')!;
      pool.release(b);
      c.advance(10_001);
      return b;
    }));
    expect(picks).toEqual(new Set(['a', 'b']));
  });

  it('sweeps expired clients instead of growing, and forgets all when turned off', () => {
    const c = clock();
    const pool = new BackendPool(settings(), 0, c.now);
    pool.update(['a', 'b'], settings());
    for (let i = 0; i < 5000; i += 1) {
      pool.release(pool.take(new Set(), `c${i}`)!);
      c.advance(100); // 100 clients live at any time
    }
    expect(pool.affinityEntries).toBeLessThan(2 * 1024 + 1);
    pool.update(['a', 'b'], settings({ affinityMs: undefined }));
    expect(pool.affinityEntries).toBe(0);
    pool.release(pool.take(new Set(), 'z')!);
    expect(pool.affinityEntries).toBe(0);
  });
});
