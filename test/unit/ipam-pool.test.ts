import { describe, expect, it } from 'vitest';
import { IpAddr } from '../../src/addr.js';
import { parseIpamConfig } from '../../src/ipam/config.js';
import { addressesOf, allocatableSegments, capacityOf, visitOrder } from '../../src/ipam/pool.js';

/** The addresses a config's range set would be visited in, after `last`, as text. */
function walk(ipam: Record<string, unknown>, last?: string, set = 0): string[] {
  const config = parseIpamConfig(ipam);
  const rangeSet = config.rangeSets[set]!;
  const segments = allocatableSegments(rangeSet, config.holes);
  const order = visitOrder(segments, rangeSet, last ? IpAddr.parse(last) : undefined);
  return [...addressesOf(order)].map((value) => IpAddr.of(rangeSet[0]!.family, value).toString());
}

describe('ipam range iteration', () => {
  it('IPv4 /29: skips network, gateway (.1 by default) and broadcast', () => {
    expect(walk({ ranges: [[{ subnet: '10.0.0.0/29' }]] })).toEqual(['10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.6']);
  });

  it('IPv4 with an explicit gateway in the middle skips that instead', () => {
    expect(walk({ ranges: [[{ subnet: '10.0.0.0/29', gateway: '10.0.0.4' }]] })).toEqual([
      '10.0.0.1',
      '10.0.0.2',
      '10.0.0.3',
      '10.0.0.5',
      '10.0.0.6',
    ]);
  });

  it('IPv6 /125: no broadcast to skip, the last address is usable', () => {
    expect(walk({ ranges: [[{ subnet: 'fd00::/125' }]] })).toEqual(['fd00::2', 'fd00::3', 'fd00::4', 'fd00::5', 'fd00::6', 'fd00::7']);
  });

  it('honours rangeStart and rangeEnd', () => {
    expect(walk({ ranges: [[{ subnet: '10.0.0.0/24', rangeStart: '10.0.0.100', rangeEnd: '10.0.0.103' }]] })).toEqual([
      '10.0.0.100',
      '10.0.0.101',
      '10.0.0.102',
      '10.0.0.103',
    ]);
    expect(walk({ ranges: [[{ subnet: 'fd00::/64', rangeStart: 'fd00::ff', rangeEnd: 'fd00::101' }]] })).toEqual([
      'fd00::ff',
      'fd00::100',
      'fd00::101',
    ]);
  });

  it('skips excluded addresses and CIDRs', () => {
    expect(walk({ ranges: [[{ subnet: '10.0.0.0/28' }]], exclude: ['10.0.0.3', '10.0.0.8/30', '10.0.0.14'] })).toEqual([
      '10.0.0.2',
      '10.0.0.4',
      '10.0.0.5',
      '10.0.0.6',
      '10.0.0.7',
      '10.0.0.12',
      '10.0.0.13',
    ]);
  });

  it('wraps around: starts after the last reserved address and ends with it', () => {
    expect(walk({ ranges: [[{ subnet: '10.0.0.0/29' }]] }, '10.0.0.4')).toEqual(['10.0.0.5', '10.0.0.6', '10.0.0.2', '10.0.0.3', '10.0.0.4']);
    expect(walk({ ranges: [[{ subnet: '10.0.0.0/29' }]] }, '10.0.0.6')).toEqual(['10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.6']);
  });

  it('walks several ranges of a set in config order and wraps across them', () => {
    const ipam = {
      ranges: [
        [
          { subnet: '10.1.0.0/30' },
          { subnet: '10.0.0.0/24', rangeStart: '10.0.0.10', rangeEnd: '10.0.0.11' },
        ],
      ],
    };
    expect(walk(ipam)).toEqual(['10.1.0.2', '10.0.0.10', '10.0.0.11']);
    expect(walk(ipam, '10.0.0.10')).toEqual(['10.0.0.11', '10.1.0.2', '10.0.0.10']);
  });

  it('starts at the next allocatable address when the last one became excluded', () => {
    expect(walk({ ranges: [[{ subnet: '10.0.0.0/29' }]], exclude: ['10.0.0.4'] }, '10.0.0.4')).toEqual([
      '10.0.0.5',
      '10.0.0.6',
      '10.0.0.2',
      '10.0.0.3',
    ]);
  });

  it('starts at the beginning when the last address is outside every range', () => {
    expect(walk({ ranges: [[{ subnet: '10.0.0.0/29' }]] }, '192.168.0.1')).toEqual(['10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.6']);
  });

  it('counts capacity without enumerating (a /64)', () => {
    const config = parseIpamConfig({ ranges: [[{ subnet: 'fd00::/64' }]] });
    // 2^64 addresses minus the network address and the gateway (::1).
    expect(capacityOf(allocatableSegments(config.rangeSets[0]!, config.holes))).toBe(2n ** 64n - 2n);
  });
});
