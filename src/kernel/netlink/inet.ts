/**
 * The kernel layer's edge for addresses: netlink attributes carry raw bytes, callers pass
 * address values (src/addr.ts) or, where they have not been converted, text, which is parsed
 * here once. MAC addresses too (02:aa:bb:cc:dd:ee).
 */
import { IpAddr, IpPrefix } from '../../addr.js';
import { AF_INET, AF_INET6 } from './constants.js';

export type Family = typeof AF_INET | typeof AF_INET6;

/** An address argument as a value: text is parsed (AddressSyntaxError, a TypeError, naming the problem). */
export function toAddr(ip: string | IpAddr): IpAddr {
  return typeof ip === 'string' ? IpAddr.parse(ip) : ip;
}

/** A prefix argument as a value; a bare address in text means the whole address (/32, /128). */
export function toPrefix(cidr: string | IpPrefix): IpPrefix {
  return typeof cidr === 'string' ? IpPrefix.parse(cidr, { bareAddress: true }) : cidr;
}

/** AF_INET or AF_INET6 for an IP family. */
export function afOf(family: 4 | 6): Family {
  return family === 4 ? AF_INET : AF_INET6;
}

export function ipFamily(ip: string | IpAddr): Family {
  return afOf(toAddr(ip).family);
}

export function ipToBytes(ip: string | IpAddr): Buffer {
  return toAddr(ip).toBytes();
}

/** 4 or 16 address bytes as text, through the one formatter (IPv6 in the RFC 5952 form). */
export function bytesToIp(b: Uint8Array): string {
  return IpAddr.fromBytes(b).toString();
}

export function macToBytes(mac: string): Buffer {
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(mac)) throw new TypeError(`"${mac}" is not a MAC address (aa:bb:cc:dd:ee:ff)`);
  return Buffer.from(mac.split(':').map((h) => parseInt(h, 16)));
}

export function bytesToMac(b: Buffer): string {
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}
