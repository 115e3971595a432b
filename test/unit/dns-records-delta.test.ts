/**
 * Record changes applied as deltas (records-diff.ts, snapshot.ts applyDelta): the diff finds
 * exactly the endpoints that changed, falls back to a full set where a delta cannot say it, and
 * a snapshot kept current by deltas answers every question the way one built whole from the
 * same record set does, memoized answers and negative ones included.
 */
import { describe, expect, it } from 'vitest';
import { HandlerChain } from '../../src/dns/chain.js';
import { containersHandler } from '../../src/dns/handler-containers.js';
import { hostsHandler } from '../../src/dns/handler-hosts.js';
import { zoneHandler } from '../../src/dns/handler-zone.js';
import { parseAddress, reverseName } from '../../src/dns/ip.js';
import { diffEndpoints, RecordsDiffer } from '../../src/dns/records-diff.js';
import { RecordSnapshot } from '../../src/dns/snapshot.js';
import type { DnsEndpoint, DnsNetworkConfig, DnsRecordsInput, HandlerResult } from '../../src/dns/types.js';
import { context } from '../helpers/dns.js';
import type dnsPacket from 'dns-packet';

const networks: DnsNetworkConfig[] = [
  { name: 'red', domain: 'red.shoal', subnets: ['10.1.0.0/24', 'fd01::/64'], gateways: ['10.1.0.1'], hosts: { 'db.internal': ['192.0.2.9'] } },
  { name: 'blue', domain: 'blue.shoal', subnets: ['10.2.0.0/24'] },
];
const ep = (network: string, id: string, name: string, ip: string, more: Partial<DnsEndpoint> = {}): DnsEndpoint => ({ network, containerId: id, name, ipv4: [ip], ...more });

describe('records diff', () => {
  const base = [ep('red', 'a', 'a', '10.1.0.10'), ep('red', 'b', 'b', '10.1.0.11'), ep('blue', 'c', 'c', '10.2.0.12'), ep('red', 'd', 'd', '10.1.0.13')];

  it('finds one endpoint inserted, dropped or changed anywhere, comparing fields, not objects', () => {
    const copy = base.map((e) => ({ ...e, ifname: 'eth0' }));
    const x = ep('red', 'x', 'x', '10.1.0.99');
    expect(diffEndpoints(base, copy)).toEqual({ added: [], removed: [] });
    expect(diffEndpoints(base, [...copy.slice(0, 2), x, ...copy.slice(2)])).toEqual({ added: [x], removed: [] });
    expect(diffEndpoints(base, [copy[0]!, copy[2]!, copy[3]!])).toEqual({ added: [], removed: [base[1]] });
    const renamed = { ...copy[2]!, aliases: ['cee'] };
    expect(diffEndpoints(base, [copy[0]!, copy[1]!, renamed, copy[3]!])).toEqual({ added: [renamed], removed: [base[2]] });
  });

  it('diffs a reordered set, and counts identical endpoints as many times as they occur', () => {
    const twice = [...base, { ...base[0]! }];
    expect(diffEndpoints(base, [...base].reverse())).toEqual({ added: [], removed: [] });
    expect(diffEndpoints(base, twice).added).toEqual([base[0]]);
    expect(diffEndpoints(twice, [...base].reverse()).removed).toHaveLength(1);
  });

  it('sends a full set first, on a network or SRV change, and for a network without config', () => {
    const d = new RecordsDiffer();
    expect(d.change({ networks, endpoints: base }).kind).toBe('full');
    expect(d.change({ networks, endpoints: [...base, ep('red', 'x', 'x', '10.1.0.99')] })).toMatchObject({ kind: 'delta', added: [{ name: 'x' }], removed: [] });
    expect(d.change({ networks: [...networks].reverse(), endpoints: base }).kind).toBe('full');
    expect(d.change({ networks: [...networks].reverse(), endpoints: base, srv: new Map([['red', new Map([['_web._tcp', [{ port: 80, target: 'web.red.shoal' }]]])]]) }).kind).toBe('full');
    d.change({ networks, endpoints: base });
    expect(d.change({ networks, endpoints: [...base, ep('green', 'g', 'g', '10.3.0.1')] }).kind).toBe('full');
  });

  it('a container joining or leaving a second network is a delta that carries all its endpoints after the change', () => {
    const d = new RecordsDiffer();
    d.change({ networks, endpoints: base });
    const second = ep('blue', 'a', 'a', '10.2.0.10');
    expect(d.change({ networks, endpoints: [...base, second] })).toEqual({ kind: 'delta', added: [second], removed: [], containers: [['a', [base[0], second]]] });
    expect(d.change({ networks, endpoints: base })).toEqual({ kind: 'delta', added: [], removed: [second], containers: [['a', [base[0]]]] });
    expect(d.change({ networks, endpoints: base.slice(1) })).toEqual({ kind: 'delta', added: [], removed: [base[0]], containers: [['a', []]] });
  });
});

/** A seeded generator, so a failure replays. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const handlers = () => [containersHandler(), hostsHandler(), zoneHandler(), { name: 'fwd', pure: false, handle: () => ({ kind: 'rcode' as const, rcode: 2, network: 'upstream' }) }];

/** Every outcome a client can see, as comparable text (records in answer order). */
function outcome(chain: HandlerChain, snap: RecordSnapshot, source: string, name: string, type: dnsPacket.RecordType): string {
  const r = chain.resolve(context(snap, source, name, type)) as HandlerResult;
  return r.kind === 'local' ? `${r.rcode} ${r.network} ${r.records.map((b) => b.toString('hex')).join(',')}` : `${r.kind} ${r.rcode}`;
}

describe('a snapshot kept current by deltas', () => {
  it('answers like one built whole, after every one of 300 random adds and removes, containers joining and leaving second networks included', () => {
    const rnd = random(18);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
    // Few names and addresses, so that names, aliases and addresses collide (a dnsrr service's
    // name on its replicas' addresses, a name on two networks, two endpoints on one address).
    const names = ['web', 'db', 'cache', 'api', 'newbie'];
    const candidates: DnsEndpoint[] = [];
    const redAddress = (): string => `10.1.0.${10 + Math.floor(rnd() * 8)}/24`;
    for (let i = 0; i < 40; i += 1) {
      const network = pick(['red', 'blue']);
      const more: Partial<DnsEndpoint> = {};
      if (rnd() < 0.3) more.aliases = [pick(names)];
      if (network === 'red' && rnd() < 0.3) more.ipv6 = [`fd01::${10 + Math.floor(rnd() * 5)}`];
      candidates.push(ep(network, `c${i}`, pick(names), network === 'red' ? redAddress() : `10.2.0.${10 + Math.floor(rnd() * 8)}/24`, more));
    }
    // Containers that join and leave a second network (docker network connect / disconnect):
    // endpoints of one id on red and on blue, their blue addresses in blue's subnet or outside
    // any subnet (then only the shared scope puts them anywhere), their red ones among the
    // single-network containers' addresses; m0 also has two endpoints on red.
    const multi: DnsEndpoint[] = [];
    for (let i = 0; i < 6; i += 1) {
      const id = `m${i}`;
      const name = pick([...names, 'both']);
      multi.push(ep('red', id, name, redAddress()), ep('blue', id, name, i % 2 ? `192.168.7.${50 + i}` : `10.2.0.${10 + i}/24`, rnd() < 0.5 ? { aliases: [pick(names)] } : {}));
    }
    multi.push(ep('red', 'm0', 'm0-eth2', redAddress()));
    candidates.push(...multi, ...multi); // picked as often as the others together
    const questions: [string, dnsPacket.RecordType][] = [];
    for (const n of [...names, 'both', 'm0-eth2', 'nosuch']) for (const s of [n, `${n}.red`, `${n}.blue.shoal`, `${n}.red.shoal`]) questions.push([s, 'A'], [s, 'AAAA']);
    for (let h = 10; h < 18; h += 1) questions.push([`${h}.0.1.10.in-addr.arpa`, 'PTR'], [`${h}.0.2.10.in-addr.arpa`, 'PTR']);
    for (let h = 10; h < 15; h += 1) questions.push([reverseName(parseAddress(`fd01::${h}`)!), 'PTR']);
    for (let h = 50; h < 56; h += 1) questions.push([`${h}.7.168.192.in-addr.arpa`, 'PTR']);
    // Clients in a subnet only, and at addresses multi-network containers take and give back.
    const sources = ['10.1.0.200', '10.2.0.200', '10.1.0.12', '10.2.0.12', '192.168.7.51', '192.168.7.53'];

    let endpoints = [ep('red', 'both', 'both', '10.1.0.50'), ep('blue', 'both', 'both', '192.168.7.50')];
    const differ = new RecordsDiffer();
    const incremental = RecordSnapshot.build({ networks, endpoints });
    differ.change({ networks, endpoints });
    const chain = new HandlerChain(handlers());
    let deltas = 0;
    /** Deltas that changed a container's set of networks from one to several or back. */
    let scopeChanges = 0;
    const networksOf = (list: readonly DnsEndpoint[], id: string): number => new Set(list.filter((e) => e.containerId === id).map((e) => e.network)).size;
    for (let step = 0; step < 300; step += 1) {
      // Memoize answers (negative ones too) before the change, as a busy server would have.
      for (const s of sources) for (const [q, t] of questions) outcome(chain, incremental, s, q, t);
      // Removals grow likelier as the set grows (it stays near 20 endpoints), so containers
      // keep dropping back to one network instead of piling up endpoints on both.
      const victim = rnd() < endpoints.length / 40 ? pick(endpoints) : undefined;
      const before = endpoints;
      endpoints = victim ? endpoints.filter((e) => e !== victim) : [...endpoints, pick(candidates)];
      const id = (victim ?? endpoints[endpoints.length - 1]!).containerId;
      if ((networksOf(before, id) > 1) !== (networksOf(endpoints, id) > 1)) scopeChanges += 1;
      const input: DnsRecordsInput = { networks, endpoints };
      const change = differ.change(input);
      expect(change.kind).toBe('delta');
      if (change.kind === 'delta') incremental.applyDelta(change);
      deltas += 1;
      const whole = RecordSnapshot.build(input);
      const fresh = new HandlerChain(handlers());
      for (const s of sources) for (const [q, t] of questions) expect(`${step} ${s} ${q} ${t}: ${outcome(chain, incremental, s, q, t)}`).toBe(`${step} ${s} ${q} ${t}: ${outcome(fresh, whole, s, q, t)}`);
      expect([...incremental.networks.values()].map((n) => n.recordCount)).toEqual([...whole.networks.values()].map((n) => n.recordCount));
    }
    expect(deltas).toBe(300);
    expect(scopeChanges).toBeGreaterThan(30); // 43 with this seed
  }, 20_000); // ~2 s alone; the unit default (5 s) is short on a shared machine

  it('a name added is answered at once where its absence was memoized, and its PTR follows', () => {
    const input = { networks, endpoints: [ep('red', 'a', 'a', '10.1.0.10')] };
    const snap = RecordSnapshot.build(input);
    const chain = new HandlerChain(handlers());
    expect(outcome(chain, snap, '10.1.0.200', 'newbie.red.shoal', 'A')).toMatch(/^3 red/); // NXDOMAIN, memoized
    expect(outcome(chain, snap, '10.1.0.200', 'newbie', 'A')).toBe('rcode 2'); // not local: forwarded
    const newbie = ep('red', 'n', 'newbie', '10.1.0.77');
    snap.applyDelta({ added: [newbie], removed: [], containers: [['n', [newbie]]] });
    expect(outcome(chain, snap, '10.1.0.200', 'newbie.red.shoal', 'A')).toBe(`0 red ${outcome(new HandlerChain(handlers()), RecordSnapshot.build({ networks, endpoints: [...input.endpoints, newbie] }), '10.1.0.200', 'newbie.red.shoal', 'A').slice(6)}`);
    expect(outcome(chain, snap, '10.1.0.200', 'newbie', 'A')).toMatch(/^0 red /);
    expect(outcome(chain, snap, '10.1.0.200', '77.0.1.10.in-addr.arpa', 'PTR')).toMatch(/^0 red /);
    snap.applyDelta({ added: [], removed: [newbie], containers: [['n', []]] });
    expect(outcome(chain, snap, '10.1.0.200', 'newbie.red.shoal', 'A')).toMatch(/^3 red/);
    expect(outcome(chain, snap, '10.1.0.200', '77.0.1.10.in-addr.arpa', 'PTR')).toBe('rcode 2');
  });
});
