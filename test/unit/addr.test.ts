import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { AddressSyntaxError, IpAddr, IpPrefix, isIP, isIPv4, isIPv6 } from '../../src/addr.js';
import { seededRandom, TEST_SEED } from '../helpers/random.js';

/**
 * src/addr.ts against node:net, with random inputs from a seeded generator. The seed comes from
 * SHOAL_TEST_SEED (to replay a failure) or is random, and every failure message names it.
 */
const SEED = TEST_SEED;
const at = (what: unknown) => `SHOAL_TEST_SEED=${SEED}: ${typeof what === 'string' ? what : JSON.stringify(what, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString(16) : v))}`;

/** Address-shaped draws on the shared seeded generator (test/helpers/random.ts). */
function generator(seed: number) {
  const random = seededRandom(seed);
  const u32 = (): number => random.int(2 ** 32);
  const int = (n: number): number => random.int(n);
  const chance = (p: number): boolean => u32() / 2 ** 32 < p;
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  /** A 16-bit group, zero often enough to make runs of zeros. */
  const group = (): number => (chance(0.45) ? 0 : chance(0.3) ? int(16) : int(0x10000));
  const v4 = (): bigint => BigInt(pick([u32(), u32(), 0, 0xffffffff, 0x7f000001, (int(256) << 24) >>> 0, ((10 << 24) | int(1 << 24)) >>> 0]));
  const v6 = (): bigint => {
    const shape = int(6);
    if (shape === 0) return (0xffffn << 32n) | BigInt(u32()); // IPv4-mapped
    if (shape === 1) return BigInt(u32()) & (chance(0.5) ? 0xffffn : 0xffffffffn); // ::x and IPv4-compatible
    let v = 0n;
    for (let i = 0; i < 8; i++) v = (v << 16n) | BigInt(group());
    return v;
  };
  return { u32, int, chance, pick, group, v4, v6 };
}

type Gen = ReturnType<typeof generator>;

function groupsOf(value: bigint): number[] {
  return Array.from({ length: 8 }, (_, i) => Number((value >> BigInt(112 - 16 * i)) & 0xffffn));
}

function dotted(value: bigint): string {
  const n = Number(value);
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/**
 * One of the many spellings of an IPv6 address: any run of zero groups (not only the longest)
 * as "::", or none; random case and leading zeros; the last 32 bits dotted when that is allowed.
 */
function spell6(g: Gen, value: bigint): string {
  const groups = groupsOf(value);
  const hex = (x: number) => {
    let t = x.toString(16);
    if (g.chance(0.2)) t = t.padStart(1 + g.int(4), '0').slice(-4);
    return g.chance(0.3) ? t.toUpperCase() : t;
  };
  const dottedTail = g.chance(0.3);
  const body = dottedTail ? groups.slice(0, 6) : groups;
  const runs: Array<[number, number]> = [];
  for (let i = 0; i < body.length; ) {
    if (body[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < body.length && body[j] === 0) j++;
    runs.push([i, j]);
    i = j;
  }
  const tail = dottedTail ? dotted(value & 0xffffffffn) : undefined;
  if (runs.length === 0 || g.chance(0.2)) return [...body.map(hex), ...(tail ? [tail] : [])].join(':');
  const [from, to] = g.pick(runs);
  const left = body.slice(0, from).map(hex).join(':');
  const rightParts = [...body.slice(to).map(hex), ...(tail ? [tail] : [])];
  return `${left}::${rightParts.join(':')}`;
}

/** What inet_ntop (through net.SocketAddress) prints; glibc writes IPv4-compatible ::a.b.c.d too. */
function nodeCanonical(text: string, family: 4 | 6): string {
  return new net.SocketAddress({ address: text, family: family === 4 ? 'ipv4' : 'ipv6' }).address;
}

const g = generator(SEED);

describe('IpAddr text round trip (property, against node:net)', () => {
  it('IPv4: value -> text -> value, and the text is what node prints', () => {
    for (let i = 0; i < 3000; i++) {
      const value = g.v4();
      const text = dotted(value);
      const a = IpAddr.parse(text);
      expect(a.family, at(text)).toBe(4);
      expect(a.value, at(text)).toBe(value);
      expect(a.toString(), at(text)).toBe(text);
      expect(a.toString(), at(text)).toBe(nodeCanonical(text, 4));
      expect(isIP(text), at(text)).toBe(net.isIP(text));
    }
  });

  it('IPv6: every spelling parses to its value and prints in the one canonical form node prints', () => {
    for (let i = 0; i < 6000; i++) {
      const value = g.v6();
      const text = spell6(g, value);
      expect(net.isIPv6(text), at(`generator made an invalid spelling ${text}`)).toBe(true);
      const a = IpAddr.parse(text);
      expect([a.family, a.value], at(text)).toEqual([6, value]);
      const out = a.toString();
      // IPv4-compatible addresses (::a.b.c.d, deprecated by RFC 4291) are hex here; glibc
      // still writes them dotted. Everything else must match inet_ntop exactly.
      const compat = value >> 32n === 0n && value >= 0x10000n;
      if (compat) expect(nodeCanonical(out, 6), at(text)).toBe(nodeCanonical(text, 6));
      else expect(out, at(text)).toBe(nodeCanonical(text, 6));
      // Canonical: lower case, and a fixed point of parse -> print.
      expect(out, at(text)).toBe(out.toLowerCase());
      expect(IpAddr.parse(out).toString(), at(text)).toBe(out);
      expect(isIP(text), at(text)).toBe(6);
    }
  });

  it('bytes round-trip and are the network-order bytes', () => {
    for (let i = 0; i < 2000; i++) {
      const a = g.chance(0.5) ? IpAddr.of(4, g.v4()) : IpAddr.of(6, g.v6());
      const bytes = a.toBytes();
      expect(bytes.length, at(a.toString())).toBe(a.family === 4 ? 4 : 16);
      expect(IpAddr.fromBytes(bytes).equals(a), at(a.toString())).toBe(true);
      expect(BigInt(`0x${bytes.toString('hex')}`), at(a.toString())).toBe(a.value);
      expect(IpAddr.fromBytes(new Uint8Array(bytes)).equals(a), at(a.toString())).toBe(true);
    }
  });
});

const MUTATION_SEEDS = [
  '0.0.0.0', '10.1.2.3', '255.255.255.255', '256.1.1.1', '1.2.3', '1.2.3.4.5', '01.2.3.4', '1.2.3.04', ' 1.2.3.4', '1.2.3.4 ', '1..3.4', '',
  '::', '::1', '1::', 'fe80::1%eth0', 'fe80::1%', 'fd00:1:2:3:4:5:6:7', 'fd00:1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7::', '::1:2:3:4:5:6:7',
  '1:2:3:4:5:6::7', '1:2:3:4:5:6:7::8', ':::', '1:::2', '1::2::3', '12345::', 'g::1', '::ffff:10.1.2.3', '::ffff:10.1.2.256', '64:ff9b::1.2.3.4',
  '1:2:3:4:5:6:1.2.3.4', '1:2:3:4:5:6:7:1.2.3.4', '1.2.3.4::', '::1.2.3.4', 'fe80::1%eth0.100', 'FE80::ABCD', '1:2:3:4:5:6:7', ':1::', '1::2:',
  '10.0.0.1/24', 'localhost', 'fd00::/64', 'fe80::1%a_b', '1:2:3:4:5::1.2.3.4', '1:2:3:4:5:6::1.2.3.4', '0:0:0:0:0:0:1.2.3.4',
];

describe('validity agrees with node:net (property)', () => {
  it('on the edge cases', () => {
    for (const s of MUTATION_SEEDS) {
      expect([s, isIP(s), isIPv4(s), isIPv6(s)]).toEqual([s, net.isIP(s), net.isIPv4(s), net.isIPv6(s)]);
      expect([s, IpAddr.tryParse(s) !== undefined]).toEqual([s, net.isIP(s) !== 0 && !s.includes('%')]);
    }
  });

  it('on random mutations of valid and invalid addresses', () => {
    const alphabet = '0123456789abcdefABCDEFg:.%/ -_';
    for (let i = 0; i < 20_000; i++) {
      const base = (g.chance(0.5) ? g.pick(MUTATION_SEEDS) : g.chance(0.5) ? spell6(g, g.v6()) : dotted(g.v4())).split('');
      const edits = 1 + g.int(3);
      for (let e = 0; e < edits; e++) {
        const pos = g.int(base.length + 1);
        const op = g.int(3);
        if (op === 0) base.splice(pos, 0, g.pick([...alphabet]));
        else if (op === 1) base.splice(pos, 1);
        else base[pos] = g.pick([...alphabet]);
      }
      const s = base.join('');
      expect(isIP(s), at(s)).toBe(net.isIP(s));
      expect(isIPv4(s), at(s)).toBe(net.isIPv4(s));
      expect(isIPv6(s), at(s)).toBe(net.isIPv6(s));
      const parsed = IpAddr.tryParse(s);
      expect(parsed !== undefined, at(s)).toBe(net.isIP(s) !== 0 && !s.includes('%'));
      if (parsed) expect(nodeCanonical(parsed.toString(), parsed.family), at(s)).toBe(nodeCanonical(s, parsed.family));
      else expect(IpAddr.problem(s), at(s)).toBeTypeOf('string');
    }
  });
});

/** A random prefix, and an address that is inside it about half the time. */
function prefixAndAddress(gen: Gen): { p: IpPrefix; a: IpAddr } {
  const family = gen.chance(0.5) ? 4 : 6;
  const bits = family === 4 ? 32 : 128;
  const length = gen.chance(0.1) ? gen.pick([0, bits]) : gen.int(bits + 1);
  const p = IpPrefix.of(IpAddr.of(family, family === 4 ? gen.v4() : gen.v6()), length);
  let a: IpAddr;
  if (gen.chance(0.5)) {
    const host = family === 4 ? gen.v4() : gen.v6();
    const mask = (1n << BigInt(bits - length)) - 1n;
    a = IpAddr.of(family, (p.addr.value & ~mask) | (host & mask));
  } else if (gen.chance(0.3)) {
    a = gen.chance(0.5) ? p.network().offset(p.network().value === 0n ? 0 : -1) : p.last().offset(p.last().value === (1n << BigInt(bits)) - 1n ? 0 : 1);
  } else {
    a = IpAddr.of(family, family === 4 ? gen.v4() : gen.v6());
  }
  return { p, a };
}

function blockList(p: IpPrefix): net.BlockList {
  const list = new net.BlockList();
  list.addSubnet(p.addr.toString(), p.length, p.family === 4 ? 'ipv4' : 'ipv6');
  return list;
}

describe('IpPrefix against net.BlockList (property)', () => {
  it('contains, network, last, nth and size', () => {
    for (let i = 0; i < 4000; i++) {
      const { p, a } = prefixAndAddress(g);
      const list = blockList(p);
      const type = p.family === 4 ? 'ipv4' : 'ipv6';
      const what = at(`${p.toString()} ${a.toString()}`);
      expect(p.contains(a), what).toBe(list.check(a.toString(), type));
      const first = p.network();
      const last = p.last();
      expect(list.check(first.toString(), type), what).toBe(true);
      expect(list.check(last.toString(), type), what).toBe(true);
      if (first.value > 0n) expect(list.check(first.prev().toString(), type), what).toBe(false);
      if (last.value < (1n << BigInt(p.bits)) - 1n) expect(list.check(last.next().toString(), type), what).toBe(false);
      expect(last.value - first.value + 1n, what).toBe(p.size);
      expect(p.nth(0).equals(first), what).toBe(true);
      expect(p.nth(p.size - 1n).equals(last), what).toBe(true);
      expect(p.masked().isMasked && p.masked().network().equals(first), what).toBe(true);
      // Families never mix here (BlockList matches ::ffff:a.b.c.d against IPv4 subnets).
      const other = IpAddr.of(p.family === 4 ? 6 : 4, 0n);
      expect(p.contains(other), what).toBe(false);
    }
  });

  it('overlaps, and agrees with brute force in a small space', () => {
    for (let i = 0; i < 4000; i++) {
      const { p } = prefixAndAddress(g);
      const { p: q0 } = prefixAndAddress(g);
      // Half the time a prefix near p, so overlaps happen.
      const q = g.chance(0.5) && q0.family === p.family ? IpPrefix.of(IpAddr.of(p.family, p.addr.value ^ BigInt(g.u32() & 0xff)), g.int(p.bits + 1)) : q0;
      const type = (x: IpPrefix) => (x.family === 4 ? 'ipv4' : 'ipv6');
      const viaBlockList =
        p.family === q.family && (blockList(q).check(p.network().toString(), type(p)) || blockList(p).check(q.network().toString(), type(q)));
      const what = at(`${p.toString()} ${q.toString()}`);
      expect(p.overlaps(q), what).toBe(viaBlockList);
      expect(q.overlaps(p), what).toBe(viaBlockList);
      expect(p.containsPrefix(q), what).toBe(p.family === q.family && p.length <= q.length && blockList(p).check(q.network().toString(), type(q)));
    }
    // Brute force: prefixes inside 10.0.0.0/27, every address listed.
    const addresses = (p: IpPrefix) => new Set(Array.from({ length: Number(p.size) }, (_, k) => p.nth(k).value));
    for (let i = 0; i < 500; i++) {
      const mk = () => IpPrefix.of(IpAddr.of(4, 0x0a000000n + BigInt(g.int(32))), 27 + g.int(6));
      const p = mk();
      const q = mk();
      const shared = [...addresses(p)].some((v) => addresses(q).has(v));
      expect(p.overlaps(q), at(`${p.toString()} ${q.toString()}`)).toBe(shared);
    }
  });

  it('prefix text round-trips to the canonical address and the length', () => {
    for (let i = 0; i < 2000; i++) {
      const { p } = prefixAndAddress(g);
      const text = `${p.family === 4 ? dotted(p.addr.value) : spell6(g, p.addr.value)}/${p.length}`;
      const parsed = IpPrefix.parse(text);
      expect(parsed.equals(p), at(text)).toBe(true);
      expect(parsed.toString(), at(text)).toBe(`${p.addr.toString()}/${p.length}`);
      expect(IpPrefix.parse(parsed.toString()).equals(p), at(text)).toBe(true);
    }
  });
});

describe('IpAddr arithmetic (property)', () => {
  it('offset, next, prev and compare follow the integer', () => {
    for (let i = 0; i < 3000; i++) {
      const family = g.chance(0.5) ? 4 : 6;
      const a = IpAddr.of(family, family === 4 ? g.v4() : g.v6());
      const b = IpAddr.of(family, family === 4 ? g.v4() : g.v6());
      const what = at(`${a.toString()} ${b.toString()}`);
      expect(a.compare(b), what).toBe(a.value < b.value ? -1 : a.value > b.value ? 1 : 0);
      expect(a.equals(b), what).toBe(a.value === b.value);
      const n = BigInt(g.int(1000));
      const max = family === 4 ? 0xffffffffn : (1n << 128n) - 1n;
      if (a.value + n <= max) expect(a.offset(n).offset(-n).equals(a), what).toBe(true);
      else expect(() => a.offset(n), what).toThrow(RangeError);
      if (a.value < max) expect(a.next().prev().equals(a), what).toBe(true);
    }
    expect(IpAddr.parse('255.255.255.254').next().toString()).toBe('255.255.255.255');
    expect(() => IpAddr.parse('255.255.255.255').next()).toThrow(RangeError);
    expect(() => IpAddr.parse('::').prev()).toThrow(RangeError);
    expect(IpAddr.parse('10.0.0.1').compare(IpAddr.parse('::1'))).toBe(-1);
  });
});

describe('IpAddr / IpPrefix examples', () => {
  it('formats IPv6 as RFC 5952 says', () => {
    const cases: Array<[string, string]> = [
      ['::', '::'],
      ['::1', '::1'],
      ['fd00:0:0:0:0:0:0:5', 'fd00::5'],
      ['FD00:1:0:0:1:0:0:0', 'fd00:1:0:0:1::'],
      ['1:0:0:2:0:0:0:3', '1:0:0:2::3'],
      ['1:0:0:2:3:0:0:4', '1::2:3:0:0:4'],
      ['1:0:2:3:4:5:6:7', '1:0:2:3:4:5:6:7'],
      ['2001:DB8:0000:0000:0001::0001', '2001:db8::1:0:0:1'],
      ['::ffff:10.1.2.3', '::ffff:10.1.2.3'],
      ['::ffff:a01:203', '::ffff:10.1.2.3'],
      ['::1.2.3.4', '::102:304'],
      ['64:ff9b::1.2.3.4', '64:ff9b::102:304'],
    ];
    for (const [text, formatted] of cases) expect([text, IpAddr.parse(text).toString()]).toEqual([text, formatted]);
  });

  it('names the problem in its errors', () => {
    const problems: Array<[string, RegExp]> = [
      ['10.0.0.256', /"10.0.0.256" is not an IP address: part 256 is more than 255/],
      ['10.0.0', /has 3/],
      ['10.01.0.1', /part "01" has a leading zero/],
      ['fe80::1%eth0', /zone index \("%eth0"\)/],
      ['1::2::3', /"::" may appear only once/],
      ['12345::', /group "12345" has more than 4 hex digits/],
      ['1:2:3:4:5:6:7', /it has 7 groups; without "::" an IPv6 address has 8/],
      ['localhost', /neither an IPv4 address .* nor an IPv6 address/],
      ['', /it is empty/],
    ];
    for (const [text, message] of problems) {
      expect(() => IpAddr.parse(text)).toThrow(message);
      expect(() => IpAddr.parse(text)).toThrow(AddressSyntaxError);
    }
    expect(() => IpPrefix.parse('10.0.0.0/33')).toThrow(/"10.0.0.0\/33" is not a prefix in CIDR notation .*: prefix length 33 is more than 32, the bits of an IPv4 address/);
    expect(() => IpPrefix.parse('10.0.0.0')).toThrow(/no prefix length/);
    expect(() => IpPrefix.parse('10.0.0.0/x')).toThrow(/prefix length "x" is not a number 0-32/);
    expect(() => IpPrefix.parse('10.0.0.0/24/1')).toThrow(/more than one "\/"/);
    const err = (() => {
      try {
        IpAddr.parse('1.2.3');
      } catch (e) {
        return e as AddressSyntaxError;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(TypeError);
    expect(err?.code).toBe('EADDRSYNTAX');
    expect(err?.text).toBe('1.2.3');
  });

  it('prefixes: network, last, masked, nth, size, bare addresses', () => {
    const p = IpPrefix.parse('10.1.2.3/24');
    expect(p.toString()).toBe('10.1.2.3/24');
    expect(p.isMasked).toBe(false);
    expect(p.network().toString()).toBe('10.1.2.0');
    expect(p.last().toString()).toBe('10.1.2.255');
    expect(p.masked().toString()).toBe('10.1.2.0/24');
    expect(p.nth(1).toString()).toBe('10.1.2.1');
    expect(p.size).toBe(256n);
    expect(() => p.nth(256)).toThrow(RangeError);
    expect(IpPrefix.parse('fd00::5/64').masked().toString()).toBe('fd00::/64');
    expect(IpPrefix.parse('FD00:0:0::/48').toString()).toBe('fd00::/48');
    expect(IpPrefix.parse('10.0.0.1', { bareAddress: true }).toString()).toBe('10.0.0.1/32');
    expect(IpPrefix.parse('::1', { bareAddress: true }).length).toBe(128);
    expect(IpPrefix.parse('0.0.0.0/0').contains(IpAddr.parse('255.1.2.3'))).toBe(true);
    expect(IpPrefix.parse('0.0.0.0/0').contains(IpAddr.parse('::ffff:1.2.3.4'))).toBe(false);
    expect(() => IpPrefix.of(IpAddr.parse('10.0.0.0'), 33)).toThrow(RangeError);
  });

  it('values are immutable and print as text in JSON', () => {
    const a = IpAddr.parse('10.0.0.1');
    expect(Object.isFrozen(a)).toBe(true);
    expect(() => {
      (a as { value: bigint }).value = 5n;
    }).toThrow(TypeError);
    expect(JSON.stringify({ a, p: IpPrefix.parse('fd00::1/64') })).toBe('{"a":"10.0.0.1","p":"fd00::1/64"}');
    expect(IpAddr.parse('::ffff:10.0.0.1').unmap().toString()).toBe('10.0.0.1');
    expect(IpAddr.parse('fd00::1').unmap().toString()).toBe('fd00::1');
  });
});
