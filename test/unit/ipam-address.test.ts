import { describe, expect, it } from 'vitest';
import { addressFromKey, addressKey, formatAddress, parseAddress, parseCidr } from '../../src/ipam/address.js';

describe('ipam addresses', () => {
  it.each([
    ['10.88.0.5', 4, 0x0a580005n],
    ['0.0.0.0', 4, 0n],
    ['255.255.255.255', 4, 0xffffffffn],
    ['::', 6, 0n],
    ['::1', 6, 1n],
    ['fd00::10', 6, 0xfd000000000000000000000000000010n],
    ['2001:db8::ffff:0:1', 6, 0x20010db8000000000000ffff00000001n],
    ['::ffff:10.0.0.1', 6, 0xffff0a000001n],
    ['1:2:3:4:5:6:7:8', 6, 0x00010002000300040005000600070008n],
  ])('parses %s', (text, family, value) => {
    expect(parseAddress(text)).toEqual({ family, value });
  });

  it.each(['10.0.0', '10.0.0.256', 'fe80::1%eth0', 'fd00::/64', '', 'abc'])('rejects %s', (text) => {
    expect(parseAddress(text)).toBeUndefined();
  });

  it.each(['10.88.0.5', '::', '::1', 'fd00::10', '2001:db8::ffff:0:1', '1:2:3:4:5:6:7:8', '1:0:0:2::3', 'fd00:0:1::'])(
    'formats %s back canonically',
    (text) => {
      expect(formatAddress(parseAddress(text)!)).toBe(text);
    },
  );

  it('compresses the longest zero run, first on a tie (RFC 5952)', () => {
    expect(formatAddress(parseAddress('1:0:0:2:0:0:0:3')!)).toBe('1:0:0:2::3');
    expect(formatAddress(parseAddress('1:0:0:2:3:0:0:4')!)).toBe('1::2:3:0:0:4');
  });

  it('parses CIDRs and rejects bad prefix lengths', () => {
    expect(parseCidr('10.88.0.0/16')).toEqual({ family: 4, address: 0x0a580000n, prefixLength: 16 });
    expect(parseCidr('fd00::/64')?.prefixLength).toBe(64);
    expect(parseCidr('10.0.0.0/33')).toBeUndefined();
    expect(parseCidr('10.0.0.0')).toBeUndefined();
    expect(parseCidr('10.0.0.0/x')).toBeUndefined();
  });

  it('makes keys that sort in address order and round-trip', () => {
    const texts = ['10.0.0.2', '10.0.0.10', '10.0.1.1', '9.255.255.255'];
    const keys = texts.map((t) => addressKey(parseAddress(t)!));
    expect([...keys].sort().map((k) => formatAddress(addressFromKey(k)))).toEqual(['9.255.255.255', '10.0.0.2', '10.0.0.10', '10.0.1.1']);
    const v6 = parseAddress('fd00::abcd')!;
    expect(addressFromKey(addressKey(v6))).toEqual(v6);
  });
});
