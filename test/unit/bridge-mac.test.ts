import { describe, expect, it } from 'vitest';
import { IpAddr } from '../../src/addr.js';
import { bridgeMac, containerMac as macOf } from '../../src/bridge/mac.js';

const containerMac = (texts: string[]) => macOf(texts.map((t) => IpAddr.parse(t)));

const UNICAST_LOCAL = /^02(:[0-9a-f]{2}){5}$/;

describe('bridge and container MACs', () => {
  it('a bridge MAC is locally administered unicast, stable for a name, different across names', () => {
    expect(bridgeMac('shoal0')).toMatch(UNICAST_LOCAL);
    expect(bridgeMac('shoal0')).toBe(bridgeMac('shoal0'));
    const macs = new Set(Array.from({ length: 1000 }, (_, i) => bridgeMac(`br-${i}`)));
    expect(macs.size).toBe(1000);
  });

  it('a container MAC carries its IPv4 address, so the next holder of the address has the same MAC', () => {
    expect(containerMac(['10.89.7.5'])).toBe('02:5c:0a:59:07:05');
    expect(containerMac(['fd00::1', '10.89.7.5'])).toBe('02:5c:0a:59:07:05');
    expect(containerMac(['192.168.255.254'])).toBe('02:5c:c0:a8:ff:fe');
  });

  it('an IPv6-only container MAC carries the low 32 bits of its address', () => {
    expect(containerMac(['fd00:1:2::a:bc01'])).toBe('02:5d:00:0a:bc:01');
  });

  it('no address, no derived MAC; a bridge MAC never equals a container MAC', () => {
    expect(containerMac([])).toBeUndefined();
    for (let i = 0; i < 200; i++) expect(bridgeMac(`b${i}`).slice(0, 5)).not.toBe(containerMac([`10.0.0.${i}`])!.slice(0, 5));
  });
});
