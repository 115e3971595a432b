import { isIPv4, isIPv6 } from '../ip-text.js';

/**
 * IP addresses as bigints, plus the few operations the allocator needs. Hand-rolled on
 * node:net rather than ip-num because a CNI process pays for every module it loads (ip-num
 * costs ~25 ms to require here; this file costs nothing measurable) and we need only
 * parse / format / add / compare.
 */

export type Family = 4 | 6;

export interface Address {
  family: Family;
  value: bigint;
}

export interface Cidr {
  family: Family;
  /** The address as written (host bits possibly set). */
  address: bigint;
  prefixLength: number;
}

export function bitsOf(family: Family): number {
  return family === 4 ? 32 : 128;
}

export function parseAddress(text: string): Address | undefined {
  if (isIPv4(text)) {
    let value = 0n;
    for (const part of text.split('.')) value = (value << 8n) | BigInt(Number(part));
    return { family: 4, value };
  }
  if (!isIPv6(text)) return undefined;
  const zone = text.indexOf('%');
  if (zone >= 0) return undefined; // a zone id has no meaning in an allocation pool
  let body = text;
  // An embedded IPv4 tail (::ffff:10.0.0.1) is two hex groups; rewrite it as such.
  const lastColon = body.lastIndexOf(':');
  const tail = body.slice(lastColon + 1);
  if (tail.includes('.')) {
    const v4 = parseAddress(tail);
    if (!v4) return undefined;
    body = `${body.slice(0, lastColon + 1)}${(v4.value >> 16n).toString(16)}:${(v4.value & 0xffffn).toString(16)}`;
  }
  const [head, rest] = body.split('::') as [string, string | undefined];
  const groups = (s: string | undefined): bigint[] => (s ? s.split(':').map((g) => BigInt('0x' + g)) : []);
  const left = groups(head);
  const right = groups(rest);
  const all = rest === undefined ? left : [...left, ...new Array<bigint>(8 - left.length - right.length).fill(0n), ...right];
  let value = 0n;
  for (const group of all) value = (value << 16n) | group;
  return { family: 6, value };
}

export function formatAddress(address: Address): string {
  if (address.family === 4) {
    const v = address.value;
    return [24n, 16n, 8n, 0n].map((shift) => String((v >> shift) & 0xffn)).join('.');
  }
  const groups: number[] = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n) groups.push(Number((address.value >> shift) & 0xffffn));
  // RFC 5952: compress the longest run (of two or more) of zero groups, the first one on a tie.
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
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

export function parseCidr(text: string): Cidr | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const address = parseAddress(text.slice(0, slash));
  const lengthText = text.slice(slash + 1);
  if (!address || !/^\d{1,3}$/.test(lengthText)) return undefined;
  const prefixLength = Number(lengthText);
  if (prefixLength > bitsOf(address.family)) return undefined;
  return { family: address.family, address: address.value, prefixLength };
}

export function hostMask(family: Family, prefixLength: number): bigint {
  return (1n << BigInt(bitsOf(family) - prefixLength)) - 1n;
}

export function networkOf(cidr: Cidr): bigint {
  return cidr.address & ~hostMask(cidr.family, cidr.prefixLength);
}

export function lastOf(cidr: Cidr): bigint {
  return networkOf(cidr) | hostMask(cidr.family, cidr.prefixLength);
}

export function cidrContains(cidr: Cidr, address: Address): boolean {
  return address.family === cidr.family && address.value >= networkOf(cidr) && address.value <= lastOf(cidr);
}

export function formatCidr(cidr: Cidr): string {
  return `${formatAddress({ family: cidr.family, value: cidr.address })}/${cidr.prefixLength}`;
}

/**
 * A fixed-width, sortable text form ("4:0a000005", "6:<32 hex>") used as a store key, so the
 * store's key order is address order and "next used address after X" is one range scan.
 */
export function addressKey(address: Address): string {
  return `${address.family}:${address.value.toString(16).padStart(bitsOf(address.family) / 4, '0')}`;
}

export function addressFromKey(key: string): Address {
  const family = key.startsWith('4:') ? 4 : 6;
  return { family, value: BigInt('0x' + key.slice(2)) };
}
