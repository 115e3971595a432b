/**
 * IP addresses and prefixes as values (DESIGN §4.11), the one model for the whole project:
 *
 * - `IpAddr`: a family (4 or 6) and the address as an unsigned integer (a bigint of 32 or 128
 *   bits), with the arithmetic IPAM needs (compare, offset, next, prev).
 * - `IpPrefix`: an address (host bits as written) and a prefix length, with network(), last(),
 *   contains(), overlaps(), size and nth().
 * - One parser, at the edge: `IpAddr.parse` / `IpPrefix.parse` turn text into values and throw
 *   an AddressSyntaxError naming the problem ("part 256 is more than 255"); `tryParse` returns
 *   undefined instead, `problem` returns only the message. isIP / isIPv4 / isIPv6 answer with
 *   node:net's semantics (a zone index counts) from the same scanner.
 * - One formatter: `IpAddr#toString` (dotted quad; IPv6 as RFC 5952 says: lower case, no
 *   leading zeros, the longest run of two or more zero groups as "::", the first on a tie, and an
 *   IPv4-mapped address as ::ffff:a.b.c.d), used by `IpPrefix#toString` and everything that
 *   prints an address.
 *
 * Values are frozen; operations return new values. No imports: a CNI plugin loads this module on
 * every run, and node:net would cost ~6 ms there (ip-num ~25 ms). test/unit/addr.test.ts checks
 * it against node:net with random inputs.
 */

export type Family = 4 | 6;

const BITS = { 4: 32, 6: 128 } as const;
const MAX = { 4: 0xffff_ffffn, 6: (1n << 128n) - 1n } as const;

/** Text that is not an address (or prefix); `problem` says why, without the text. */
export class AddressSyntaxError extends TypeError {
  readonly code = 'EADDRSYNTAX';
  readonly text: string;
  readonly problem: string;

  constructor(text: string, problem: string, what: string) {
    super(`${JSON.stringify(text)} is not ${what}: ${problem}`);
    this.name = 'AddressSyntaxError';
    this.text = text;
    this.problem = problem;
  }
}

const WHAT_ADDR = 'an IP address';
const WHAT_PREFIX = 'a prefix in CIDR notation (like 10.1.0.0/24 or fd00::/64)';

// ---- the scanner: text -> (family, value) or the problem ---------------------------------------

interface Scanned {
  family: Family;
  value: bigint;
}

const DECIMAL = /^[0-9]+$/;
const HEX = /^[0-9a-fA-F]+$/;
/** A zone index as node:net accepts one after "%". */
const ZONE = /^[0-9a-zA-Z.:-]+$/;

function scan4(text: string): bigint | string {
  const parts = text.split('.');
  if (parts.length !== 4) return `an IPv4 address has 4 parts separated by ".", this has ${parts.length}`;
  let value = 0;
  for (const part of parts) {
    if (part === '') return 'it has an empty part';
    if (part.length > 3 || !DECIMAL.test(part)) return `part "${part}" is not a number 0-255`;
    if (part.length > 1 && part.charCodeAt(0) === 48) return `part "${part}" has a leading zero`;
    const octet = Number(part);
    if (octet > 255) return `part ${part} is more than 255`;
    value = value * 256 + octet;
  }
  return BigInt(value);
}

/** Appends the 16-bit groups of `part` (colon-separated; an IPv4 tail counts as two) to `out`. */
function groups6(part: string, v4TailAllowed: boolean, out: number[]): string | undefined {
  if (part === '') return undefined;
  const pieces = part.split(':');
  for (let i = 0; i < pieces.length; i++) {
    const g = pieces[i]!;
    if (g.includes('.')) {
      if (!v4TailAllowed || i !== pieces.length - 1) return `an IPv4 part ("${g}") may only end the address`;
      const v4 = scan4(g);
      if (typeof v4 === 'string') return `its IPv4 part: ${v4}`;
      out.push(Number(v4 >> 16n), Number(v4 & 0xffffn));
      continue;
    }
    if (g === '') return 'it has an empty group (a single ":" at the start or the end, or ":::")';
    if (g.length > 4) return `group "${g}" has more than 4 hex digits`;
    if (!HEX.test(g)) return `group "${g}" is not hexadecimal`;
    out.push(parseInt(g, 16));
  }
  return undefined;
}

function scan6(text: string): bigint | string {
  const gap = text.indexOf('::');
  if (gap !== -1 && text.indexOf('::', gap + 1) !== -1) return '"::" may appear only once';
  const left: number[] = [];
  const right: number[] = [];
  const problem = gap === -1 ? groups6(text, true, left) : (groups6(text.slice(0, gap), false, left) ?? groups6(text.slice(gap + 2), true, right));
  if (problem) return problem;
  const n = left.length + right.length;
  if (gap === -1 && n !== 8) return `it has ${n} groups; without "::" an IPv6 address has 8`;
  if (gap !== -1 && n > 7) return `it has ${n} groups besides "::", which stands for at least one more; 8 is the most`;
  let value = 0n;
  for (const g of left) value = (value << 16n) | BigInt(g);
  value <<= BigInt(16 * (8 - left.length));
  let low = 0n;
  for (const g of right) low = (low << 16n) | BigInt(g);
  return value | low;
}

/** The address `text` spells, or the problem with it. No zone index (it has no value form). */
function scan(text: string): Scanned | string {
  if (text === '') return 'it is empty';
  if (text.includes(':')) {
    const pct = text.indexOf('%');
    if (pct !== -1) return `it has a zone index ("${text.slice(pct)}"), which has no place here`;
    const v6 = scan6(text);
    return typeof v6 === 'string' ? v6 : { family: 6, value: v6 };
  }
  if (!/^[0-9.]+$/.test(text)) return 'it is neither an IPv4 address (like 10.1.2.3) nor an IPv6 address (like fd00::1)';
  const v4 = scan4(text);
  return typeof v4 === 'string' ? v4 : { family: 4, value: v4 };
}

// ---- node:net's predicates, on the same scanner -------------------------------------------------

export function isIPv4(text: string): boolean {
  return !text.includes(':') && typeof scan(text) !== 'string';
}

/** As net.isIPv6: a zone index ("fe80::1%eth0") is accepted. */
export function isIPv6(text: string): boolean {
  let base = text;
  const pct = text.indexOf('%');
  if (pct !== -1) {
    if (!ZONE.test(text.slice(pct + 1))) return false;
    base = text.slice(0, pct);
  }
  return base.includes(':') && typeof scan6(base) !== 'string';
}

/** 4, 6, or 0 like net.isIP. */
export function isIP(text: string): 0 | 4 | 6 {
  if (isIPv4(text)) return 4;
  if (isIPv6(text)) return 6;
  return 0;
}

// ---- the formatter ------------------------------------------------------------------------------

function format(family: Family, value: bigint): string {
  if (family === 4) {
    const n = Number(value);
    return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
  }
  // RFC 5952 §5: an IPv4-mapped address keeps its IPv4 part dotted (as inet_ntop writes it).
  if (value >> 32n === 0xffffn) return `::ffff:${format(4, value & MAX[4])}`;
  const groups = new Array<number>(8);
  let v = value;
  for (let i = 7; i >= 0; i--) {
    groups[i] = Number(v & 0xffffn);
    v >>= 16n;
  }
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number) => groups.slice(from, to).map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLength, 8)}`;
}

// ---- values -------------------------------------------------------------------------------------

// The classes' constructors, for this module only (set in their static blocks): values made here
// are in range by construction, and no other module can make one without the checks.
let newAddr: (family: Family, value: bigint) => IpAddr;
let newPrefix: (addr: IpAddr, length: number) => IpPrefix;

export class IpAddr {
  readonly family: Family;
  /** The address as an unsigned integer: 32 bits for IPv4, 128 for IPv6. */
  readonly value: bigint;

  private constructor(family: Family, value: bigint) {
    this.family = family;
    this.value = value;
    Object.freeze(this);
  }

  static {
    newAddr = (family, value) => new IpAddr(family, value);
  }

  /** The address of `family` whose integer is `value`; RangeError outside the family's space. */
  static of(family: Family, value: bigint): IpAddr {
    if (value < 0n || value > MAX[family]) throw new RangeError(`${value} is not an IPv${family} address (0 to ${MAX[family]})`);
    return new IpAddr(family, value);
  }

  /** 4 or 16 bytes in network order (what netlink, sockets and DNS records carry). */
  static fromBytes(bytes: Uint8Array): IpAddr {
    const b = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (b.length === 4) return new IpAddr(4, BigInt(b.readUInt32BE(0)));
    if (b.length === 16) return new IpAddr(6, (b.readBigUInt64BE(0) << 64n) | b.readBigUInt64BE(8));
    throw new TypeError(`an IP address is 4 or 16 bytes, not ${b.length}`);
  }

  /** Text to an address; AddressSyntaxError naming the problem. A zone index is refused. */
  static parse(text: string): IpAddr {
    const s = scan(text);
    if (typeof s === 'string') throw new AddressSyntaxError(text, s, WHAT_ADDR);
    return new IpAddr(s.family, s.value);
  }

  static tryParse(text: string): IpAddr | undefined {
    const s = scan(text);
    return typeof s === 'string' ? undefined : new IpAddr(s.family, s.value);
  }

  /** Why `text` is not an address (e.g. 'part 256 is more than 255'); undefined when it is one. */
  static problem(text: string): string | undefined {
    const s = scan(text);
    return typeof s === 'string' ? s : undefined;
  }

  /** 32 or 128. */
  get bits(): 32 | 128 {
    return BITS[this.family];
  }

  toBytes(): Buffer {
    if (this.family === 4) {
      const b = Buffer.allocUnsafe(4);
      b.writeUInt32BE(Number(this.value), 0);
      return b;
    }
    const b = Buffer.allocUnsafe(16);
    b.writeBigUInt64BE(this.value >> 64n, 0);
    b.writeBigUInt64BE(this.value & 0xffff_ffff_ffff_ffffn, 8);
    return b;
  }

  equals(other: IpAddr): boolean {
    return this.family === other.family && this.value === other.value;
  }

  /** Total order: every IPv4 address before every IPv6 one, then by value. */
  compare(other: IpAddr): -1 | 0 | 1 {
    if (this.family !== other.family) return this.family < other.family ? -1 : 1;
    return this.value < other.value ? -1 : this.value > other.value ? 1 : 0;
  }

  /** The address `n` further on (or back, for a negative `n`); RangeError past the family's ends. */
  offset(n: bigint | number): IpAddr {
    const value = this.value + BigInt(n);
    if (value < 0n || value > MAX[this.family]) throw new RangeError(`there is no IPv${this.family} address ${n} away from ${this.toString()}`);
    return new IpAddr(this.family, value);
  }

  next(): IpAddr {
    return this.offset(1n);
  }

  prev(): IpAddr {
    return this.offset(-1n);
  }

  /** The IPv4 address of an IPv4-mapped IPv6 one (::ffff:10.1.2.3 -> 10.1.2.3); else itself. */
  unmap(): IpAddr {
    return this.family === 6 && this.value >> 32n === 0xffffn ? new IpAddr(4, this.value & MAX[4]) : this;
  }

  /** The canonical text: dotted quad, or IPv6 in the RFC 5952 form. */
  toString(): string {
    return format(this.family, this.value);
  }

  toJSON(): string {
    return this.toString();
  }
}

export class IpPrefix {
  /** The address as written: host bits may be set (10.1.0.5/24 is an interface's address). */
  readonly addr: IpAddr;
  /** Prefix length: 0-32 for IPv4, 0-128 for IPv6. */
  readonly length: number;

  private constructor(addr: IpAddr, length: number) {
    this.addr = addr;
    this.length = length;
    Object.freeze(this);
  }

  static {
    newPrefix = (addr, length) => new IpPrefix(addr, length);
  }

  static of(addr: IpAddr, length: number): IpPrefix {
    if (!Number.isInteger(length) || length < 0 || length > addr.bits) throw new RangeError(`${length} is not an IPv${addr.family} prefix length (0-${addr.bits})`);
    return new IpPrefix(addr, length);
  }

  /**
   * "10.1.0.5/24" or "fd00::/64" to a prefix (host bits kept); AddressSyntaxError naming the
   * problem. With `bareAddress`, an address without "/" is a whole-address prefix (/32, /128).
   */
  static parse(text: string, opts?: { bareAddress?: boolean }): IpPrefix {
    const p = scanPrefix(text, opts?.bareAddress === true);
    if (typeof p === 'string') throw new AddressSyntaxError(text, p, WHAT_PREFIX);
    return p;
  }

  static tryParse(text: string, opts?: { bareAddress?: boolean }): IpPrefix | undefined {
    const p = scanPrefix(text, opts?.bareAddress === true);
    return typeof p === 'string' ? undefined : p;
  }

  static problem(text: string, opts?: { bareAddress?: boolean }): string | undefined {
    const p = scanPrefix(text, opts?.bareAddress === true);
    return typeof p === 'string' ? p : undefined;
  }

  get family(): Family {
    return this.addr.family;
  }

  get bits(): 32 | 128 {
    return this.addr.bits;
  }

  /** How many addresses the prefix spans. */
  get size(): bigint {
    return 1n << BigInt(this.addr.bits - this.length);
  }

  private get hostMask(): bigint {
    return (1n << BigInt(this.addr.bits - this.length)) - 1n;
  }

  /** True when no host bit is set (10.1.0.0/24, not 10.1.0.5/24). */
  get isMasked(): boolean {
    return (this.addr.value & this.hostMask) === 0n;
  }

  /** The first address (host bits zero). */
  network(): IpAddr {
    return this.isMasked ? this.addr : newAddr(this.family, this.addr.value & ~this.hostMask);
  }

  /** The last address (host bits one): for IPv4, the broadcast address. */
  last(): IpAddr {
    return newAddr(this.family, this.addr.value | this.hostMask);
  }

  /** The same prefix with the host bits cleared (10.1.0.5/24 -> 10.1.0.0/24). */
  masked(): IpPrefix {
    return this.isMasked ? this : new IpPrefix(this.network(), this.length);
  }

  /** The `n`-th address of the prefix, 0 being the network address; RangeError outside it. */
  nth(n: bigint | number): IpAddr {
    const i = BigInt(n);
    if (i < 0n || i >= this.size) throw new RangeError(`${this.masked().toString()} has no address number ${i} (it has ${this.size})`);
    return newAddr(this.family, (this.addr.value & ~this.hostMask) + i);
  }

  contains(addr: IpAddr): boolean {
    if (addr.family !== this.family) return false;
    const host = this.hostMask;
    return (addr.value | host) === (this.addr.value | host);
  }

  /** Every address of `other` is in this prefix. */
  containsPrefix(other: IpPrefix): boolean {
    return other.length >= this.length && this.contains(other.addr);
  }

  /** The two share at least one address (prefixes nest or are disjoint, so: one contains the other). */
  overlaps(other: IpPrefix): boolean {
    return other.family === this.family && (other.length < this.length ? other.contains(this.addr) : this.contains(other.addr));
  }

  equals(other: IpPrefix): boolean {
    return this.length === other.length && this.addr.equals(other.addr);
  }

  /** "address/length", the address as written, in the canonical text. */
  toString(): string {
    return `${this.addr.toString()}/${this.length}`;
  }

  toJSON(): string {
    return this.toString();
  }
}

function scanPrefix(text: string, bareAddress: boolean): IpPrefix | string {
  const slash = text.indexOf('/');
  if (slash === -1) {
    if (!bareAddress) {
      const problem = IpAddr.problem(text);
      return problem ?? 'it has no prefix length (like "/24")';
    }
    const s = scan(text);
    if (typeof s === 'string') return s;
    return newPrefix(newAddr(s.family, s.value), BITS[s.family]);
  }
  const s = scan(text.slice(0, slash));
  if (typeof s === 'string') return s;
  const lengthText = text.slice(slash + 1);
  if (lengthText.includes('/')) return 'it has more than one "/"';
  if (lengthText === '' || lengthText.length > 3 || !DECIMAL.test(lengthText)) return `prefix length "${lengthText}" is not a number 0-${BITS[s.family]}`;
  const length = Number(lengthText);
  if (length > BITS[s.family]) return `prefix length ${length} is more than ${BITS[s.family]}, the bits of an IPv${s.family} address`;
  return newPrefix(newAddr(s.family, s.value), length);
}
