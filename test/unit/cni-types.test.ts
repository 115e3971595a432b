import { describe, expect, it } from 'vitest';
import { formatResult, parseResult, type CniResult } from '../../cni/types.js';
import { CniError } from '../../cni/errors.js';

const V040 = {
  cniVersion: '0.4.0',
  interfaces: [{ name: 'eth0', mac: '02:00:00:00:00:02', sandbox: '/var/run/netns/blue' }],
  ips: [
    { version: '4', address: '10.0.0.5/24', gateway: '10.0.0.1', interface: 0 },
    { version: '6', address: 'fd00::5/64', interface: 0 },
  ],
  routes: [{ dst: '0.0.0.0/0', gw: '10.0.0.1' }],
  dns: { nameservers: ['10.0.0.1'], domain: 'example', search: ['a.example'], options: ['ndots:2'] },
};

const V110 = {
  cniVersion: '1.1.0',
  interfaces: [{ name: 'eth0', mac: '02:00:00:00:00:02', mtu: 9000, sandbox: '/var/run/netns/blue', socketPath: '/s', pciID: '0000:01:00.0' }],
  ips: [{ interface: 0, address: '10.0.0.5/24', gateway: '10.0.0.1' }],
  routes: [{ dst: '10.2.0.0/16', gw: '10.0.0.254', mtu: 1400, advmss: 1360, priority: 5, table: 200, scope: 253 }],
};

describe('result conversion', () => {
  it('0.4.0 -> internal drops ips[].version', () => {
    const r = parseResult(V040, '0.4.0');
    expect(r.ips).toEqual([
      { address: '10.0.0.5/24', gateway: '10.0.0.1', interface: 0 },
      { address: 'fd00::5/64', interface: 0 },
    ]);
    expect(r.dns).toEqual(V040.dns);
  });

  it('0.4.0 round-trips unchanged through the internal shape', () => {
    expect(formatResult(parseResult(V040, '0.4.0'), '0.4.0')).toEqual(V040);
  });

  for (const v of ['0.3.0', '0.3.1']) {
    it(`0.4.0 -> ${v} keeps the same shape`, () => {
      expect(formatResult(parseResult(V040, '0.4.0'), v)).toEqual({ ...V040, cniVersion: v });
    });
  }

  it('0.4.0 -> 1.0.0 removes ips[].version', () => {
    const out = formatResult(parseResult(V040, '0.4.0'), '1.0.0');
    expect(out.ips).toEqual([
      { interface: 0, address: '10.0.0.5/24', gateway: '10.0.0.1' },
      { interface: 0, address: 'fd00::5/64' },
    ]);
  });

  it('1.1.0 round-trips unchanged', () => {
    expect(formatResult(parseResult(V110, '1.1.0'), '1.1.0')).toEqual(V110);
  });

  it('1.1.0 -> 1.0.0 drops the 1.1 interface and route fields', () => {
    const out = formatResult(parseResult(V110, '1.1.0'), '1.0.0');
    expect(out.interfaces).toEqual([{ name: 'eth0', mac: '02:00:00:00:00:02', sandbox: '/var/run/netns/blue' }]);
    expect(out.routes).toEqual([{ dst: '10.2.0.0/16', gw: '10.0.0.254' }]);
  });

  it('1.1.0 -> 0.3.0 adds ips[].version from the address family', () => {
    const out = formatResult(parseResult(V110, '1.1.0'), '0.3.0');
    expect(out.ips).toEqual([{ version: '4', interface: 0, address: '10.0.0.5/24', gateway: '10.0.0.1' }]);
    expect(out.routes).toEqual([{ dst: '10.2.0.0/16', gw: '10.0.0.254' }]);
  });

  it('keeps 1.1 fields found in a 1.0.0 result (Go plugins emit them) internally', () => {
    const r = parseResult({ ...V110, cniVersion: '1.0.0' }, '1.0.0');
    expect(r.routes?.[0]?.table).toBe(200);
  });

  it('tolerates ips[].version in a 1.x result and drops it', () => {
    const r = parseResult({ ips: [{ version: '4', address: '10.0.0.5/24' }] }, '1.0.0');
    expect(r.ips).toEqual([{ address: '10.0.0.5/24' }]);
  });

  it('interface index 0 is printed (it is not "absent")', () => {
    const result: CniResult = { interfaces: [{ name: 'eth0' }], ips: [{ address: '10.0.0.5/24', interface: 0 }] };
    expect((formatResult(result, '1.0.0').ips as unknown[])[0]).toEqual({ interface: 0, address: '10.0.0.5/24' });
  });

  it('omits empty lists and an empty dns', () => {
    expect(formatResult({ ips: [], dns: {} }, '1.0.0')).toEqual({ cniVersion: '1.0.0' });
  });
});

describe('result validation', () => {
  const bad = (json: unknown, version = '1.0.0'): CniError => {
    try {
      parseResult(json, version);
    } catch (err) {
      return err as CniError;
    }
    throw new Error('expected an error');
  };
  it('names the field path and the value', () => {
    const err = bad({ ips: [{ address: '10.0.0.5/24' }, { address: '10.0.0.300/24' }] });
    expect(err.cniCode).toBe(7);
    expect(err.message).toBe(
      'invalid network config: field "prevResult.ips[1].address": "10.0.0.300/24" is not an address in CIDR notation (like "10.1.0.5/24"): part 300 is more than 255',
    );
  });
  it('checks ips[].version against the address in 0.x', () => {
    expect(bad({ ips: [{ version: '6', address: '10.0.0.5/24' }] }, '0.4.0').message).toContain('is not an IPv6 address');
    expect(bad({ ips: [{ version: '5', address: '10.0.0.5/24' }] }, '0.4.0').message).toContain('must be "4" or "6"');
  });
  it('rejects an interface index outside interfaces', () => {
    expect(bad({ interfaces: [{ name: 'a' }], ips: [{ address: '10.0.0.5/24', interface: 1 }] }).message).toContain('prevResult.ips[0].interface');
  });
  it('requires interface names, valid gateways and route destinations', () => {
    expect(bad({ interfaces: [{ mac: 'x' }] }).message).toContain('"prevResult.interfaces[0].name" is required');
    expect(bad({ ips: [{ address: '10.0.0.5/24', gateway: 'gw' }] }).message).toContain('prevResult.ips[0].gateway');
    expect(bad({ routes: [{ gw: '10.0.0.1' }] }).message).toContain('prevResult.routes[0].dst');
    expect(bad({ routes: [{ dst: '0.0.0.0/0', table: 'main' }] }).message).toContain('must be an integer');
  });
  it('rejects a non-object', () => {
    expect(bad('hello').message).toContain('"prevResult": "hello" must be a JSON object');
  });
});
