import { describe, expect, it } from 'vitest';
import { stableHash } from '../../src/hash.js';

describe('stableHash', () => {
  it('is FNV-1a 64 over the UTF-8 bytes for the first 16 digits', () => {
    // Published FNV-1a 64 test vectors (the FNV reference test suite).
    expect(stableHash('')).toBe('cbf29ce484222325');
    expect(stableHash('a')).toBe('af63dc4c8601ec8c');
    expect(stableHash('b')).toBe('af63df4c8601f1a5');
    expect(stableHash('foobar')).toBe('85944171f73967e8');
    expect(stableHash('chongo was here!\n')).toBe('46810940eff5f915');
    // UTF-8, not UTF-16 code units: "é" is the two bytes c3 a9 (computed with Python's FNV-1a).
    expect(stableHash('é')).toBe('0ac21707b7181e01');
  });

  it('pins the names derived from it: the digests of a derived-name input do not change between builds', () => {
    // Veth names, chain names and owner comments of existing attachments are found again by
    // recomputing these; a changed digest would orphan them. Computed with Python's FNV-1a 64.
    expect(stableHash('net/ctr/eth0', 32)).toBe('86c9ed9365e68d9cb910289a32f56239');
    expect(stableHash('net/ctr/eth0', 40)).toBe('86c9ed9365e68d9cb910289a32f562397d090225');
  });

  it('continues each further 16 digits as FNV-1a over the text once more, so longer digests extend shorter ones', () => {
    // Round two starts from round one's digest, which is FNV-1a's state after the text: it is
    // the FNV-1a of the text twice ("a" -> "aa"). Prefixes agree for every length.
    expect(stableHash('a', 32)).toBe(stableHash('a') + stableHash('aa'));
    expect(stableHash('veth\0net\0c1', 48)).toBe(stableHash('veth\0net\0c1') + stableHash('veth\0net\0c1'.repeat(2)) + stableHash('veth\0net\0c1'.repeat(3)));
    for (const n of [1, 7, 8, 15, 16, 17, 20, 31, 32, 33, 64]) {
      const h = stableHash('net/ctr/eth0', n);
      expect(h, `${n} digits`).toMatch(new RegExp(`^[0-9a-f]{${n}}$`));
      expect(stableHash('net/ctr/eth0', 64).startsWith(h), `${n} digits`).toBe(true);
    }
  });

  it('spreads similar inputs: no more than one 8-digit collision in 20,000, and even leading digits', () => {
    const seen = new Set<string>();
    const leading = new Map<string, number>();
    for (let i = 0; i < 20_000; i++) {
      const h = stableHash(`veth\0podman\0container${i}\0eth0`, 8);
      seen.add(h);
      leading.set(h[0]!, (leading.get(h[0]!) ?? 0) + 1);
    }
    // 20,000 draws from 2^32: one collision is possible (p ~ 5%), two would be suspicious.
    // The inputs are fixed, so this is deterministic; it guards a change of construction.
    expect(seen.size).toBeGreaterThanOrEqual(19_999);
    // 1,250 expected per leading hex digit; a hash that ignores part of its input clusters.
    expect(leading.size).toBe(16);
    for (const [digit, count] of leading) {
      expect(count, `leading digit ${digit}`).toBeGreaterThan(1_100);
      expect(count, `leading digit ${digit}`).toBeLessThan(1_400);
    }
  });
});
