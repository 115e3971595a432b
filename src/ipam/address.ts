import { IpAddr, IpPrefix, type Family } from '../addr.js';

/**
 * IPAM's addresses are the project's address values (src/addr.ts): IpAddr carries the family
 * and the address as a bigint, which is what the allocator's interval arithmetic works on. This
 * module adds only the store's key form.
 */

export type { Family };
export type Address = IpAddr;

/**
 * A fixed-width, sortable text form ("4:0a000005", "6:<32 hex>") used as a store key, so the
 * store's key order is address order and "next used address after X" is one range scan.
 */
export function addressKey(address: { family: Family; value: bigint }): string {
  return `${address.family}:${address.value.toString(16).padStart(address.family === 4 ? 8 : 32, '0')}`;
}

export function addressFromKey(key: string): IpAddr {
  return IpAddr.of(key.startsWith('4:') ? 4 : 6, BigInt('0x' + key.slice(2)));
}

/**
 * The one parser and formatter under the names src/network/attachments.ts and
 * src/network/manage.ts import (both are being changed elsewhere; they can switch to
 * src/addr.ts directly afterwards). Not for new code.
 */
export function parseCidr(text: string): IpPrefix | undefined {
  return IpPrefix.tryParse(text);
}

export function formatAddress(address: IpAddr): string {
  return address.toString();
}
