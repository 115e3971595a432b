import { afterEach, describe, expect, it, vi } from 'vitest';
import { seededRandom } from '../helpers/random.js';

describe('seeded test randomness (test/helpers/random.ts)', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
    vi.resetModules();
  });

  it('replays the same draws for the same seed and different ones for another seed', () => {
    const draw = (seed: number) => {
      const r = seededRandom(seed);
      return [r.next(), r.int(1000), r.bytes(7).toString('hex')];
    };
    expect(draw(12345)).toEqual(draw(12345));
    expect(draw(12345)).not.toEqual(draw(12346));
  });

  it('draws in range and spreads: [0,1), int below n, every byte value', () => {
    const r = seededRandom(7);
    const xs = Array.from({ length: 20_000 }, () => r.next());
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
    expect(Math.max(...xs) - Math.min(...xs)).toBeGreaterThan(0.99);
    const ks = new Set(Array.from({ length: 1000 }, () => r.int(10)));
    expect([...ks].sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const seen = new Set<number>();
    for (const b of r.bytes(20_000)) seen.add(b);
    expect(seen.size).toBe(256);
    expect(r.bytes(5)).toHaveLength(5);
  });

  it('takes its seed from SHOAL_TEST_SEED, and refuses one that is not a 32-bit integer', async () => {
    vi.stubEnv('SHOAL_TEST_SEED', '4242');
    const mod = await import('../helpers/random.js');
    expect(mod.TEST_SEED).toBe(4242);
    expect(mod.seededRandom().seed).toBe(4242);
    expect(mod.seededRandom().next()).toBe(seededRandom(4242).next());
    vi.resetModules();
    vi.stubEnv('SHOAL_TEST_SEED', 'abc');
    await expect(import('../helpers/random.js')).rejects.toThrow(/SHOAL_TEST_SEED="abc"/);
  });
});
