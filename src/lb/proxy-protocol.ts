/**
 * PROXY protocol headers (HAProxy's spec, versions 1 and 2) that the proxy data path writes
 * to a backend first, so the backend learns the real client address (the kernel path keeps it
 * without a header; a user-space proxy opens its own connection and loses it otherwise).
 */
import { isIPv4, isIPv6 } from 'node:net';
import { IpAddr } from '../addr.js';

export interface ProxiedConnection {
  srcAddr: string;
  srcPort: number;
  dstAddr: string;
  dstPort: number;
}

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

/** `::ffff:1.2.3.4` (a dual-stack socket's view of an IPv4 peer) as 1.2.3.4. */
function unmapped(a: string): string {
  return a.startsWith('::ffff:') && isIPv4(a.slice(7)) ? a.slice(7) : a;
}

export function proxyHeaderV1(c: ProxiedConnection): Buffer {
  const src = unmapped(c.srcAddr);
  const dst = unmapped(c.dstAddr);
  if (isIPv4(src) && isIPv4(dst)) return Buffer.from(`PROXY TCP4 ${src} ${dst} ${c.srcPort} ${c.dstPort}\r\n`);
  if (isIPv6(src) && isIPv6(dst)) return Buffer.from(`PROXY TCP6 ${src} ${dst} ${c.srcPort} ${c.dstPort}\r\n`);
  return Buffer.from('PROXY UNKNOWN\r\n');
}

export function proxyHeaderV2(c: ProxiedConnection, protocol: 'tcp' | 'udp' = 'tcp'): Buffer {
  const src = unmapped(c.srcAddr);
  const dst = unmapped(c.dstAddr);
  const v4 = isIPv4(src) && isIPv4(dst);
  const v6 = isIPv6(src) && isIPv6(dst);
  if (!v4 && !v6) {
    // LOCAL command, no address block: the backend uses the connection's own addresses.
    return Buffer.concat([V2_SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])]);
  }
  const addrLen = v4 ? 12 : 36;
  const head = Buffer.from([0x21, (v4 ? 0x10 : 0x20) | (protocol === 'tcp' ? 0x01 : 0x02), 0, addrLen]);
  const body = Buffer.alloc(addrLen);
  const s = IpAddr.parse(src).toBytes();
  const d = IpAddr.parse(dst).toBytes();
  s.copy(body, 0);
  d.copy(body, s.length);
  body.writeUInt16BE(c.srcPort, 2 * s.length);
  body.writeUInt16BE(c.dstPort, 2 * s.length + 2);
  return Buffer.concat([V2_SIGNATURE, head, body]);
}
