import { describe, expect, it } from 'vitest';
import * as v from 'valibot';
import { cidr, interfaceName, ipAddr, parseConfig, parseNetConf, pluginConfig, portMappingSchema, subnet } from '../../cni/config.js';
import { CniError } from '../../cni/errors.js';

function message(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CniError);
    expect((err as CniError).cniCode).toBe(7);
    return (err as Error).message;
  }
  throw new Error('expected a code-7 error');
}

const base = { cniVersion: '1.0.0', name: 'net1', type: 'shoal-bridge' };

describe('base network config', () => {
  it('accepts the spec example and keeps unknown fields', () => {
    const conf = parseNetConf({
      ...base,
      bridge: 'cni0',
      ipam: { type: 'host-local', subnet: '10.1.0.0/16', gateway: '10.1.0.1' },
      dns: { nameservers: ['10.1.0.1'] },
      args: { labels: { appVersion: '1.0' } },
    });
    expect((conf as Record<string, unknown>).bridge).toBe('cni0');
    expect((conf.ipam as Record<string, unknown>).subnet).toBe('10.1.0.0/16');
  });
  it('names a missing field', () => {
    expect(message(() => parseNetConf({ cniVersion: '1.0.0', type: 'x' }))).toBe('invalid network config: field "name" is required');
  });
  it('names a wrong type with its value', () => {
    expect(message(() => parseNetConf({ ...base, type: 7 }))).toBe('invalid network config: field "type": 7 must be a string');
  });
  it('names a bad nameserver by index', () => {
    expect(message(() => parseNetConf({ ...base, dns: { nameservers: ['10.0.0.1', 'dns.example'] } }))).toBe(
      'invalid network config: field "dns.nameservers[1]": "dns.example" is not an IP address: it is neither an IPv4 address (like 10.1.2.3) nor an IPv6 address (like fd00::1)',
    );
  });
  it('rejects an empty ipam.type', () => {
    expect(message(() => parseNetConf({ ...base, ipam: { type: '' } }))).toContain('field "ipam.type": "" must not be empty');
  });
  it('checks logLevel', () => {
    expect(message(() => parseNetConf({ ...base, logLevel: 'loud' }))).toContain('field "logLevel": "loud" must be one of');
  });
  it('counts further problems and lists them in details', () => {
    try {
      parseNetConf({ cniVersion: '1.0.0', name: '-x', type: '', capabilities: { portMappings: 'yes' } });
    } catch (err) {
      expect((err as Error).message).toMatch(/\(and 2 more problems\)$/);
      expect((err as CniError).details).toContain('field "capabilities.portMappings": "yes" must be true or false');
      return;
    }
    throw new Error('expected an error');
  });
});

describe('plugin config schemas', () => {
  const ipamSchema = pluginConfig({
    ipam: v.looseObject({
      type: v.string(),
      ranges: v.array(v.array(v.looseObject({ subnet, gateway: v.optional(v.string()) }))),
    }),
    bridge: v.optional(interfaceName),
    portMappings: v.optional(v.array(portMappingSchema)),
  });
  it('names a nested path and the value: host bits set', () => {
    const conf = { ...base, ipam: { type: 'shoal-ipam', ranges: [[{ subnet: '10.0.0.1/24' }]] } };
    expect(message(() => parseConfig(ipamSchema, conf))).toBe(
      'invalid network config: field "ipam.ranges[0][0].subnet": "10.0.0.1/24" has host bits set (the network is 10.0.0.0/24)',
    );
  });
  it('accepts a proper subnet, v4 and v6', () => {
    const conf = { ...base, ipam: { type: 'shoal-ipam', ranges: [[{ subnet: '10.0.0.0/24' }, { subnet: 'fd00:1::/64' }]] } };
    const ranges = parseConfig(ipamSchema, conf).ipam.ranges[0]!;
    expect(ranges.map((r) => r.subnet.toString())).toEqual(['10.0.0.0/24', 'fd00:1::/64']);
  });
  it('names a bad interface name', () => {
    expect(message(() => parseConfig(ipamSchema, { ...base, ipam: { type: 'x', ranges: [] }, bridge: 'a-very-long-bridge-name' }))).toBe(
      'invalid network config: field "bridge": "a-very-long-bridge-name" is not a valid interface name (it is longer than 15 bytes)',
    );
  });
  it('names a bad port', () => {
    const conf = { ...base, ipam: { type: 'x', ranges: [] }, portMappings: [{ hostPort: 8080, containerPort: 70000 }] };
    expect(message(() => parseConfig(ipamSchema, conf))).toBe('invalid network config: field "portMappings[0].containerPort": 70000 must be 1-65535');
  });
  it('prefixes paths with "where" when validating a sub-object', () => {
    expect(message(() => parseConfig(v.looseObject({ subnet }), { subnet: 'nope' }, 'ipam'))).toBe(
      'invalid network config: field "ipam.subnet": "nope" is not in CIDR notation (like "10.1.0.0/24"): it is neither an IPv4 address (like 10.1.2.3) nor an IPv6 address (like fd00::1)',
    );
  });
  it('quotes keys that are not identifiers', () => {
    const schema = v.looseObject({ runtimeConfig: v.record(v.string(), v.number()) });
    expect(message(() => parseConfig(schema, { runtimeConfig: { 'cni.dev/x': 'a' } }))).toContain('field "runtimeConfig["cni.dev/x"]": "a" must be a number');
  });
});

describe('address fields parse into values', () => {
  const parse = <S extends v.GenericSchema>(schema: S, value: unknown) => parseConfig(v.looseObject({ f: schema }), { f: value }).f as v.InferOutput<S>;
  it.each([
    ['10.0.0.0/8', true],
    ['10.0.0.1/8', false],
    ['0.0.0.0/0', true],
    ['192.168.1.255/32', true],
    ['fd00::/8', true],
    ['fd00::1/64', false],
    ['::ffff:10.0.0.0/120', true],
    ['::ffff:10.0.0.1/120', false],
  ])('%s is a subnet: %s', (text, isSubnet) => {
    expect(parse(cidr, text).toString()).toBe(text);
    if (isSubnet) expect(parse(subnet, text).toString()).toBe(text);
    else expect(() => parse(subnet, text)).toThrow(/has host bits set/);
  });
  it.each([
    ['10.0.0.0', 'it has no prefix length'],
    ['10.0.0.0/33', 'prefix length 33 is more than 32'],
    ['fd00::/129', 'prefix length 129 is more than 128'],
    ['x/8', 'neither an IPv4'],
    ['10.0.0.0/-1', 'prefix length "-1" is not a number'],
    ['10.0.0.0/8/8', 'more than one "/"'],
  ])('rejects %s, naming the problem', (text, problem) => {
    expect(() => parse(cidr, text)).toThrow(problem);
  });
  it('addresses: values out, the problem in the message; portMappings hostIP "" means none', () => {
    expect(parse(ipAddr, 'FD00:0::1').toString()).toBe('fd00::1');
    expect(() => parse(ipAddr, '10.0.0.256')).toThrow('field "f": "10.0.0.256" is not an IP address: part 256 is more than 255');
    expect(parse(portMappingSchema, { hostPort: 1, containerPort: 1, hostIP: '' }).hostIP).toBeUndefined();
    expect(parse(portMappingSchema, { hostPort: 1, containerPort: 1, hostIP: '::1' }).hostIP?.toString()).toBe('::1');
    expect(() => parse(portMappingSchema, { hostPort: 1, containerPort: 1, hostIP: '1.2.3' })).toThrow('field "f.hostIP": "1.2.3" is not an IP address: an IPv4 address has 4 parts');
  });
});
