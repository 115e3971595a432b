import { describe, expect, it } from 'vitest';
import { CniError } from '../../cni/errors.js';
import type { NetConf } from '../../cni/config.js';
import { bridgeConfig, parseVxlanConf, parseVxlanConfForDel } from '../../src/overlay/config.js';
import { overlayMtu } from '../../src/overlay/device.js';
import { OverlayConfigError } from '../../src/overlay/errors.js';
import { overlayBridgeName, vxlanDeviceName } from '../../src/overlay/names.js';
import { parseBridgeConf } from '../../src/bridge/config.js';
import type { Link } from '../../src/kernel/link.js';

const base = { cniVersion: '1.0.0', name: 'ovl', type: 'shoal-vxlan', vni: 4242, ipam: { type: 'shoal-ipam', subnet: '10.197.0.0/24' } };

function code7(config: unknown): string {
  try {
    parseVxlanConf(config);
  } catch (err) {
    expect(err).toBeInstanceOf(CniError);
    expect((err as CniError).cniCode).toBe(7);
    return (err as Error).message;
  }
  throw new Error('expected a code-7 error');
}

describe('shoal-vxlan config', () => {
  it('applies the defaults: derived bridge, masquerade and default route through the node', () => {
    expect(parseVxlanConf(base)).toEqual({
      network: 'ovl',
      vni: 4242,
      underlay: { interface: undefined, address: undefined },
      mtu: undefined,
      bridge: overlayBridgeName('ovl', 4242),
      ipMasq: true,
      isDefaultGateway: true,
    });
    expect(parseVxlanConf({ ...base, internal: true }).isDefaultGateway).toBe(false);
    expect(parseVxlanConf({ ...base, ipMasq: false, bridge: 'ovl0', mtu: 1400, underlayInterface: 'eth1' })).toMatchObject({ ipMasq: false, bridge: 'ovl0', mtu: 1400, underlay: { interface: 'eth1' } });
  });

  it('names the field and value of bad input', () => {
    const { vni: _vni, ...noVni } = base;
    expect(code7(noVni)).toBe('invalid network config: field "vni" is required');
    expect(code7({ ...base, vni: 0 })).toBe('invalid network config: field "vni": 0 must be 1-16777214');
    expect(code7({ ...base, vni: 16777215 })).toBe('invalid network config: field "vni": 16777215 must be 1-16777214');
    expect(code7({ ...base, vni: 1.5 })).toBe('invalid network config: field "vni": 1.5 must be a whole number');
    expect(code7({ ...base, vni: '42' })).toBe('invalid network config: field "vni": "42" must be a number');
    expect(code7({ ...base, underlayAddress: '10.0.0.300' })).toBe('invalid network config: field "underlayAddress": "10.0.0.300" is not an IP address: part 300 is more than 255');
    expect(code7({ ...base, underlayInterface: 'a/b' })).toContain('field "underlayInterface": "a/b" is not a valid interface name');
    expect(code7({ ...base, mtu: 50 })).toBe('invalid network config: field "mtu": 50 must be 68-65535');
    expect(code7({ ...base, bridge: 'a-very-long-bridge-name' })).toContain('field "bridge"');
    const { ipam: _ipam, ...noIpam } = base;
    expect(code7(noIpam)).toBe('invalid network config: field "ipam" is required');
  });

  it('DEL, GC and STATUS parse leniently: a broken overlay field does not block cleanup', () => {
    const broken = { ...base, vni: 'x', mtu: -1 } as unknown as NetConf;
    expect(parseVxlanConfForDel(broken)).toEqual({ network: 'ovl', bridge: overlayBridgeName('ovl', 0), ipMasq: true, isDefaultGateway: true });
    expect(parseVxlanConfForDel({ ...base, bridge: 'ovl0', ipMasq: false } as NetConf)).toMatchObject({ bridge: 'ovl0', ipMasq: false });
  });

  it('runs the attachment as a shoal-bridge gateway on the overlay gateway link, with the overlay MTU', () => {
    const config = { ...base, isGateway: false, hairpinMode: true, mtu: 1400 } as NetConf;
    const conf = parseVxlanConf(config);
    const b = parseBridgeConf(bridgeConfig(config, conf, 1400));
    expect(b).toMatchObject({ bridge: conf.bridge, isGateway: true, isDefaultGateway: true, ipMasq: true, mtu: 1400, hairpinMode: true, network: 'ovl' });
    expect(parseBridgeConf(bridgeConfig(config, conf, undefined)).mtu).toBeUndefined();
  });
});

describe('derived names', () => {
  it('are 15 bytes with the VNI readable, the same for the same network, different across networks', () => {
    for (const vni of [1, 4242, 16777214]) {
      const name = vxlanDeviceName('a-network-with-a-long-name', vni);
      expect(Buffer.byteLength(name)).toBe(15);
      expect(name.slice(3, 9)).toBe(vni.toString(16).padStart(6, '0'));
    }
    // Past 24 bits (refused by the kernel later, with its own text) the name still fits.
    expect(vxlanDeviceName('ovl', 16777216)).toMatch(/^vx-1000000-[0-9a-f]{4}$/);
    expect(vxlanDeviceName('ovl', 4242)).toMatch(/^vx-001092-[0-9a-f]{5}$/);
    expect(overlayBridgeName('ovl', 4242)).toMatch(/^vb-001092-[0-9a-f]{5}$/);
    expect(vxlanDeviceName('ovl', 4242)).toBe(vxlanDeviceName('ovl', 4242));
    expect(vxlanDeviceName('ovl', 4242)).not.toBe(vxlanDeviceName('ovl2', 4242));
  });
});

describe('overlayMtu', () => {
  const link = { name: 'und' } as Link;
  it('is the underlay MTU minus 50 over IPv4, 70 over IPv6; jumbo underlays give jumbo overlays', () => {
    expect(overlayMtu({ link, mtu: 1500, family: 4 })).toBe(1450);
    expect(overlayMtu({ link, mtu: 9000, family: 4 })).toBe(8950);
    expect(overlayMtu({ link, mtu: 1500, family: 6 })).toBe(1430);
    expect(overlayMtu({ link, mtu: 1500, family: 4 }, 1400)).toBe(1400);
    expect(overlayMtu({ link, mtu: 1500, family: 4 }, 1450)).toBe(1450);
  });

  it('refuses more than the underlay carries, naming the field', () => {
    expect(() => overlayMtu({ link, mtu: 1500, family: 4 }, 1451)).toThrow(OverlayConfigError);
    expect(() => overlayMtu({ link, mtu: 1500, family: 4 }, 1451)).toThrow('invalid network config: field "mtu": 1451 is more than the underlay "und" can carry (its MTU 1500 − 50 bytes of VXLAN over IPv4 = 1450)');
  });
});
