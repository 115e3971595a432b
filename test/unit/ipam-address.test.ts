import { describe, expect, it } from 'vitest';
import { IpAddr } from '../../src/addr.js';
import { addressFromKey, addressKey } from '../../src/ipam/address.js';

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
  ])('%s is IPv%s %s, the integer the allocator counts with', (text, family, value) => {
    const a = IpAddr.parse(text);
    expect([a.family, a.value]).toEqual([family, value]);
  });

  it('makes keys that sort in address order and round-trip', () => {
    const texts = ['10.0.0.2', '10.0.0.10', '10.0.1.1', '9.255.255.255'];
    const keys = texts.map((t) => addressKey(IpAddr.parse(t)));
    expect(keys[0]).toBe('4:0a000002');
    expect([...keys].sort().map((k) => addressFromKey(k).toString())).toEqual(['9.255.255.255', '10.0.0.2', '10.0.0.10', '10.0.1.1']);
    const v6 = IpAddr.parse('fd00::abcd');
    expect(addressKey(v6)).toBe('6:fd00000000000000000000000000abcd');
    expect(addressFromKey(addressKey(v6)).equals(v6)).toBe(true);
  });
});
