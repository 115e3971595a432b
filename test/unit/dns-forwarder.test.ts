import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { ResponseCache } from '../../src/dns/cache.js';
import { Forwarder, buildUpstreamQuery } from '../../src/dns/forwarder.js';
import { DnsMetrics } from '../../src/dns/metrics.js';
import { UpstreamTimeout, parseUpstream, type Protocol, type Upstream, type UpstreamTransport } from '../../src/dns/upstream.js';
import { context, decode, upstreamAnswer } from '../helpers/dns.js';

type Behaviour = 'timeout' | 'error' | 'servfail' | 'tc' | { a: string[]; ttl?: number } | (() => Promise<Buffer>);

/** A fake network of upstreams: each label has a behaviour; every exchange is recorded. */
function fakeTransport(behaviours: Record<string, Behaviour>) {
  const log: string[] = [];
  const transport: UpstreamTransport = {
    async exchange(up: Upstream, q: Buffer, protocol: Protocol, timeoutMs: number): Promise<Buffer> {
      log.push(`${up.label}/${protocol}`);
      const b = behaviours[up.label];
      if (typeof b === 'function') return b();
      if (b === 'timeout' || b === undefined) throw new UpstreamTimeout(up, protocol, timeoutMs);
      if (b === 'error') throw new Error('ECONNREFUSED');
      if (b === 'servfail') return upstreamAnswer(q, { rcode: 'SERVFAIL' });
      if (b === 'tc') return protocol === 'udp' ? upstreamAnswer(q, { tc: true }) : upstreamAnswer(q, { a: ['192.0.2.99'] });
      return upstreamAnswer(q, b);
    },
  };
  return { log, transport };
}

const input = { networks: [{ name: 'red', subnets: ['10.1.0.0/24'] }], endpoints: [] };

function setup(behaviours: Record<string, Behaviour>, opts: { defaults?: string[]; max?: number; now?: () => number } = {}) {
  const { log, transport } = fakeTransport(behaviours);
  const registry = new Registry();
  const cache = new ResponseCache({ now: opts.now });
  const metrics = new DnsMetrics(registry);
  const fwd = new Forwarder({ transport, cache, defaultUpstreams: () => opts.defaults ?? [], metrics, maxConcurrent: opts.max, now: opts.now });
  const ask = (name: string, own?: string[]) => {
    const ctx = context(input, '10.1.0.5', name);
    return fwd.forward(ctx.questionBytes, ctx.question, false, own, 'red');
  };
  const metric = async (name: string) => (await registry.getSingleMetric(name)?.get())?.values ?? [];
  return { log, fwd, ask, metric, cache };
}

const data = (r: Awaited<ReturnType<Forwarder['forward']>>) => (r.kind === 'raw' ? (decode(r.message).answers ?? []).map((a) => (a as { data: unknown }).data) : []);

describe('forwarder', () => {
  it('fails over to the next upstream on timeout and error, and counts each outcome', async () => {
    const { log, ask, metric } = setup({ '192.0.2.1:53': 'timeout', '192.0.2.2:53': 'error', '192.0.2.3:53': { a: ['198.51.100.7'] } });
    const r = await ask('example.org', ['192.0.2.1', '192.0.2.2', '192.0.2.3']);
    expect(data(r)).toEqual(['198.51.100.7']);
    expect(log).toEqual(['192.0.2.1:53/udp', '192.0.2.2:53/udp', '192.0.2.3:53/udp']);
    const outcomes = (await metric('shoal_dns_forward_requests_total')).map((v) => `${v.labels.upstream}=${v.labels.rcode}:${v.value}`).sort();
    expect(outcomes).toEqual(['192.0.2.1:53=timeout:1', '192.0.2.2:53=error:1', '192.0.2.3:53=NOERROR:1']);
  });

  it('fails over on SERVFAIL and returns the SERVFAIL only when every upstream fails', async () => {
    const { ask } = setup({ '192.0.2.1:53': 'servfail', '192.0.2.2:53': { a: ['198.51.100.8'] } });
    expect(data(await ask('a.example', ['192.0.2.1', '192.0.2.2']))).toEqual(['198.51.100.8']);
    const all = setup({ '192.0.2.1:53': 'servfail', '192.0.2.2:53': 'timeout' });
    expect((await all.ask('a.example', ['192.0.2.1', '192.0.2.2'])).rcode).toBe(2);
    const none = setup({});
    expect(await none.ask('a.example', ['192.0.2.1'])).toMatchObject({ kind: 'rcode', rcode: 2 });
  });

  it('tries a recently failed upstream last', async () => {
    let t = 0;
    const { log, ask } = setup({ '192.0.2.1:53': 'timeout', '192.0.2.2:53': { a: ['198.51.100.1'], ttl: 0 } }, { now: () => t });
    await ask('one.example', ['192.0.2.1', '192.0.2.2']);
    await ask('two.example', ['192.0.2.1', '192.0.2.2']);
    expect(log.slice(2)).toEqual(['192.0.2.2:53/udp']);
    t += 10_000; // hold expired: back to configured order
    await ask('three.example', ['192.0.2.1', '192.0.2.2']);
    expect(log[3]).toBe('192.0.2.1:53/udp');
  });

  it('retries over TCP when the UDP answer is truncated', async () => {
    const { log, ask } = setup({ '192.0.2.1:53': 'tc' });
    expect(data(await ask('big.example', ['192.0.2.1']))).toEqual(['192.0.2.99']);
    expect(log).toEqual(['192.0.2.1:53/udp', '192.0.2.1:53/tcp']);
  });

  it('uses the default (resolv.conf) upstreams when the network has none', async () => {
    const { log, ask } = setup({ '192.0.2.9:5353': { a: ['198.51.100.9'] } }, { defaults: ['192.0.2.9:5353', 'not-an-address'] });
    expect(data(await ask('x.example'))).toEqual(['198.51.100.9']);
    expect(log).toEqual(['192.0.2.9:5353/udp']);
  });

  it('answers a repeated question from the cache and counts hits and misses', async () => {
    const { log, ask, metric } = setup({ '192.0.2.1:53': { a: ['198.51.100.1'] } });
    await ask('c.example', ['192.0.2.1']);
    const second = await ask('C.Example', ['192.0.2.1']);
    expect(data(second)).toEqual(['198.51.100.1']);
    expect(log).toHaveLength(1);
    expect((await metric('shoal_dns_cache_hits_total'))[0]?.value).toBe(1);
    expect((await metric('shoal_dns_cache_misses_total'))[0]?.value).toBe(1);
  });

  it('coalesces identical concurrent questions into one upstream query', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const q = buildUpstreamQuery(context(input, '10.1.0.5', 'slow.example').questionBytes, false);
    const { log, ask } = setup({ '192.0.2.1:53': async () => (await gate, upstreamAnswer(q, { a: ['198.51.100.3'] })) });
    const all = [ask('slow.example', ['192.0.2.1']), ask('slow.example', ['192.0.2.1']), ask('slow.example', ['192.0.2.1'])];
    release();
    const results = await Promise.all(all);
    expect(results.map((r) => data(r))).toEqual([['198.51.100.3'], ['198.51.100.3'], ['198.51.100.3']]);
    expect(log).toHaveLength(1);
  });

  it('answers REFUSED past the concurrency cap, and forwards again once below it', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const behaviour: Behaviour = async () => {
      await gate;
      return upstreamAnswer(buildUpstreamQuery(Buffer.from([0, 0, 1, 0, 1]), false), { rcode: 'SERVFAIL' });
    };
    const { fwd, ask } = setup({ '192.0.2.1:53': behaviour }, { max: 2 });
    const a = ask('a.example', ['192.0.2.1']);
    const b = ask('b.example', ['192.0.2.1']);
    expect(fwd.inFlight).toBe(2);
    // Synchronous, not a promise: it leaves in the batch's sendmmsg like a local answer.
    const refused = ask('c.example', ['192.0.2.1']);
    expect(refused).not.toBeInstanceOf(Promise);
    expect(refused).toMatchObject({ kind: 'rcode', rcode: 5 });
    release();
    await Promise.all([a, b]);
    expect(fwd.inFlight).toBe(0);
    expect((await ask('d.example', ['192.0.2.1'])).rcode).toBe(2);
  });

  it('builds an upstream query with RD, the lower-cased question and an OPT record', () => {
    const ctx = context(input, '10.1.0.5', 'MiXeD.Example');
    const q = decode(buildUpstreamQuery(ctx.questionBytes, true));
    expect(q.questions?.[0]?.name).toBe('mixed.example');
    expect(q.flag_rd).toBe(true);
    expect(q.additionals?.[0]).toMatchObject({ type: 'OPT', udpPayloadSize: 1232, flag_do: true });
  });

  it('parses upstream addresses', () => {
    expect(parseUpstream('192.0.2.1')).toMatchObject({ host: '192.0.2.1', port: 53, label: '192.0.2.1:53' });
    expect(parseUpstream('127.0.0.53:5353')).toMatchObject({ host: '127.0.0.53', port: 5353 });
    expect(parseUpstream('::1')).toMatchObject({ host: '::1', port: 53, label: '[::1]:53' });
    expect(parseUpstream('[fd00::1]:54')).toMatchObject({ host: 'fd00::1', port: 54 });
    expect(parseUpstream('dns.example')).toBeUndefined();
    expect(parseUpstream('1.2.3.4:0')).toBeUndefined();
  });
});
