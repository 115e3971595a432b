import { describe, expect, it } from 'vitest';
import { IpAddr } from '../../src/addr.js';
import { formatMappings, findRecords } from '../../src/cli/port.js';
import { decodeConntrack, deleteAttrs, matchesFilter, nfgenmsg } from '../../src/kernel/conntrack.js';
import { encodeAttrs } from '../../src/kernel/netlink/codec.js';
import { buildPlan, containerAddresses, dnatEntries, networkOwnerPrefixes, normaliseMappings, parseOwner } from '../../src/portmap/config.js';
import type { PortmapRecord } from '../../src/portmap/state.js';

const prev = {
  interfaces: [{ name: 'br0' }, { name: 'veth1' }, { name: 'eth0', sandbox: '/run/netns/c' }],
  ips: [
    { address: '10.9.9.9/16', interface: 0 },
    { address: '10.1.0.5/24', interface: 2 },
    { address: 'fd00:1::5/64', interface: 2 },
  ],
};

describe('portmap config', () => {
  it('prefers sandbox addresses and derives each family\'s subnet', () => {
    expect(containerAddresses(prev).map((a) => ({ family: a.family, ip: a.ip.toString(), subnet: a.subnet.toString() }))).toEqual([
      { family: 4, ip: '10.1.0.5', subnet: '10.1.0.0/24' },
      { family: 6, ip: 'fd00:1::5', subnet: 'fd00:1::/64' },
    ]);
  });

  it('publishes hostIP "" on both families, 0.0.0.0 and :: on one, an address on its family only', () => {
    const addrs = containerAddresses(prev);
    const m = normaliseMappings([
      { hostPort: 1, containerPort: 1 },
      { hostPort: 2, containerPort: 2, hostIP: IpAddr.parse('0.0.0.0') },
      { hostPort: 3, containerPort: 3, hostIP: IpAddr.parse('::') },
      { hostPort: 4, containerPort: 4, hostIP: IpAddr.parse('127.0.0.1'), protocol: 'sctp' },
    ]);
    expect(dnatEntries(m, addrs).map((e) => `${e.family} ${e.hostIP ?? '*'} ${e.hostPort}/${e.protocol}`)).toEqual([
      '4 * 1/tcp',
      '6 * 1/tcp',
      '4 * 2/tcp',
      '6 * 3/tcp',
      '4 127.0.0.1 4/sctp',
    ]);
  });

  it('skips a family the container does not have', () => {
    const v4only = containerAddresses({ ips: [{ address: '10.1.0.5/24' }] });
    expect(dnatEntries(normaliseMappings([{ hostPort: 1, containerPort: 1, hostIP: IpAddr.parse('::1') }]), v4only)).toEqual([]);
  });

  it('refuses the same host port twice with different targets, folds exact duplicates', () => {
    expect(() => normaliseMappings([{ hostPort: 1, containerPort: 1 }, { hostPort: 1, containerPort: 2 }])).toThrow(/portMappings\[1\].*published twice/);
    expect(normaliseMappings([{ hostPort: 1, containerPort: 1 }, { hostPort: 1, containerPort: 1, protocol: 'tcp' }])).toHaveLength(1);
  });

  it('validates the config with code-7 messages and applies defaults', () => {
    const base = { cniVersion: '1.0.0', name: 'n', type: 'shoal-portmap' };
    const plan = buildPlan({ ...base, runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80 }] } }, 'cid', 'eth0', prev);
    expect(plan.snat).toBe(true);
    expect(plan.masqAll).toBe(false);
    expect(() => buildPlan({ ...base, runtimeConfig: { portMappings: [{ hostPort: 70000, containerPort: 80 }] } }, 'cid', 'eth0', prev)).toThrow(
      /field "runtimeConfig.portMappings\[0\].hostPort": 70000 must be 1-65535/,
    );
    expect(() => buildPlan({ ...base, snat: 'yes' }, 'cid', 'eth0', prev)).toThrow(/field "snat"/);
  });

  it('parses owners and matches network prefixes', () => {
    expect(parseOwner('portmap/net1/abc/eth0')).toEqual({ networkTag: 'net1', containerId: 'abc', ifname: 'eth0' });
    expect(parseOwner('net1/abc/eth0')).toBeUndefined();
    expect(networkOwnerPrefixes('net1')[0]).toBe('portmap/net1/');
  });
});

describe('shoal port formatting', () => {
  const rec: PortmapRecord = {
    network: 'n', containerId: 'abcdef0123456789', ifname: 'eth0', name: 'web', netns: '/run/netns/web', owner: 'portmap/n/abcdef0123456789/eth0',
    mappings: [
      { hostPort: 5353, containerPort: 53, protocol: 'udp', hostIP: '' },
      { hostPort: 8080, containerPort: 80, protocol: 'tcp', hostIP: '127.0.0.1' },
    ],
    containerIPs: ['10.1.0.5', 'fd00::5'], created: '',
  };

  it('prints docker port lines, both families for "any address"', () => {
    expect(formatMappings([rec])).toEqual(['53/udp -> 0.0.0.0:5353', '53/udp -> [::]:5353', '80/tcp -> 127.0.0.1:8080']);
    expect(formatMappings([rec], '80')).toEqual(['127.0.0.1:8080']);
    expect(formatMappings([rec], '53/udp')).toEqual(['0.0.0.0:5353', '[::]:5353']);
  });

  it('finds a container by id, unique id prefix, name or netns', () => {
    for (const q of ['abcdef0123456789', 'abcd', 'web', '/run/netns/web']) expect(findRecords([rec], q)).toEqual([rec]);
    expect(findRecords([rec], 'ab')).toEqual([]);
    expect(findRecords([rec], 'zzz')).toEqual([]);
  });
});

describe('conntrack messages', () => {
  it('encodes a delete by original tuple and decodes a dumped entry', () => {
    const entry = { family: 4 as const, orig: { src: '10.0.0.2', dst: '10.0.0.1', proto: 17, srcPort: 40000, dstPort: 8080 }, zone: 0 };
    const payload = Buffer.concat([nfgenmsg(4), encodeAttrs(deleteAttrs(entry))]);
    expect(decodeConntrack(payload)).toEqual(entry);
    expect(matchesFilter(entry, { family: 4, proto: 17, origDstPort: 8080 })).toBe(true);
    expect(matchesFilter(entry, { family: 4, proto: 17, origDstPort: 8080, origDst: '10.0.0.9' })).toBe(false);
    expect(matchesFilter(entry, { family: 4, proto: 6, origDstPort: 8080 })).toBe(false);
  });

  it('round-trips an IPv6 entry in a zone', () => {
    const entry = { family: 6 as const, orig: { src: 'fd00::2', dst: 'fd00::1', proto: 17, srcPort: 1, dstPort: 2 }, zone: 7 };
    expect(decodeConntrack(Buffer.concat([nfgenmsg(6), encodeAttrs(deleteAttrs(entry))]))).toEqual(entry);
  });
});
