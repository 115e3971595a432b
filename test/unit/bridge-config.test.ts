import { describe, expect, it } from 'vitest';
import { parseBridgeConf, parseBridgeConfForDel, parseIpvlanConf, parseMacvlanConf, requestedMac } from '../../src/bridge/config.js';
import { CniError } from '../../cni/errors.js';

const base = { cniVersion: '1.0.0', name: 'n1', type: 'shoal-bridge', ipam: { type: 'shoal-ipam' } };

function codeOf(fn: () => unknown): number | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof CniError ? err.cniCode : -1;
  }
  return undefined;
}

describe('bridge config', () => {
  it('defaults follow the reference plugin; isolate is off unless the network asks', () => {
    expect(parseBridgeConf(base)).toEqual({
      network: 'n1', bridge: 'cni0', isGateway: false, isDefaultGateway: false, forceAddress: false, ipMasq: false, mtu: undefined,
      hairpinMode: false, promiscMode: false, macspoofchk: false, enabledad: false, isolate: false, internal: false,
    });
  });

  it('isDefaultGateway implies isGateway; isolate takes true or "strict"', () => {
    expect(parseBridgeConf({ ...base, isDefaultGateway: true }).isGateway).toBe(true);
    expect(parseBridgeConf({ ...base, isolate: 'strict' }).isolate).toBe('strict');
    expect(codeOf(() => parseBridgeConf({ ...base, isolate: 'yes' }))).toBe(7);
  });

  it('a vlan is for ADD to ask the kernel about (test 100); DEL accepts the same config', () => {
    expect(parseBridgeConf({ ...base, vlan: 100 }).vlan).toEqual({ field: 'vlan', value: 100 });
    expect(parseBridgeConf({ ...base, vlanTrunk: [{ id: 5 }] }).vlan).toEqual({ field: 'vlanTrunk', value: [{ id: 5 }] });
    expect(parseBridgeConf({ ...base, vlan: 0 }).vlan).toBeUndefined();
    expect(codeOf(() => parseBridgeConf({ ...base, vlan: 5000 }))).toBe(7);
    expect(parseBridgeConf({ ...base, vlan: 0 }).bridge).toBe('cni0');
    expect(parseBridgeConfForDel({ ...base, vlan: 100 }).network).toBe('n1');
  });

  it('code 7 for bad values: mtu, bridge name, hairpin with promisc, missing ipam', () => {
    expect(() => parseBridgeConf({ ...base, mtu: 10 })).toThrow(/field "mtu": 10 must be 68-65535/);
    expect(codeOf(() => parseBridgeConf({ ...base, bridge: 'a-name-that-is-too-long' }))).toBe(7);
    expect(codeOf(() => parseBridgeConf({ ...base, hairpinMode: true, promiscMode: true }))).toBe(7);
    const { ipam: _ipam, ...noIpam } = base;
    expect(codeOf(() => parseBridgeConf(noIpam))).toBe(7);
  });

  it('MAC: CNI_ARGS, then args.cni.mac, then runtimeConfig.mac (the last found wins)', () => {
    const config = { ...base } as Record<string, unknown>;
    expect(requestedMac({ args: {}, config: config as never })).toBeUndefined();
    expect(requestedMac({ args: { MAC: '02:00:00:00:00:01' }, config: config as never })).toBe('02:00:00:00:00:01');
    const withArgs = { ...config, args: { cni: { mac: '02:00:00:00:00:02' } } };
    expect(requestedMac({ args: { MAC: '02:00:00:00:00:01' }, config: withArgs as never })).toBe('02:00:00:00:00:02');
    const withRc = { ...withArgs, runtimeConfig: { mac: '02:00:00:00:00:0A' } };
    expect(requestedMac({ args: {}, config: withRc as never })).toBe('02:00:00:00:00:0a');
    expect(() => requestedMac({ args: { MAC: 'nope' }, config: config as never })).toThrow(/CNI_ARGS MAC.*not a MAC/);
    expect(() => requestedMac({ args: { MAC: '01:00:5e:00:00:01' }, config: config as never })).toThrow(/multicast/);
  });
});

describe('macvlan / ipvlan config', () => {
  it('macvlan defaults: bridge mode, master from the default route', () => {
    expect(parseMacvlanConf({ ...base, type: 'shoal-macvlan' })).toMatchObject({ mode: 'bridge', master: undefined, linkInContainer: false });
    expect(codeOf(() => parseMacvlanConf({ ...base, mode: 'loud' }))).toBe(7);
    expect(codeOf(() => parseMacvlanConf({ ...base, mac: 'xx' }))).toBe(7);
  });
  it('ipvlan defaults to l2 and knows l3 / l3s', () => {
    expect(parseIpvlanConf({ ...base, master: 'eth9' })).toMatchObject({ mode: 'l2', master: 'eth9' });
    expect(parseIpvlanConf({ ...base, mode: 'l3s' }).mode).toBe('l3s');
    expect(codeOf(() => parseIpvlanConf({ ...base, mode: 'l4' }))).toBe(7);
  });
});
