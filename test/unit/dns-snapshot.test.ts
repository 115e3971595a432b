import { describe, expect, it } from 'vitest';
import { RecordSnapshot } from '../../src/dns/snapshot.js';
import { containersHandler } from '../../src/dns/handler-containers.js';
import { hostsHandler } from '../../src/dns/handler-hosts.js';
import { buildResponse, parseQuery, type ParsedQuery } from '../../src/dns/wire.js';
import type { DnsRecordsInput, LocalResult } from '../../src/dns/types.js';
import { answerData, context, decode, query } from '../helpers/dns.js';
import type dnsPacket from 'dns-packet';

const input: DnsRecordsInput = {
  networks: [
    { name: 'red', domain: 'red.shoal', subnets: ['10.1.0.0/24', 'fd01::/64'], gateways: ['10.1.0.1'], ttl: 7 },
    { name: 'blue', domain: 'blue.shoal', subnets: ['10.2.0.0/24'] },
  ],
  endpoints: [
    { network: 'red', containerId: 'c1', name: 'Web', aliases: ['www', 'front'], ipv4: ['10.1.0.10/24'], ipv6: ['fd01::10/64'] },
    { network: 'red', containerId: 'c2', name: 'v4only', ipv4: ['10.1.0.11'] },
    { network: 'blue', containerId: 'c3', name: 'db', ipv4: ['10.2.0.5'] },
    // A container on both networks, addressed outside any declared subnet on "blue".
    { network: 'blue', containerId: 'c4', name: 'bridge', ipv4: ['192.168.77.4'] },
    { network: 'red', containerId: 'c4', name: 'bridge', ipv4: ['10.1.0.44'] },
  ],
};

/** Runs the containers handler and renders the answer like the engine would. */
function ask(source: string, name: string, type: dnsPacket.RecordType = 'A', snap: DnsRecordsInput | RecordSnapshot = input): { result: LocalResult | undefined; data: string[]; rcode: string | undefined } {
  const ctx = context(snap, source, name, type);
  const result = containersHandler().handle(ctx) as LocalResult | undefined;
  if (!result) return { result, data: [], rcode: undefined };
  const msg = query(name, type);
  const wire = buildResponse(parseQuery(msg) as ParsedQuery, msg, result.rcode, result.records, 65535);
  return { result, data: answerData(wire), rcode: decode(wire).rcode };
}

describe('record snapshot: lookup', () => {
  it('answers a bare name, name.<network> and name.<domain>, case-insensitively', () => {
    expect(ask('10.1.0.99', 'web').data).toEqual(['10.1.0.10']);
    expect(ask('10.1.0.99', 'WEB.red').data).toEqual(['10.1.0.10']);
    expect(ask('10.1.0.99', 'wEb.Red.Shoal.').data).toEqual(['10.1.0.10']);
  });

  it('answers aliases and AAAA', () => {
    expect(ask('10.1.0.99', 'front', 'AAAA').data).toEqual(['fd01::10']);
    expect(ask('10.1.0.99', 'www.red.shoal', 'A').data).toEqual(['10.1.0.10']);
  });

  it('uses the network TTL for local answers', () => {
    const ctx = context(input, '10.1.0.99', 'web');
    const r = containersHandler().handle(ctx) as LocalResult;
    const msg = query('web');
    const wire = buildResponse(parseQuery(msg) as ParsedQuery, msg, r.rcode, r.records, 512);
    expect((decode(wire).answers?.[0] as { ttl?: number }).ttl).toBe(7);
  });

  it('answers NOERROR with no records for a name without an address of the asked family', () => {
    const r = ask('10.1.0.99', 'v4only', 'AAAA');
    expect(r.rcode).toBe('NOERROR');
    expect(r.data).toEqual([]);
    expect(ask('10.1.0.99', 'v4only', 'MX').data).toEqual([]);
    expect(ask('10.1.0.99', 'v4only', 'MX').rcode).toBe('NOERROR');
  });

  it('passes names it does not know to the next handler', () => {
    expect(ask('10.1.0.99', 'nosuch').result).toBeUndefined();
    expect(ask('10.1.0.99', 'web.blue.shoal').result).toBeUndefined();
  });

  it('answers PTR for in-scope container addresses, v4 and v6', () => {
    expect(ask('10.1.0.99', '10.0.1.10.in-addr.arpa', 'PTR').data).toEqual(['web.red.shoal']);
    const v6 = `0.1.${'0.'.repeat(26)}1.0.d.f.ip6.arpa`; // fd01::10
    expect(ask('10.1.0.99', v6, 'PTR').data).toEqual(['web.red.shoal']);
    expect(ask('10.2.0.99', '10.0.1.10.in-addr.arpa', 'PTR').result).toBeUndefined();
  });
});

describe('record snapshot: scoping by source address', () => {
  it('a client sees only the networks its address belongs to', () => {
    expect(ask('10.2.0.99', 'web').result).toBeUndefined();
    expect(ask('10.2.0.99', 'db').data).toEqual(['10.2.0.5']);
    expect(ask('10.1.0.99', 'db').result).toBeUndefined();
    expect(ask('203.0.113.9', 'web').result).toBeUndefined();
    expect(ask('fd01::99', 'web', 'AAAA').data).toEqual(['fd01::10']);
  });

  it('an endpoint address outside any subnet still puts the client in its networks', () => {
    // 192.168.77.4 is c4's address on "blue", outside blue's subnet.
    expect(ask('192.168.77.4', 'db').data).toEqual(['10.2.0.5']);
    const blueOnly = RecordSnapshot.build({ ...input, endpoints: input.endpoints.filter((e) => !(e.containerId === 'c4' && e.network === 'red')) });
    expect(ask('192.168.77.4', 'db', 'A', blueOnly).data).toEqual(['10.2.0.5']);
    expect(ask('192.168.77.4', 'web', 'A', blueOnly).result).toBeUndefined();
  });

  it('a gateway address is in its network', () => {
    expect(ask('10.1.0.1', 'web').data).toEqual(['10.1.0.10']);
  });

  it('a container on two networks resolves the names of both from either of its addresses (docker network connect)', () => {
    // c4 is on red (10.1.0.44) and blue (192.168.77.4); its resolv.conf names one gateway.
    expect(ask('10.1.0.44', 'db').data).toEqual(['10.2.0.5']);
    expect(ask('192.168.77.4', 'web').data).toEqual(['10.1.0.10']);
    // Its own name answers with its address on each network.
    expect(ask('10.1.0.44', 'bridge').data.sort()).toEqual(['10.1.0.44', '192.168.77.4']);
    // A container on red only still sees red only, c4 included by its red address.
    expect(ask('10.1.0.11', 'db').result).toBeUndefined();
    expect(ask('10.1.0.11', 'bridge').data).toEqual(['10.1.0.44']);
    // Detached from blue (its blue endpoint gone), c4 is back to red's names.
    const redOnly = RecordSnapshot.build({ ...input, endpoints: input.endpoints.filter((e) => !(e.containerId === 'c4' && e.network === 'blue')) });
    expect(ask('10.1.0.44', 'db', 'A', redOnly).result).toBeUndefined();
  });

  it('a new snapshot is independent: the old one keeps answering as before', () => {
    const before = RecordSnapshot.build(input);
    const after = RecordSnapshot.build({ ...input, endpoints: input.endpoints.filter((e) => e.name !== 'Web') });
    expect(ask('10.1.0.99', 'web', 'A', before).data).toEqual(['10.1.0.10']);
    expect(ask('10.1.0.99', 'web', 'A', after).result).toBeUndefined();
  });

  it('counts records per network', () => {
    const snap = RecordSnapshot.build(input);
    // red: Web(3 names x 2 addrs) + v4only(1) + bridge(1) = 8; blue: db + bridge = 2
    expect(snap.networks.get('red')?.recordCount).toBe(8);
    expect(snap.networks.get('blue')?.recordCount).toBe(2);
  });
});

describe('hosts handler', () => {
  const withHosts: DnsRecordsInput = {
    networks: [{ name: 'red', domain: 'red.shoal', subnets: ['10.1.0.0/24'], hosts: { 'DB.Internal': ['10.9.9.9', '2001:db8::9'], printer: ['10.9.9.10'] } }],
    endpoints: [],
  };
  it('answers custom hosts as given and under the domain, with PTR', () => {
    const run = (name: string, type: dnsPacket.RecordType) => {
      const r = hostsHandler().handle(context(withHosts, '10.1.0.5', name, type)) as LocalResult | undefined;
      if (!r) return undefined;
      const msg = query(name, type);
      return answerData(buildResponse(parseQuery(msg) as ParsedQuery, msg, r.rcode, r.records, 65535));
    };
    expect(run('db.internal', 'A')).toEqual(['10.9.9.9']);
    expect(run('db.internal', 'AAAA')).toEqual(['2001:db8::9']);
    expect(run('printer.red.shoal', 'A')).toEqual(['10.9.9.10']);
    expect(run('9.9.9.10.in-addr.arpa', 'PTR')).toEqual(['db.internal']);
    expect(run('other', 'A')).toBeUndefined();
  });
  it('is scoped like containers', () => {
    expect(hostsHandler().handle(context(withHosts, '10.3.0.5', 'db.internal', 'A'))).toBeUndefined();
  });
});
