import { bigIntToBytes, bytesToBigInt, formatIp, parseIp } from '../ip-text.js';

/**
 * IP addresses as bigints, plus the few operations the allocator needs, on the project's one
 * text/bytes codec (src/ip-text.ts) rather than ip-num: a CNI process pays for every module it
 * loads (ip-num costs ~25 ms to require here) and we need only parse / format / add / compare.
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
  const parsed = parseIp(text);
  return parsed && { family: parsed.family, value: bytesToBigInt(parsed.bytes) };
}

export function formatAddress(address: Address): string {
  return formatIp(bigIntToBytes(address.value, address.family === 4 ? 4 : 16));
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
