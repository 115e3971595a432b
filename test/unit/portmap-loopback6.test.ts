import { describe, expect, it } from 'vitest';
import { loopbackProxyTargets } from '../../src/portmap/loopback6.js';
import type { PortmapRecord } from '../../src/portmap/state.js';

function record(over: Partial<PortmapRecord>): PortmapRecord {
  return {
    network: 'n', containerId: 'c1', ifname: 'eth0', netns: '/run/netns/x', owner: 'portmap/n/c1/eth0',
    mappings: [], containerIPs: ['10.1.0.2/24'], created: '2026-01-01T00:00:00Z', ...over,
  };
}

describe('loopbackProxyTargets', () => {
  it('proxies mappings on every address or on ::1, not those bound to an IPv4 or other IPv6 address', () => {
    const targets = loopbackProxyTargets([
      record({
        mappings: [
          { hostPort: 8080, containerPort: 80, protocol: 'tcp', hostIP: '' },
          { hostPort: 8053, containerPort: 53, protocol: 'udp', hostIP: '::' },
          { hostPort: 8081, containerPort: 81, protocol: 'tcp', hostIP: '::1' },
          { hostPort: 8082, containerPort: 82, protocol: 'tcp', hostIP: '0.0.0.0' },
          { hostPort: 8083, containerPort: 83, protocol: 'tcp', hostIP: '127.0.0.1' },
          { hostPort: 8084, containerPort: 84, protocol: 'tcp', hostIP: 'fd00::1' },
          { hostPort: 8085, containerPort: 85, protocol: 'sctp', hostIP: '' },
        ],
      }),
    ]);
    expect(targets.map((t) => `${t.key}->${t.backend.host}:${t.backend.port}`)).toEqual([
      'tcp/8080->10.1.0.2:80',
      'tcp/8081->10.1.0.2:81',
      'udp/8053->10.1.0.2:53',
    ]);
  });

  it('prefers the container IPv6 address, and skips records without any address', () => {
    const targets = loopbackProxyTargets([
      record({ containerIPs: ['10.1.0.3/24', 'fd10::3/64'], mappings: [{ hostPort: 9000, containerPort: 90, protocol: 'tcp', hostIP: '' }] }),
      record({ containerId: 'c2', owner: 'portmap/n/c2/eth0', containerIPs: [], mappings: [{ hostPort: 9001, containerPort: 91, protocol: 'tcp', hostIP: '' }] }),
    ]);
    expect(targets).toEqual([{ key: 'tcp/9000', protocol: 'tcp', hostPort: 9000, backend: { host: 'fd10::3', port: 90 }, owner: 'portmap/n/c1/eth0' }]);
  });
});
