import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { isIP, isIPv4, isIPv6 } from '../../src/ip-text.js';

const samples = [
  '0.0.0.0', '10.1.2.3', '255.255.255.255', '256.1.1.1', '1.2.3', '1.2.3.4.5', '01.2.3.4', '1.2.3.04', ' 1.2.3.4', '1.2.3.4 ', '1..3.4', '',
  '::', '::1', '1::', 'fe80::1%eth0', 'fe80::1%', 'fd00:1:2:3:4:5:6:7', 'fd00:1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7::', '::1:2:3:4:5:6:7',
  '1:2:3:4:5:6::7', '1:2:3:4:5:6:7::8', ':::', '1:::2', '1::2::3', '12345::', 'g::1', '::ffff:10.1.2.3', '::ffff:10.1.2.256', '64:ff9b::1.2.3.4',
  '1:2:3:4:5:6:1.2.3.4', '1:2:3:4:5:6:7:1.2.3.4', '1.2.3.4::', '::1.2.3.4', 'fe80::1%eth0.100', 'FE80::ABCD', '1:2:3:4:5:6:7', ':1::', '1::2:',
  '10.0.0.1/24', 'localhost', 'fd00::/64',
];

describe('ip-text', () => {
  it('agrees with node:net on valid, invalid and edge-case addresses', () => {
    for (const s of samples) {
      expect([s, isIP(s)]).toEqual([s, net.isIP(s)]);
      expect([s, isIPv4(s)]).toEqual([s, net.isIPv4(s)]);
      expect([s, isIPv6(s)]).toEqual([s, net.isIPv6(s)]);
    }
  });

  it('agrees with node:net on random mutations of addresses', () => {
    const alphabet = '0123456789abcdef:.%';
    let seed = 12345;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (let i = 0; i < 20_000; i++) {
      const base = samples[rand(samples.length)]!.split('');
      const edits = 1 + rand(3);
      for (let e = 0; e < edits; e++) {
        const pos = rand(base.length + 1);
        const op = rand(3);
        if (op === 0) base.splice(pos, 0, alphabet[rand(alphabet.length)]!);
        else if (op === 1) base.splice(pos, 1);
        else base[pos] = alphabet[rand(alphabet.length)]!;
      }
      const s = base.join('');
      expect([s, isIP(s)]).toEqual([s, net.isIP(s)]);
    }
  });
});
