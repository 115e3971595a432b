import { describe, expect, it } from 'vitest';
import { ResponseCache } from '../../src/dns/cache.js';
import { decode, query, upstreamAnswer } from '../helpers/dns.js';

function clock(start = 1_000_000) {
  const c = { t: start, now: () => c.t };
  return c;
}

describe('response cache', () => {
  it('serves a positive answer until its TTL, ageing the TTLs', () => {
    const c = clock();
    const cache = new ResponseCache({ now: c.now });
    expect(cache.set('k', upstreamAnswer(query('a.test'), { a: ['192.0.2.1'], ttl: 30 }))).toBe(true);
    c.t += 10_500;
    const hit = cache.get('k');
    expect(hit).toBeDefined();
    expect((decode(hit!.message).answers?.[0] as { ttl?: number }).ttl).toBe(20);
    c.t += 19_500;
    expect(cache.get('k')).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it('caps positive TTLs', () => {
    const c = clock();
    const cache = new ResponseCache({ now: c.now, maxTtl: 5 });
    cache.set('k', upstreamAnswer(query('a.test'), { a: ['192.0.2.1'], ttl: 3000 }));
    c.t += 5_000;
    expect(cache.get('k')).toBeUndefined();
  });

  it('caches NXDOMAIN for min(SOA TTL, SOA minimum)', () => {
    const c = clock();
    const cache = new ResponseCache({ now: c.now });
    expect(cache.set('n', upstreamAnswer(query('no.test'), { rcode: 'NXDOMAIN', soa: { ttl: 900, minimum: 60 } }))).toBe(true);
    c.t += 59_000;
    expect(cache.get('n')?.rcode).toBe(3);
    c.t += 1_000;
    expect(cache.get('n')).toBeUndefined();
  });

  it('caches NODATA by its SOA and caps negative TTLs', () => {
    const c = clock();
    const cache = new ResponseCache({ now: c.now, maxNegativeTtl: 10 });
    expect(cache.set('n', upstreamAnswer(query('a.test', 'AAAA'), { soa: { ttl: 300, minimum: 300 } }))).toBe(true);
    c.t += 9_999;
    expect(cache.get('n')).toBeDefined();
    c.t += 1;
    expect(cache.get('n')).toBeUndefined();
  });

  it('does not cache negative answers without SOA, SERVFAIL, truncated or TTL 0', () => {
    const cache = new ResponseCache();
    expect(cache.set('a', upstreamAnswer(query('x.test'), { rcode: 'NXDOMAIN' }))).toBe(false);
    expect(cache.set('b', upstreamAnswer(query('x.test'), { rcode: 'SERVFAIL' }))).toBe(false);
    expect(cache.set('c', upstreamAnswer(query('x.test'), { a: ['192.0.2.1'], tc: true }))).toBe(false);
    expect(cache.set('d', upstreamAnswer(query('x.test'), { a: ['192.0.2.1'], ttl: 0 }))).toBe(false);
    expect(cache.set('e', Buffer.from([1, 2, 3]))).toBe(false);
    expect(cache.size).toBe(0);
  });

  it('evicts the least recently used entry past its bound', () => {
    const cache = new ResponseCache({ maxEntries: 2 });
    const a = upstreamAnswer(query('a.test'), { a: ['192.0.2.1'] });
    cache.set('1', a);
    cache.set('2', a);
    cache.get('1'); // 2 is now the least recently used
    cache.set('3', a);
    expect(cache.get('2')).toBeUndefined();
    expect(cache.get('1')).toBeDefined();
    expect(cache.get('3')).toBeDefined();
  });

  it('hands out copies: mutating a hit does not change the cache', () => {
    const cache = new ResponseCache();
    cache.set('k', upstreamAnswer(query('a.test'), { a: ['192.0.2.1'] }));
    cache.get('k')!.message.fill(0);
    expect(decode(cache.get('k')!.message).answers?.[0]).toMatchObject({ data: '192.0.2.1' });
  });
});
