/**
 * Conversions between the text forms users write (10.0.0.1, fd00::1, 10.0.0.0/24,
 * 02:aa:bb:cc:dd:ee) and the raw bytes netlink attributes carry.
 */
import { isIPv4, isIPv6 } from '../../ip-text.js';
import { AF_INET, AF_INET6 } from './constants.js';

export type Family = typeof AF_INET | typeof AF_INET6;

export function ipFamily(ip: string): Family {
  if (isIPv4(ip)) return AF_INET;
  if (isIPv6(ip)) return AF_INET6;
  throw new TypeError(`"${ip}" is not an IPv4 or IPv6 address`);
}

export function ipToBytes(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  if (!isIPv6(ip)) throw new TypeError(`"${ip}" is not an IPv4 or IPv6 address`);
  let text = ip;
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two hex groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4?.[1]) {
    const b = ipToBytes(v4[1]);
    text = `${text.slice(0, -v4[1].length)}${b.readUInt16BE(0).toString(16)}:${b.readUInt16BE(2).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const zeros = tail === undefined ? 0 : 8 - headGroups.length - tailGroups.length;
  const groups = [...headGroups, ...Array<string>(zeros).fill('0'), ...tailGroups];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** Formats 4 or 16 address bytes; IPv6 in the RFC 5952 short form (longest zero run as ::). */
export function bytesToIp(b: Buffer): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  if (b.length !== 16) throw new TypeError(`an IP address is 4 or 16 bytes, not ${b.length}`);
  const groups = Array.from({ length: 8 }, (_, i) => b.readUInt16BE(i * 2));
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i += 1;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j += 1;
    if (j - i > bestLen && j - i > 1) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
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
