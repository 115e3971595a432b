import { describe, expect, it } from 'vitest';
import { stableHash } from '../../src/hash.js';

describe('stableHash', () => {
  it('is FNV-1a 64 for the first 16 digits (published test vectors)', () => {
    expect(stableHash('')).toBe('cbf29ce484222325');
    expect(stableHash('a')).toBe('af63dc4c8601ec8c');
    expect(stableHash('foobar')).toBe('85944171f73967e8');
  });

  it('is stable, sized as asked, and spreads 20,000 similar inputs without an 8-digit collision', () => {
    expect(stableHash('net/ctr/eth0', 32)).toMatch(/^[0-9a-f]{32}$/);
    expect(stableHash('net/ctr/eth0', 32).slice(0, 16)).toBe(stableHash('net/ctr/eth0'));
    expect(stableHash('net/ctr/eth0', 8)).toBe(stableHash('net/ctr/eth0', 8));
    const seen = new Set<string>();
    for (let i = 0; i < 20_000; i++) seen.add(stableHash(`veth\0podman\0container${i}\0eth0`, 8));
    // 20,000 draws from 2^32: a collision is possible (p ~ 5%), two would be suspicious.
    expect(seen.size).toBeGreaterThanOrEqual(19_999);
  });
});
