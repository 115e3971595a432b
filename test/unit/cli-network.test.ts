import { describe, expect, it } from 'vitest';
import { buildSubnetSpecs, defaultGateway, firstOverlap, pickFreeSubnet, rangeBounds, SubnetInputError } from '../../src/network/subnet.js';
import { renderConflist, validateOptions, OptionError } from '../../src/network/conflist.js';
import { bridgeNameFor, type NetworkRecord } from '../../src/network/model.js';
import { networkRecord } from '../helpers/network-record.js';
import { pluginConfig } from '../../src/network/chain.js';

function record(over: Partial<NetworkRecord> = {}): NetworkRecord {
  return networkRecord(over);
}

describe('subnets', () => {
  it('canonicalises subnets and pairs gateways and ranges with their subnet', () => {
    const specs = buildSubnetSpecs(['10.250.1.7/24', 'fd00:1::/64'], ['fd00:1::fe', '10.250.1.254'], ['10.250.1.128/25']);
    expect(specs).toEqual([
      { subnet: '10.250.1.0/24', gateway: '10.250.1.254', ipRange: '10.250.1.128/25' },
      { subnet: 'fd00:1::/64', gateway: 'fd00:1::fe' },
    ]);
  });

  it('refuses bad input with one-line messages', () => {
    expect(() => buildSubnetSpecs(['10.250.1.0'], [], [])).toThrow(/invalid --subnet "10.250.1.0": not a CIDR/);
    expect(() => buildSubnetSpecs(['10.250.1.0/24', '10.250.1.128/25'], [], [])).toThrow(/overlaps/);
    expect(() => buildSubnetSpecs(['10.250.1.0/24'], ['10.250.2.1'], [])).toThrow(/not a host address of any --subnet/);
    expect(() => buildSubnetSpecs(['10.250.1.0/24'], ['10.250.1.0'], [])).toThrow(SubnetInputError);
    expect(() => buildSubnetSpecs(['10.250.1.0/24'], [], ['10.250.2.0/25'])).toThrow(/not inside any --subnet/);
    expect(() => buildSubnetSpecs(['10.0.0.0/31'], [], [])).toThrow(/too small/);
  });

  it('finds overlaps with networks and host routes, ignoring default routes', () => {
    const taken = [
      { cidr: '0.0.0.0/0', what: 'default' },
      { cidr: '10.89.0.0/16', what: 'host route 10.89.0.0/16' },
    ];
    expect(firstOverlap('10.89.3.0/24', taken)).toBe('host route 10.89.0.0/16');
    expect(firstOverlap('10.90.3.0/24', taken)).toBeUndefined();
  });

  it('picks the first free private subnet', () => {
    expect(pickFreeSubnet(4, [])).toBe('10.89.0.0/24');
    expect(pickFreeSubnet(4, [{ cidr: '10.89.0.0/24', what: 'a' }, { cidr: '10.89.1.5/32', what: 'b' }])).toBe('10.89.2.0/24');
    expect(pickFreeSubnet(6, [])).toBe('fd89:5348:4f41:0::/64');
  });

  it('derives gateways and host-local range bounds', () => {
    expect(defaultGateway('10.250.1.0/24')).toBe('10.250.1.1');
    expect(rangeBounds('10.250.1.128/25')).toEqual({ rangeStart: '10.250.1.129', rangeEnd: '10.250.1.254' });
  });
});

describe('conflist', () => {
  it('renders a bridge network as ONE plugin: shoal-bridge with ipam, portmap and dns in-process', () => {
    const c = renderConflist(record({ hosts: [{ name: 'db', ip: '192.0.2.9' }], dns: ['192.0.2.53'], dnsSearch: ['corp.example'] }));
    expect(c.cniVersion).toBe('1.0.0');
    // One entry of `plugins` is one Node start-up per ADD and per DEL (issue 7).
    expect(c.plugins.map((p) => p['type'])).toEqual(['shoal-bridge']);
    const bridge = c.plugins[0]!;
    expect(bridge).toMatchObject({ bridge: 'shoal-n1', isGateway: true, ipMasq: true, hairpinMode: true, isolate: true, stateDir: '/var/lib/shoal' });
    // libcni passes runtimeConfig only for declared capabilities: the bridge needs both.
    expect(bridge['capabilities']).toEqual({ portMappings: true, aliases: true });
    expect(bridge['ipam']).toEqual({ type: 'shoal-ipam', ranges: [[{ subnet: '10.250.1.0/24', gateway: '10.250.1.1' }]], routes: [{ dst: '0.0.0.0/0' }], stateDir: '/var/lib/shoal' });
    expect(bridge['portmap']).toEqual({ snat: true });
    expect(bridge['discovery']).toEqual({ domainName: 'corp.example', hosts: { db: ['192.0.2.9'] }, upstreams: ['192.0.2.53'] });
    // `dns` is the standard NetConf key for the result's DNS: the embedded sections never use it.
    expect(bridge['dns']).toBeUndefined();
    expect(renderConflist(record()).plugins[0]!['discovery']).toEqual({});
  });

  it('macvlan/ipvlan networks keep the chain main -> shoal-portmap -> shoal-dns (dns only with a gateway)', () => {
    const mv = renderConflist(record({ driver: 'macvlan', subnets: [{ subnet: '10.250.2.0/24', gateway: '10.250.2.1' }] }));
    expect(mv.plugins.map((p) => p['type'])).toEqual(['shoal-macvlan', 'shoal-portmap', 'shoal-dns']);
    const [main, portmap, dns] = mv.plugins as [Record<string, unknown>, Record<string, unknown>, Record<string, unknown>];
    expect(main['capabilities']).toBeUndefined();
    expect(portmap).toEqual({ type: 'shoal-portmap', capabilities: { portMappings: true }, snat: true, stateDir: '/var/lib/shoal' });
    expect(dns).toEqual({ type: 'shoal-dns', capabilities: { aliases: true }, stateDir: '/var/lib/shoal' });
    const noGw = renderConflist(record({ driver: 'ipvlan', subnets: [{ subnet: '10.250.3.0/24' }] }));
    expect(noGw.plugins.map((p) => p['type'])).toEqual(['shoal-ipvlan', 'shoal-portmap']);
  });

  it('internal networks get no masquerade and no default route', () => {
    const c = renderConflist(record({ internal: true }));
    const bridge = c.plugins[0]!;
    expect(bridge).toMatchObject({ internal: true, ipMasq: false });
    expect((bridge['ipam'] as Record<string, unknown>)['routes']).toBeUndefined();
  });

  it('passes driver options through and validates them', () => {
    const c = renderConflist(record({ options: { mtu: '1400', isolate: 'strict' } }));
    expect(c.plugins[0]).toMatchObject({ mtu: 1400, isolate: 'strict' });
    expect(() => validateOptions('bridge', { mtu: '10' })).toThrow(OptionError);
    expect(() => validateOptions('bridge', { colour: 'blue' })).toThrow(/unknown --opt "colour"/);
    expect(() => validateOptions('macvlan', { mode: 'l3' })).toThrow(/invalid --opt mode/);
    const mv = renderConflist(record({ driver: 'macvlan', options: { parent: 'veth0', mode: 'private' }, subnets: [{ subnet: '10.250.2.0/24', gateway: '10.250.2.1' }] }));
    expect(mv.plugins[0]).toMatchObject({ type: 'shoal-macvlan', master: 'veth0', mode: 'private' });
  });

  it('names bridges within 15 bytes', () => {
    expect(bridgeNameFor('web')).toBe('shoal-web');
    expect(bridgeNameFor('a-very-long-network-name')).toMatch(/^shoal-[0-9a-f]{9}$/);
  });

  it('gives each plugin only the runtimeConfig of its capabilities, as libcni does', () => {
    const att = { containerId: 'c', netns: '/run/netns/x', ifname: 'eth0', capabilityArgs: { portMappings: [{ hostPort: 1, containerPort: 2, protocol: 'tcp' }], aliases: { n1: ['a'] }, mac: '02:00:00:00:00:01' } };
    // The one-plugin bridge form gets both (and not `mac`, which it does not declare).
    expect(pluginConfig(renderConflist(record()), 0, att)['runtimeConfig']).toEqual({ portMappings: att.capabilityArgs.portMappings, aliases: { n1: ['a'] } });
    const c = renderConflist(record({ driver: 'macvlan', subnets: [{ subnet: '10.250.2.0/24', gateway: '10.250.2.1' }] }));
    expect(pluginConfig(c, 0, att)['runtimeConfig']).toBeUndefined();
    expect(pluginConfig(c, 1, att, { cniVersion: '1.0.0' })).toMatchObject({ name: 'n1', cniVersion: '1.0.0', runtimeConfig: { portMappings: att.capabilityArgs.portMappings }, prevResult: { cniVersion: '1.0.0' } });
    expect(pluginConfig(c, 2, att)['runtimeConfig']).toEqual({ aliases: { n1: ['a'] } });
  });
});
