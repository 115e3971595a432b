import { describe, expect, it } from 'vitest';
import { parseIpamConfig } from '../../src/ipam/config.js';
import { InvalidIpamConfigError } from '../../src/ipam/errors.js';
import { requestedAddresses } from '../../src/ipam/requested.js';
import { parseResolvConf } from '../../src/ipam/resolv.js';

function failure(ipam: unknown, runtimeConfig?: unknown): InvalidIpamConfigError {
  try {
    parseIpamConfig(ipam, runtimeConfig);
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidIpamConfigError);
    return err as InvalidIpamConfigError;
  }
  throw new Error('expected the config to be rejected');
}

const range = (r: Record<string, unknown>) => ({ ranges: [[r]] });

describe('ipam config validation', () => {
  it.each([
    [range({ subnet: '10.88.0.5/16' }), 'ipam.ranges[0][0].subnet', '= "10.88.0.5/16": has host bits set; the network is 10.88.0.0/16'],
    [range({ subnet: '10.0.0.0/31' }), 'ipam.ranges[0][0].subnet', 'a /31 is too small'],
    [range({ subnet: '10.0.0.1/32' }), 'ipam.ranges[0][0].subnet', 'a /32 is too small'],
    [range({ subnet: 'fd00::/127' }), 'ipam.ranges[0][0].subnet', 'a /127 is too small'],
    [range({ subnet: 'banana' }), 'ipam.ranges[0][0].subnet', 'is not a CIDR'],
    [range({}), 'ipam.ranges[0][0].subnet', 'is required'],
    [range({ subnet: '10.0.0.0/24', rangeStart: '10.0.1.5' }), 'ipam.ranges[0][0].rangeStart', '= "10.0.1.5": is outside subnet 10.0.0.0/24'],
    [range({ subnet: '10.0.0.0/24', rangeEnd: '10.0.0.255' }), 'ipam.ranges[0][0].rangeEnd', 'is the broadcast address'],
    [range({ subnet: '10.0.0.0/24', rangeStart: '10.0.0.0' }), 'ipam.ranges[0][0].rangeStart', 'is the network address'],
    [range({ subnet: '10.0.0.0/24', gateway: '10.0.2.1' }), 'ipam.ranges[0][0].gateway', '= "10.0.2.1": is outside subnet 10.0.0.0/24'],
    [range({ subnet: '10.0.0.0/24', gateway: 'fd00::1' }), 'ipam.ranges[0][0].gateway', 'is IPv6 but subnet 10.0.0.0/24 is IPv4'],
    [range({ subnet: '10.0.0.0/24', rangeStart: '10.0.0.50', rangeEnd: '10.0.0.40' }), 'ipam.ranges[0][0].rangeStart', '= "10.0.0.50": is after rangeEnd 10.0.0.40'],
    [range({ subnet: '10.0.0.0/24', rangeStart: 'x' }), 'ipam.ranges[0][0].rangeStart', 'is not an IP address'],
    [{ ranges: [] }, 'ipam.ranges', 'non-empty list of range sets'],
    [{ ranges: [[]] }, 'ipam.ranges[0]', 'non-empty list of ranges'],
    [{}, 'ipam.ranges', 'is required'],
    [{ subnet: '10.0.0.0/33' }, 'ipam.subnet', 'is not a CIDR'],
    [{ subnet: '10.0.0.0/24', rangeStart: '10.9.0.1' }, 'ipam.rangeStart', 'is outside subnet'],
    [
      { ranges: [[{ subnet: '10.0.0.0/24' }, { subnet: '10.0.0.0/25' }]] },
      'ipam.ranges[0][1]',
      'overlaps ipam.ranges[0][0] (10.0.0.0/24 10.0.0.1-10.0.0.254)',
    ],
    [
      { ranges: [[{ subnet: '10.0.0.0/24' }], [{ subnet: '10.0.0.0/16', rangeStart: '10.0.0.200', rangeEnd: '10.0.1.5' }]] },
      'ipam.ranges[1][0]',
      'overlaps ipam.ranges[0][0]',
    ],
    [{ ranges: [[{ subnet: '10.0.0.0/24' }, { subnet: 'fd00::/64' }]] }, 'ipam.ranges[0][1].subnet', 'is IPv6 but range set 0 is IPv4'],
    [{ ...range({ subnet: '10.0.0.0/24' }), routes: [{ dst: '0.0.0.0' }] }, 'ipam.routes[0].dst', 'is not a CIDR'],
    [{ ...range({ subnet: '10.0.0.0/24' }), routes: [{ dst: '0.0.0.0/0', gw: 'fd00::1' }] }, 'ipam.routes[0].gw', 'is IPv6 but dst 0.0.0.0/0 is IPv4'],
    [{ ...range({ subnet: '10.0.0.0/24' }), exclude: ['10.0.0.0/40'] }, 'ipam.exclude[0]', 'neither an IP address nor a CIDR'],
    [{ ...range({ subnet: '10.0.0.0/24' }), resolvConf: 5 }, 'ipam.resolvConf', 'must be a non-empty string'],
  ])('rejects %j naming %s', (ipam, field, message) => {
    const err = failure(ipam);
    expect(err.field).toBe(field);
    expect(err.code).toBe('EINVALIDCONFIG');
    expect(err.message).toContain(`invalid network config: field "${field}"`);
    expect(err.message).toContain(message);
  });

  it('ranges in different subnets of one set are fine when their start-end do not overlap', () => {
    const config = parseIpamConfig({
      ranges: [[{ subnet: '10.0.0.0/24', rangeStart: '10.0.0.10', rangeEnd: '10.0.0.20' }, { subnet: '10.0.0.0/24', rangeStart: '10.0.0.30', rangeEnd: '10.0.0.40' }]],
    });
    expect(config.rangeSets[0]).toHaveLength(2);
  });

  it('fills in host-local defaults', () => {
    const config = parseIpamConfig(range({ subnet: '10.0.0.0/24' }));
    const r = config.rangeSets[0]![0]!;
    expect([r.start.value, r.end.value, r.gateway.value]).toEqual([0x0a000001n, 0x0a0000fen, 0x0a000001n]);
    const v6 = parseIpamConfig(range({ subnet: 'fd00::/120' })).rangeSets[0]![0]!;
    expect([v6.start.value, v6.end.value]).toEqual([0xfd000000000000000000000000000001n, 0xfd0000000000000000000000000000ffn]);
  });

  it('accepts the legacy top-level form as the first range set, with state dir and routes', () => {
    const config = parseIpamConfig({
      type: 'shoal-ipam',
      subnet: '10.1.0.0/24',
      ranges: [[{ subnet: 'fd00::/64' }]],
      dataDir: '/tmp/x',
      routes: [{ dst: '0.0.0.0/0' }, { dst: '192.168.0.0/16', gw: '10.1.0.5' }],
    });
    expect(config.rangeSets.map((set) => set[0]!.family)).toEqual([4, 6]);
    expect(config.stateDir).toBe('/tmp/x');
    expect(config.routes).toEqual([{ dst: '0.0.0.0/0' }, { dst: '192.168.0.0/16', gw: '10.1.0.5' }]);
  });

  it('runtimeConfig.ipRanges replaces the configured ranges and is validated under its own name', () => {
    const config = parseIpamConfig(range({ subnet: '10.0.0.0/24' }), { ipRanges: [[{ subnet: '10.5.0.0/24' }]] });
    expect(config.rangeSets[0]![0]!.subnet.toString()).toBe('10.5.0.0/24');
    expect(failure(range({ subnet: '10.0.0.0/24' }), { ipRanges: [[{ subnet: '10.5.0.1/24' }]] }).field).toBe('runtimeConfig.ipRanges[0][0].subnet');
  });
});

describe('requested addresses', () => {
  it('collects runtimeConfig.ips, args.cni.ips and CNI_ARGS IP in that order, without duplicates', () => {
    const found = requestedAddresses(
      { ips: ['10.0.0.5/24'] },
      { cni: { ips: ['10.0.0.6', '10.0.0.5'] } },
      'IgnoreUnknown=1;IP=10.0.0.7,fd00::7;K8S_POD_NAME=x',
    );
    expect(found.map((r) => [r.text, r.field])).toEqual([
      ['10.0.0.5', 'runtimeConfig.ips[0]'],
      ['10.0.0.6', 'args.cni.ips[0]'],
      ['10.0.0.7', 'CNI_ARGS IP'],
      ['fd00::7', 'CNI_ARGS IP'],
    ]);
    expect(requestedAddresses(undefined, undefined, { IP: '10.0.0.9' }).map((r) => r.text)).toEqual(['10.0.0.9']);
  });

  it('rejects a malformed address naming where it came from', () => {
    expect(() => requestedAddresses({ ips: ['10.0.0.500'] }, undefined, undefined)).toThrow('field "runtimeConfig.ips[0]" = "10.0.0.500": is not an IP address');
    expect(() => requestedAddresses(undefined, undefined, 'IP=nope')).toThrow('field "CNI_ARGS IP" = "nope"');
  });
});

describe('resolv.conf', () => {
  it('reads nameserver, domain, search and options, ignoring comments', () => {
    expect(parseResolvConf('# c\nnameserver 10.0.0.1\nnameserver fd00::1 ; x\ndomain example.org\nsearch a.b c.d\noptions ndots:2 edns0\n')).toEqual({
      nameservers: ['10.0.0.1', 'fd00::1'],
      domain: 'example.org',
      search: ['a.b', 'c.d'],
      options: ['ndots:2', 'edns0'],
    });
  });
});
