import { describe, expect, it } from 'vitest';
import { affinitySet, desiredLb, diffLb, endpointChain, type LbServicePort } from '../../src/service/nft-rules.js';
import { kernelPorts, leftBackends, staleUdpFilters } from '../../src/service/datapath.js';
import { withServiceRecords } from '../../src/service/dns.js';
import { buildSrvTable } from '../../src/service/dns-srv.js';
import { buildSpec, type ServiceRecord } from '../../src/service/model.js';
import type { RegistryContents } from '../../src/dns/registry.js';

const web = (backends: string[], extra: Partial<LbServicePort> = {}): LbServicePort => ({
  service: 'web',
  protocol: 'tcp',
  target: 80,
  published: 18380,
  vip: '10.183.0.200',
  policy: 'rr',
  backends,
  ...extra,
});

describe('kernel data path: desired state', () => {
  it('a VIP and a published port jump to one service chain that picks an endpoint chain', () => {
    const d = desiredLb(4, [web(['10.183.0.2', '10.183.0.3'])], ['10.183.0.0/24']);
    expect(d.vips.get('10.183.0.200 . tcp . 80')).toBe('goto svc-web-tcp-80');
    expect(d.published.get('tcp . 18380')).toBe('goto svc-web-tcp-80');
    const svc = d.chains.get('svc-web-tcp-80')!;
    expect(svc).toHaveLength(1);
    expect(svc[0]!.expr).toBe(`numgen inc mod 2 vmap { 0 : goto ${endpointChain(web([]), '10.183.0.2')}, 1 : goto ${endpointChain(web([]), '10.183.0.3')} }`);
    expect(d.chains.get(endpointChain(web([]), '10.183.0.3'))!.map((r) => r.expr)).toContain('meta l4proto tcp dnat to 10.183.0.3:80');
    expect([...d.masqSources].sort()).toEqual(['10.183.0.0/24', '127.0.0.0/8']);
    expect(desiredLb(4, [web(['a'], { policy: 'source-hash' })], []).chains.get('svc-web-tcp-80')![0]!.expr).toMatch(/^jhash ip saddr mod 1/);
  });

  it('a service with no healthy replica keeps its map elements and an empty chain, and is rejected', () => {
    const d = desiredLb(4, [web([])], []);
    expect(d.chains.get('svc-web-tcp-80')).toEqual([]);
    expect(d.vips.size).toBe(1);
    expect([...d.noEndpoints]).toEqual(['10.183.0.200 . tcp . 80']);
    expect([...d.noEndpointsPublished]).toEqual(['tcp . 18380']);
    const back = diffLb(d, desiredLb(4, [web(['10.183.0.2'])], [])).render();
    expect(back).toContain('delete element ip shoal-lb lb-no-endpoints { 10.183.0.200 . tcp . 80 }');
    expect(back).toContain('delete element ip shoal-lb lb-no-endpoints-published { tcp . 18380 }');
    expect(diffLb(undefined, d).render()).toContain('add element ip shoal-lb lb-no-endpoints { 10.183.0.200 . tcp . 80 }');
  });

  it('the first apply builds the table; a change touches only what changed; the last service takes the table', () => {
    const a = desiredLb(4, [web(['10.183.0.2', '10.183.0.3'])], ['10.183.0.0/24']);
    const first = diffLb(undefined, a).render();
    expect(first).toContain('add table ip shoal-lb');
    expect(first).toContain('add element ip shoal-lb lb-vips { 10.183.0.200 . tcp . 80 : goto svc-web-tcp-80 }');
    expect(diffLb(a, a).isEmpty).toBe(true);
    const b = desiredLb(4, [web(['10.183.0.2'])], ['10.183.0.0/24']);
    const change = diffLb(a, b).render();
    expect(change).not.toContain('add table');
    expect(change).not.toContain('lb-vips');
    expect(change).toContain('flush chain ip shoal-lb svc-web-tcp-80');
    expect(change).toContain(`delete chain ip shoal-lb ${endpointChain(web([]), '10.183.0.3')}`);
    // The replica that stays keeps its chain untouched (only referenced by the refilled vmap).
    expect(change).not.toMatch(new RegExp(`(add|flush|delete) chain ip shoal-lb ${endpointChain(web([]), '10.183.0.2')}`));
    // Deleting a chain comes after the service chain stopped jumping to it.
    expect(change.indexOf('flush chain ip shoal-lb svc-web-tcp-80')).toBeLessThan(change.indexOf(`delete chain ip shoal-lb ${endpointChain(web([]), '10.183.0.3')}`));
    expect(diffLb(b, desiredLb(4, [], [])).render()).toContain('delete table ip shoal-lb');
    expect(diffLb(undefined, desiredLb(4, [], [])).isEmpty).toBe(true);
    // No service before, none now: nothing to do (every daemon sync takes this path).
    expect(diffLb(desiredLb(4, [], []), desiredLb(4, [], [])).isEmpty).toBe(true);
    // The first service after such a sync: there is no table, so the diff makes it whole.
    const afterEmpty = diffLb(desiredLb(4, [], []), a).render();
    expect(afterEmpty).toBe(diffLb(undefined, a).render());
    expect(afterEmpty).toContain('add table ip shoal-lb');
  });

  it('byte counters: one per service and direction, named by the VIP and published-port maps; made before, removed after', () => {
    const a = desiredLb(4, [web(['10.183.0.2']), web(['10.183.0.2'], { protocol: 'udp', target: 53, published: undefined })], []);
    expect([...a.counters].sort()).toEqual(['bytes-web-in', 'bytes-web-out']);
    expect(a.byteMaps.get('lb-bytes-vip-tcp-in')?.get('10.183.0.200 . 80')).toBe('"bytes-web-in"');
    expect(a.byteMaps.get('lb-bytes-vip-udp-out')?.get('10.183.0.200 . 53')).toBe('"bytes-web-out"');
    expect(a.byteMaps.get('lb-bytes-pub-tcp-out')?.get('18380')).toBe('"bytes-web-out"');
    expect(a.byteMaps.has('lb-bytes-pub-udp-in')).toBe(false);
    const first = diffLb(undefined, a).render();
    expect(first).toContain('add counter ip shoal-lb bytes-web-in');
    expect(first).toContain('add map ip shoal-lb lb-bytes-vip-tcp-in { type ipv4_addr . inet_service : counter ; }');
    expect(first).toContain('add rule ip shoal-lb count-forward ct status dnat ct direction vmap { original : jump lb-bytes-in, reply : jump lb-bytes-out }');
    expect(first).toContain('add rule ip shoal-lb lb-bytes-out meta l4proto udp counter name ct original ip daddr . ct original proto-dst map @lb-bytes-vip-udp-out return');
    expect(first.indexOf('add counter ip shoal-lb bytes-web-in')).toBeLessThan(first.indexOf('add element ip shoal-lb lb-bytes-vip-tcp-in'));
    // A replica change touches no counter; the service's removal (another one stays) removes its
    // elements, then its counters.
    expect(diffLb(a, desiredLb(4, [web(['10.183.0.3'])], [])).render()).not.toMatch(/counter|lb-bytes-vip-tcp/);
    const other = web(['10.183.0.9'], { service: 'api', vip: '10.183.0.201', published: 18381 });
    const gone = diffLb(desiredLb(4, [web(['10.183.0.2']), other], []), desiredLb(4, [other], [])).render();
    expect(gone).toContain('delete element ip shoal-lb lb-bytes-pub-tcp-in { 18380 }');
    expect(gone.indexOf('delete element ip shoal-lb lb-bytes-vip-tcp-out')).toBeLessThan(gone.indexOf('delete counter ip shoal-lb bytes-web-out'));
    expect(gone).not.toContain('bytes-api');
  });

  it('client affinity: a timed set per endpoint, looked up before the pick, updated on the way in', () => {
    const ep2 = endpointChain(web([]), '10.183.0.2');
    const ep3 = endpointChain(web([]), '10.183.0.3');
    const a = desiredLb(4, [web(['10.183.0.2', '10.183.0.3'], { affinityS: 600 })], []);
    expect(a.chains.get('svc-web-tcp-80')!.map((r) => r.expr)).toEqual([
      `ip saddr @${affinitySet(ep2, 600)} goto ${ep2}`,
      `ip saddr @${affinitySet(ep3, 600)} goto ${ep3}`,
      `numgen inc mod 2 vmap { 0 : goto ${ep2}, 1 : goto ${ep3} }`,
    ]);
    expect(a.chains.get(ep2)![0]!.expr).toBe(`update @${affinitySet(ep2, 600)} { ip saddr }`);
    const first = diffLb(undefined, a).render();
    expect(first).toContain(`add set ip shoal-lb ${affinitySet(ep2, 600)} { type ipv4_addr ; flags dynamic,timeout ; timeout 600s ; }`);
    // The set exists before the rule that names it.
    expect(first.indexOf(`add set ip shoal-lb ${affinitySet(ep2, 600)}`)).toBeLessThan(first.indexOf(`update @${affinitySet(ep2, 600)}`));
    // A replica that leaves takes its set along, after the rules that used it.
    const b = desiredLb(4, [web(['10.183.0.2'], { affinityS: 600 })], []);
    const change = diffLb(a, b).render();
    expect(change).toContain(`delete set ip shoal-lb ${affinitySet(ep3, 600)}`);
    expect(change.indexOf(`delete chain ip shoal-lb ${ep3}`)).toBeLessThan(change.indexOf(`delete set ip shoal-lb ${affinitySet(ep3, 600)}`));
    // Affinity off: sets gone, plain pick.
    const off = diffLb(b, desiredLb(4, [web(['10.183.0.2'])], [])).render();
    expect(off).toContain(`delete set ip shoal-lb ${affinitySet(ep2, 600)}`);
    expect(desiredLb(6, [web(['fd00::2'], { vip: 'fd00::200', affinityS: 5 })], []).chains.get('svc-web-tcp-80')![0]!.expr).toMatch(/^ip6 saddr @aff-/);
  });
});

const record = (over: Partial<ServiceRecord> = {}): ServiceRecord => ({
  ...buildSpec({ name: 'web', network: 'net', ports: ['18380:80', '18381:53/udp'] }),
  vips: ['10.183.0.200'],
  created: '',
  updated: '',
  ...over,
});

describe('kernel data path: ports and stale UDP flows', () => {
  it('only kernel-mode services, healthy replicas of the family', () => {
    const healthy = [{ id: 'a/eth0', containerId: 'a', name: 'a', node: 'local', local: true, ipv4: '10.183.0.2' }];
    const ports = kernelPorts(4, [{ record: record(), network: undefined, healthy }]);
    expect(ports.map((p) => [p.protocol, p.target, p.published, p.vip, p.backends])).toEqual([
      ['tcp', 80, 18380, '10.183.0.200', ['10.183.0.2']],
      ['udp', 53, 18381, '10.183.0.200', ['10.183.0.2']],
    ]);
    expect(kernelPorts(4, [{ record: record({ lbMode: 'proxy' }), network: undefined, healthy }])).toEqual([]);
    expect(kernelPorts(6, [{ record: record(), network: undefined, healthy }]).every((p) => p.backends.length === 0 && p.vip === undefined)).toBe(true);
  });

  it('flushes UDP flows of a backend that left, on the VIP and the published port', () => {
    const prev = [web(['10.183.0.2', '10.183.0.3'], { protocol: 'udp', target: 53, published: 18381 })];
    const next = [web(['10.183.0.2'], { protocol: 'udp', target: 53, published: 18381 })];
    expect(staleUdpFilters(4, prev, next)).toEqual([
      { family: 4, proto: 17, origDst: '10.183.0.200', origDstPort: 53, replySrc: '10.183.0.3' },
      { family: 4, proto: 17, origDstPort: 18381, replySrc: '10.183.0.3' },
    ]);
    expect(staleUdpFilters(4, [web(['10.183.0.3'])], [])).toEqual([]);
  });

  it('TCP backends that left a port (their drain timeout starts), the service gone included', () => {
    const prev = [web(['10.183.0.2', '10.183.0.3'])];
    expect(leftBackends('tcp', prev, [web(['10.183.0.2'])]).map((l) => l.backend)).toEqual(['10.183.0.3']);
    expect(leftBackends('tcp', prev, []).map((l) => l.backend)).toEqual(['10.183.0.2', '10.183.0.3']);
    expect(leftBackends('tcp', prev, prev)).toEqual([]);
    expect(leftBackends('udp', prev, [])).toEqual([]);
  });
});

describe('kernel data path across nodes', () => {
  const remote = { id: 'r/eth0', containerId: 'r', name: 'r', node: 'n1', local: false, ipv4: '10.100.0.70' };
  const local = { id: 'l/eth0', containerId: 'l', name: 'l', node: 'n0', local: true, ipv4: '10.100.0.5' };
  const snat = { bridge: 'vb-001000-abcde', address: '10.100.0.66' };

  it('a replica on another node is always SNATed to this node\'s own address; a local one only for hairpin clients', () => {
    const d = desiredLb(4, [web([local.ipv4, remote.ipv4], { remote: [remote.ipv4] })], ['10.100.0.0/16'], [snat]);
    expect(d.chains.get(endpointChain(web([]), remote.ipv4))![0]!.expr).toBe('meta mark set meta mark or 0x00080000');
    expect(d.chains.get(endpointChain(web([]), local.ipv4))![0]!.expr).toBe('ip saddr @lb-masq-src meta mark set meta mark or 0x00080000');
    expect(d.chains.get('lb-snat')!.map((r) => r.expr)).toEqual(['oifname "vb-001000-abcde" snat ip to 10.100.0.66']);
    const first = diffLb(undefined, d).render();
    // The overlay's SNAT runs before the generic masquerade (both in the marked branch).
    expect(first.indexOf('jump lb-snat')).toBeLessThan(first.indexOf('add rule ip shoal-lb masquerading masquerade'));
  });

  it('remote replicas are balanced only where this node has its own address; mode=host takes local replicas only', () => {
    const rec = record({ ports: [{ published: 18380, target: 80, protocol: 'tcp', mode: 'ingress' }, { published: 18381, target: 81, protocol: 'tcp', mode: 'host' }] });
    const without = kernelPorts(4, [{ record: rec, network: undefined, healthy: [local, remote] }]);
    expect(without.map((p) => p.backends)).toEqual([[local.ipv4], [local.ipv4]]);
    const withSnat = kernelPorts(4, [{ record: rec, network: undefined, healthy: [local, remote], snat: { 4: snat } }]);
    expect(withSnat.map((p) => [p.published, p.backends, p.remote])).toEqual([
      [18380, [local.ipv4, remote.ipv4], [remote.ipv4]],
      [18381, [local.ipv4], undefined],
    ]);
    // No local replica: a mode=host port is not published on this node at all.
    const onlyRemote = kernelPorts(4, [{ record: rec, network: undefined, healthy: [remote], snat: { 4: snat } }]);
    expect(onlyRemote.map((p) => p.published)).toEqual([18380, undefined]);
  });

  it('IPv6: remote replicas are balanced with this node\'s own IPv6 address as the source, and only with one', () => {
    const remote6 = { ...remote, ipv6: 'fd00:100::70' };
    const local6 = { ...local, ipv6: 'fd00:100::5' };
    const snat6 = { bridge: snat.bridge, address: 'fd00:100::66' };
    const rec = record({ ports: [{ published: 18380, target: 80, protocol: 'tcp', mode: 'ingress' }] });
    const v4Only = kernelPorts(6, [{ record: rec, network: undefined, healthy: [local6, remote6], snat: { 4: snat } }]);
    expect(v4Only.map((p) => p.backends)).toEqual([[local6.ipv6]]);
    const both = kernelPorts(6, [{ record: rec, network: undefined, healthy: [local6, remote6], snat: { 4: snat, 6: snat6 } }]);
    expect(both.map((p) => [p.backends, p.remote])).toEqual([[[local6.ipv6, remote6.ipv6], [remote6.ipv6]]]);
    const d = desiredLb(6, both, ['fd00:100::/64'], [snat6]);
    expect(d.chains.get('lb-snat')!.map((r) => r.expr)).toEqual(['oifname "vb-001000-abcde" snat ip6 to fd00:100::66']);
  });
});

describe('service DNS records', () => {
  const contents: RegistryContents = {
    networks: [{ name: 'net', subnets: ['10.183.0.0/24'] }],
    endpoints: [
      { network: 'net', containerId: 'a', ifname: 'eth0', name: 'a', aliases: ['web'], ipv4: ['10.183.0.2/24'] },
      { network: 'net', containerId: 'b', ifname: 'eth0', name: 'b', aliases: ['WEB', 'other'], ipv4: ['10.183.0.3/24'] },
      { network: 'net', containerId: 'c', ifname: 'eth0', name: 'c', aliases: ['x'], ipv4: ['10.183.0.4/24'] },
    ],
  };
  const healthy = [{ id: 'a/eth0', containerId: 'a', name: 'a', node: 'local', local: true, ipv4: '10.183.0.2' }];

  it('vip: the name answers the VIP; tasks.NAME the healthy replicas; replicas lose the alias', () => {
    const out = withServiceRecords(contents, [{ record: record(), healthy }]);
    const byName = new Map(out.endpoints.map((e) => [e.name, e]));
    expect(byName.get('web')!.ipv4).toEqual(['10.183.0.200']);
    expect(byName.get('tasks.web')!.ipv4).toEqual(['10.183.0.2']);
    expect(byName.get('b')!.aliases).toEqual(['other']);
    expect(byName.get('c')!.aliases).toEqual(['x']);
  });

  it('dnsrr: the name answers the healthy replicas only', () => {
    const out = withServiceRecords(contents, [{ record: record({ endpointMode: 'dnsrr', vips: [] }), healthy }]);
    expect(out.endpoints.find((e) => e.name === 'web')!.ipv4).toEqual(['10.183.0.2']);
  });
});

describe('service SRV table', () => {
  it('answers _NAME._proto under the bare name, the network and the domain', () => {
    const t = buildSrvTable([record()], [{ name: 'net', domain: 'dns.shoal' }]);
    const names = t.get('net')!;
    expect([...names.keys()].sort()).toEqual(['_web._tcp', '_web._tcp.dns.shoal', '_web._tcp.net', '_web._udp', '_web._udp.dns.shoal', '_web._udp.net']);
    expect(names.get('_web._tcp')).toEqual([{ port: 80, target: 'web.dns.shoal' }]);
    expect(names.get('_web._udp.net')).toEqual([{ port: 53, target: 'web.dns.shoal' }]);
    expect(buildSrvTable([record()], []).size).toBe(0);
  });
});
