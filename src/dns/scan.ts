/**
 * Reads what the cache needs out of an upstream response without decoding it fully: where each
 * record's TTL sits (to age them on a hit), the TTL to cache for (RFC 2308 for negatives: the
 * smaller of the SOA's TTL and its MINIMUM), and where a trailing OPT record starts.
 */
import { skipName } from './wire.js';
import { QTYPE, RCODE } from './types.js';

export interface ResponseScan {
  rcode: number;
  truncated: boolean;
  answerCount: number;
  /** Offsets of every non-OPT record's TTL field. */
  ttlOffsets: number[];
  /** Smallest TTL over all non-OPT records, or undefined when there are none. */
  minTtl: number | undefined;
  /** min(SOA TTL, SOA MINIMUM) of the first SOA in the authority section. */
  negativeTtl: number | undefined;
  /** Start of the OPT record when it is the last record of the message. */
  optStart: number | undefined;
}

export function scanResponse(msg: Buffer): ResponseScan | undefined {
  if (msg.length < 12) return undefined;
  const flags = msg.readUInt16BE(2);
  const qd = msg.readUInt16BE(4);
  const an = msg.readUInt16BE(6);
  const ns = msg.readUInt16BE(8);
  const ar = msg.readUInt16BE(10);
  let off = 12;
  for (let i = 0; i < qd; i += 1) {
    off = skipName(msg, off);
    if (off < 0 || off + 4 > msg.length) return undefined;
    off += 4;
  }
  const ttlOffsets: number[] = [];
  let minTtl: number | undefined;
  let negativeTtl: number | undefined;
  let optStart: number | undefined;
  const total = an + ns + ar;
  for (let i = 0; i < total; i += 1) {
    const start = off;
    const nameEnd = skipName(msg, off);
    if (nameEnd < 0 || nameEnd + 10 > msg.length) return undefined;
    const type = msg.readUInt16BE(nameEnd);
    const ttl = msg.readUInt32BE(nameEnd + 4);
    const rdlen = msg.readUInt16BE(nameEnd + 8);
    const rdata = nameEnd + 10;
    if (rdata + rdlen > msg.length) return undefined;
    if (type === QTYPE.OPT) {
      if (i === total - 1) optStart = start;
    } else {
      ttlOffsets.push(nameEnd + 4);
      minTtl = minTtl === undefined ? ttl : Math.min(minTtl, ttl);
      if (type === QTYPE.SOA && i >= an && i < an + ns && negativeTtl === undefined) {
        const mname = skipName(msg, rdata);
        const rname = mname < 0 ? -1 : skipName(msg, mname);
        if (rname >= 0 && rname + 20 <= rdata + rdlen) negativeTtl = Math.min(ttl, msg.readUInt32BE(rname + 16));
      }
    }
    off = rdata + rdlen;
  }
  return { rcode: flags & 0xf, truncated: (flags & 0x0200) !== 0, answerCount: an, ttlOffsets, minTtl, negativeTtl, optStart };
}

/** Seconds a response may be cached for, or 0 when it must not be (errors, no TTL basis). */
export function cacheTtl(scan: ResponseScan, maxTtl: number, maxNegativeTtl: number): number {
  if (scan.truncated) return 0;
  const negative = scan.rcode === RCODE.NXDOMAIN || (scan.rcode === RCODE.NOERROR && scan.answerCount === 0);
  if (negative) return scan.negativeTtl === undefined ? 0 : Math.min(scan.negativeTtl, maxNegativeTtl);
  if (scan.rcode !== RCODE.NOERROR) return 0;
  return scan.minTtl === undefined ? 0 : Math.min(scan.minTtl, maxTtl);
}
