import type { NetworkRecord } from '../../src/network/model.js';

/** A bridge network record for tests ("n1", 10.250.1.0/24), with `over` applied. */
export function networkRecord(over: Partial<NetworkRecord> = {}): NetworkRecord {
  return {
    name: 'n1',
    id: 'x'.repeat(64),
    driver: 'bridge',
    subnets: [{ subnet: '10.250.1.0/24' }],
    ipv6: false,
    internal: false,
    attachable: false,
    options: {},
    dns: [],
    dnsSearch: [],
    hosts: [],
    bridge: 'shoal-n1',
    cniVersion: '1.0.0',
    confFile: '/tmp/n1.conflist',
    stateDir: '/var/lib/shoal',
    created: '2024-01-01T00:00:00.000Z',
    ...over,
  };
}
