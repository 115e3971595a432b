/**
 * Small IP helpers for the DNS server: address bytes, CIDR membership and reverse (PTR) names.
 * Pure functions, no allocation beyond the returned values; the hot path never calls them (the
 * record snapshot precomputes and caches what it needs).
 */
import { isIPv4, parseIp, type IpBytes } from '../ip-text.js';

export type Family = 4 | 6;

export type ParsedAddress = IpBytes;

/** Strips a `/prefix` (CNI results carry `10.0.0.5/24`) and an IPv6 `%zone`. */
export function stripAddress(text: string): string {
  const slash = text.indexOf('/');
  let out = slash >= 0 ? text.slice(0, slash) : text;
  const pct = out.indexOf('%');
  if (pct >= 0) out = out.slice(0, pct);
  if (out.toLowerCase().startsWith('::ffff:') && isIPv4(out.slice(7))) out = out.slice(7);
  return out.trim();
}

export function parseAddress(text: string): ParsedAddress | undefined {
  return parseIp(stripAddress(text));
}

export interface Cidr {
  family: Family;
  bytes: Buffer;
  prefix: number;
}

export function parseCidr(text: string): Cidr | undefined {
  const [addr, len] = text.split('/');
  const parsed = parseAddress(addr ?? '');
  if (!parsed) return undefined;
  const max = parsed.family === 4 ? 32 : 128;
  const prefix = len === undefined ? max : Number(len);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) return undefined;
  return { family: parsed.family, bytes: parsed.bytes, prefix };
}

export function cidrContains(cidr: Cidr, addr: ParsedAddress): boolean {
  if (cidr.family !== addr.family) return false;
  let bits = cidr.prefix;
  for (let i = 0; bits > 0; i += 1, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if (((cidr.bytes[i] ?? 0) & mask) !== ((addr.bytes[i] ?? 0) & mask)) return false;
  }
  return true;
}

/** `1.2.3.4` -> `4.3.2.1.in-addr.arpa`; IPv6 -> nibble form under `ip6.arpa`. Lower case. */
export function reverseName(addr: ParsedAddress): string {
  if (addr.family === 4) return `${addr.bytes[3]}.${addr.bytes[2]}.${addr.bytes[1]}.${addr.bytes[0]}.in-addr.arpa`;
  const nibbles: string[] = [];
  for (let i = 15; i >= 0; i -= 1) {
    const b = addr.bytes[i] ?? 0;
    nibbles.push((b & 0xf).toString(16), (b >> 4).toString(16));
  }
  return `${nibbles.join('.')}.ip6.arpa`;
}

/** Lower-cases and drops one trailing dot: the form every map in the snapshot is keyed by. */
export function normalizeName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}
