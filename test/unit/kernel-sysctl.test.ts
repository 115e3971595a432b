/** sysctl key to /proc/sys path mapping; no root needed. */
import { describe, expect, it } from 'vitest';
import { SysctlError } from '../../src/kernel/errors.js';
import { interfaceSysctlKey, sysctlPath, sysctlSegments } from '../../src/kernel/sysctl.js';

describe('sysctlPath', () => {
  it('maps dotted keys with every dot a separator', () => {
    expect(sysctlPath('net.ipv4.ip_forward')).toBe('/proc/sys/net/ipv4/ip_forward');
  });

  it('keeps dots in interface names when the key is segments or slash-separated', () => {
    expect(sysctlPath(interfaceSysctlKey('ipv6', 'eth0.100', 'disable_ipv6'))).toBe('/proc/sys/net/ipv6/conf/eth0.100/disable_ipv6');
    expect(sysctlPath('net/ipv4/conf/br.x/forwarding')).toBe('/proc/sys/net/ipv4/conf/br.x/forwarding');
    expect(sysctlSegments(['net', 'ipv4', 'conf', 'all', 'rp_filter'])).toHaveLength(5);
  });

  it('refuses keys that would leave /proc/sys or are empty', () => {
    for (const bad of ['', 'net..ipv4', 'net/../../etc/passwd', ['net', '..', 'x'], ['net', 'a/b'], []]) {
      expect(() => sysctlPath(bad)).toThrow(SysctlError);
    }
    expect(() => sysctlPath(['net', '..'])).toThrow(/invalid sysctl key "net\.\.\."/);
  });
});
