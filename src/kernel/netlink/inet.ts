/**
 * Conversions between the text forms users write (10.0.0.1, fd00::1, 10.0.0.0/24,
 * 02:aa:bb:cc:dd:ee) and the raw bytes netlink attributes carry.
 */
import { formatIp, isIPv4, isIPv6, parseIp } from '../../ip-text.js';
import { AF_INET, AF_INET6 } from './constants.js';

export type Family = typeof AF_INET | typeof AF_INET6;

export function ipFamily(ip: string): Family {
  if (isIPv4(ip)) return AF_INET;
  if (isIPv6(ip)) return AF_INET6;
  throw new TypeError(`"${ip}" is not an IPv4 or IPv6 address`);
}

export function ipToBytes(ip: string): Buffer {
  const parsed = parseIp(ip);
  if (!parsed) throw new TypeError(`"${ip}" is not an IPv4 or IPv6 address`);
  return parsed.bytes;
}

/** Formats 4 or 16 address bytes; IPv6 in the RFC 5952 short form (longest zero run as ::). */
export function bytesToIp(b: Buffer): string {
  return formatIp(b);
}

export interface Cidr {
  ip: string;
  prefixLen: number;
  family: Family;
}

/** Parses "10.0.0.1/24" or "fd00::1/64"; a bare address gets the full-length prefix. */
export function parseCidr(text: string): Cidr {
  const slash = text.indexOf('/');
  const ip = slash < 0 ? text : text.slice(0, slash);
  const family = ipFamily(ip);
  const max = family === AF_INET ? 32 : 128;
  const prefixLen = slash < 0 ? max : Number(text.slice(slash + 1));
  if (!Number.isInteger(prefixLen) || prefixLen < 0 || prefixLen > max) {
    throw new TypeError(`"${text}" has an invalid prefix length (0..${max})`);
  }
  return { ip, prefixLen, family };
}

/** The IPv4 broadcast address of ip/prefixLen (host bits all ones). */
export function ipv4Broadcast(ip: string, prefixLen: number): string {
  const n = ipToBytes(ip).readUInt32BE(0);
  const hostMask = prefixLen >= 32 ? 0 : 0xffffffff >>> prefixLen;
  const b = Buffer.alloc(4);
  b.writeUInt32BE((n | hostMask) >>> 0);
  return bytesToIp(b);
}

export function macToBytes(mac: string): Buffer {
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(mac)) throw new TypeError(`"${mac}" is not a MAC address (aa:bb:cc:dd:ee:ff)`);
  return Buffer.from(mac.split(':').map((h) => parseInt(h, 16)));
}

export function bytesToMac(b: Buffer): string {
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}
