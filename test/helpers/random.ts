import { randomInt } from 'node:crypto';

/**
 * Seeded randomness for tests that draw their inputs (fuzz loops, random orders, random kill
 * delays), so a failure can be replayed: every such assertion names `seed N` in its message, and
 * `SHOAL_TEST_SEED=N npx vitest run <file>` draws the same inputs again. Without the variable
 * each process picks its own seed. Not for picking unique subnets or ports: those only need to
 * differ between runs.
 *
 * The generator is mulberry32 (32-bit state, period 2^32): small, fast, and good enough for
 * test inputs; not for anything that needs secrecy.
 */
export interface SeededRandom {
  readonly seed: number;
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  /** `n` random bytes. */
  bytes(n: number): Buffer;
}

function parseSeed(text: string | undefined): number | undefined {
  if (text === undefined || text === '') return undefined;
  if (!/^\d+$/.test(text) || Number(text) >= 2 ** 32) throw new Error(`SHOAL_TEST_SEED="${text}" is not an integer in 0..4294967295`);
  return Number(text);
}

/** This process's seed: SHOAL_TEST_SEED when set, else a random one. */
export const TEST_SEED: number = parseSeed(process.env['SHOAL_TEST_SEED']) ?? randomInt(2 ** 31);

export function seededRandom(seed: number = TEST_SEED): SeededRandom {
  let a = seed >>> 0;
  const next32 = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  const next = () => next32() / 4294967296;
  return {
    seed,
    next,
    int: (n) => Math.floor(next() * n),
    bytes: (n) => {
      const out = Buffer.alloc(n);
      for (let i = 0; i < n; i += 4) {
        const v = next32();
        for (let k = 0; k < 4 && i + k < n; k++) out[i + k] = (v >>> (8 * k)) & 0xff;
      }
      return out;
    },
  };
}
