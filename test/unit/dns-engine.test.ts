import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { DnsEngine } from '../../src/dns/engine.js';
import { HandlerChain, type Handler } from '../../src/dns/chain.js';
import { containersHandler } from '../../src/dns/handler-containers.js';
import { DnsMetrics } from '../../src/dns/metrics.js';
import { RecordSnapshot } from '../../src/dns/snapshot.js';
import { answerData, decode, query } from '../helpers/dns.js';
import { seededRandom } from '../helpers/random.js';

const snapshot = RecordSnapshot.build({
  networks: [{ name: 'red', domain: 'red.shoal', subnets: ['10.1.0.0/24'] }],
  endpoints: [
    { network: 'red', containerId: 'c1', name: 'web', ipv4: ['10.1.0.10'] },
    { network: 'red', containerId: 'c2', name: 'many', ipv4: Array.from({ length: 60 }, (_, i) => `10.1.1.${i}`) },
    // Three replicas behind one alias (a dnsrr service's name).
    ...[11, 12, 13].map((n) => ({ network: 'red', containerId: `r${n}`, name: `r${n}`, aliases: ['api'], ipv4: [`10.1.0.${n}`] })),
  ],
});

function engineWith(extra: Handler[] = []) {
  const registry = new Registry();
  const metrics = new DnsMetrics(registry);
  const engine = new DnsEngine({ chain: new HandlerChain([containersHandler(), ...extra]), snapshot: () => snapshot, metrics });
  const value = async (name: string, labels: Record<string, string> = {}) =>
    (await registry.getSingleMetric(name)?.get())?.values.filter((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l)).reduce((n, v) => n + v.value, 0) ?? 0;
  return { engine, value };
}

describe('engine', () => {
  it('answers local names synchronously and counts the request', async () => {
    const { engine, value } = engineWith();
    const out = engine.handle(query('web'), '10.1.0.5', 'udp');
    expect(Buffer.isBuffer(out)).toBe(true);
    expect(answerData(out as Buffer)).toEqual(['10.1.0.10']);
    expect(await value('shoal_dns_requests_total', { network: 'red', qtype: 'A', rcode: 'NOERROR' })).toBe(1);
  });

  it('answers a name with several addresses in a rotating order, each query a different first address', () => {
    const { engine } = engineWith();
    const answers = [0, 1, 2, 3].map(() => answerData(engine.handle(query('api'), '10.1.0.5', 'udp') as Buffer));
    for (const a of answers) expect([...a].sort()).toEqual(['10.1.0.11', '10.1.0.12', '10.1.0.13']);
    expect(new Set(answers.slice(0, 3).map((a) => a[0])).size).toBe(3);
    expect(answers[3]).toEqual(answers[0]);
    // A single address is not touched.
    expect(answerData(engine.handle(query('web'), '10.1.0.5', 'udp') as Buffer)).toEqual(['10.1.0.10']);
  });

  it('truncates on UDP but not on TCP', () => {
    const { engine } = engineWith();
    const udp = decode(engine.handle(query('many'), '10.1.0.5', 'udp') as Buffer);
    expect(udp.flag_tc).toBe(true);
    const tcp = decode(engine.handle(query('many'), '10.1.0.5', 'tcp') as Buffer);
    expect(tcp.flag_tc).toBe(false);
    expect(tcp.answers).toHaveLength(60);
    const edns = decode(engine.handle(query('many', 'A', { edns: 4096 }), '10.1.0.5', 'udp') as Buffer);
    expect(edns.flag_tc).toBe(false);
  });

  it('answers SERVFAIL and keeps going when a handler throws or rejects', async () => {
    const throws: Handler = { name: 't', pure: false, handle: () => { throw new Error('boom'); } };
    const rejects: Handler = { name: 'r', pure: false, handle: () => Promise.reject(new Error('boom')) };
    expect(decode(engineWith([throws]).engine.handle(query('x'), '10.1.0.5', 'udp') as Buffer).rcode).toBe('SERVFAIL');
    expect(decode((await engineWith([rejects]).engine.handle(query('x'), '10.1.0.5', 'udp'))!).rcode).toBe('SERVFAIL');
  });

  it('counts malformed packets: drops garbage, FORMERRs bad questions', async () => {
    const { engine, value } = engineWith();
    expect(engine.handle(Buffer.from([1, 2, 3]), '10.1.0.5', 'udp')).toBeUndefined();
    const bad = query('web');
    bad.writeUInt16BE(2, 4);
    expect(decode(engine.handle(bad, '10.1.0.5', 'udp') as Buffer).rcode).toBe('FORMERR');
    expect(await value('shoal_dns_malformed_requests_total')).toBe(2);
  });

  it('survives 20,000 random and mutated packets without throwing, answering only well-formed replies', async () => {
    const { engine } = engineWith([{ name: 'end', pure: false, handle: () => ({ kind: 'rcode', rcode: 3, network: 'none' }) }]);
    const seeds = [query('web'), query('many', 'A', { edns: 1232 }), query('web.red.shoal', 'AAAA'), query('10.0.1.10.in-addr.arpa', 'PTR')];
    const random = seededRandom();
    for (let i = 0; i < 20_000; i += 1) {
      let pkt: Buffer;
      if (i % 2 === 0) {
        pkt = random.bytes(i % 300);
      } else {
        pkt = Buffer.from(seeds[i % seeds.length] as Buffer);
        for (let k = 0; k < 1 + (i % 5); k += 1) pkt[(i * 7 + k * 13) % pkt.length] = (i * 31 + k) & 0xff;
        if (i % 7 === 0) pkt = pkt.subarray(0, i % pkt.length);
      }
      const why = `packet ${i} ${pkt.toString('hex')} (seed ${random.seed})`;
      let out: Buffer | undefined;
      try {
        out = await engine.handle(pkt, '10.1.0.5', 'udp');
      } catch (err) {
        throw new Error(`${why} threw: ${(err as Error).message}`, { cause: err });
      }
      if (out) {
        expect(out.length, why).toBeGreaterThanOrEqual(12);
        expect(out.readUInt16BE(2) & 0x8000, why).toBe(0x8000);
      }
    }
    expect(answerData(engine.handle(query('web'), '10.1.0.5', 'udp') as Buffer)).toEqual(['10.1.0.10']);
  });
});
