import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { bigIntToBytes, bytesToBigInt, formatIp, isIP, isIPv4, isIPv6, parseIp } from '../../src/ip-text.js';
import { seededRandom } from '../helpers/random.js';

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
    const random = seededRandom();
    const rand = (n: number) => random.int(n);
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
      expect([s, isIP(s)], `seed ${random.seed}`).toEqual([s, net.isIP(s)]);
    }
  });
});

describe('parseIp / formatIp', () => {
  it('round-trips and formats IPv6 in the RFC 5952 short form', () => {
    const cases: Array<[string, string]> = [
      ['10.1.2.3', '10.1.2.3'],
      ['::', '::'],
      ['::1', '::1'],
      ['fd00:0:0:0:0:0:0:5', 'fd00::5'],
      ['FD00:1:0:0:1:0:0:0', 'fd00:1:0:0:1::'],
      ['::ffff:10.1.2.3', '::ffff:a01:203'],
      ['1:2:3:4:5:6:1.2.3.4', '1:2:3:4:5:6:102:304'],
      ['::1.2.3.4', '::102:304'],
      ['1:0:2:3:4:5:6:7', '1:0:2:3:4:5:6:7'],
    ];
    for (const [text, formatted] of cases) {
      const parsed = parseIp(text);
      expect(parsed, text).toBeDefined();
      expect(formatIp(parsed!.bytes), text).toBe(formatted);
      expect(formatIp(bigIntToBytes(bytesToBigInt(parsed!.bytes), parsed!.bytes.length as 4 | 16))).toBe(formatted);
    }
    expect(parseIp('fe80::1%eth0')).toBeUndefined();
    expect(parseIp('10.0.0.256')).toBeUndefined();
  });

  it('reads every group of random IPv6 addresses back', () => {
    const random = seededRandom();
    for (let i = 0; i < 2000; i++) {
      const groups = Array.from({ length: 8 }, () => (random.next() < 0.4 ? 0 : random.int(0x10000)));
      const text = groups.map((g) => g.toString(16)).join(':');
      const why = `${text} (seed ${random.seed})`;
      const parsed = parseIp(text);
      expect(parsed, why).toBeDefined();
      expect(formatIp(parsed!.bytes), why).toBe(formatIp(parseIp(formatIp(parsed!.bytes))!.bytes));
      expect(Array.from({ length: 8 }, (_, k) => parsed!.bytes.readUInt16BE(k * 2)), why).toEqual(groups);
    }
  });
});
