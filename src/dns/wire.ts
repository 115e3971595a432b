/**
 * The hot-path wire format: parse a query (header, one question, EDNS0 OPT) and build responses
 * by copying the client's question bytes and appending pre-encoded resource records. No
 * dns-packet here: local answers never go through a generic encoder (see README, "Performance").
 * Every read is bounds-checked; a malformed message yields a ParseFailure, never an exception.
 */
import { QTYPE, RCODE, type Question } from './types.js';

export const FLAG_QR = 0x8000;
export const FLAG_AA = 0x0400;
export const FLAG_TC = 0x0200;
export const FLAG_RD = 0x0100;
export const FLAG_RA = 0x0080;
export const FLAG_CD = 0x0010;

/** Payload size Shoal advertises in its own OPT records (the DNS Flag Day 2020 value). */
export const ADVERTISED_UDP_SIZE = 1232;

export interface Edns {
  udpSize: number;
  version: number;
  dnssecOk: boolean;
}

export interface ParsedQuery {
  id: number;
  flags: number;
  question: Question;
  /** Offset just past the question's QCLASS: bytes 12..questionEnd are echoed in the answer. */
  questionEnd: number;
  edns: Edns | undefined;
}

/** `drop`: not worth an answer (too short, a response); `formerr`/`notimp`: answer with rcode. */
export interface ParseFailure {
  fail: 'drop' | 'formerr' | 'notimp';
  reason: string;
}

export function isParseFailure(v: ParsedQuery | ParseFailure): v is ParseFailure {
  return (v as ParseFailure).fail !== undefined;
}

const drop = (reason: string): ParseFailure => ({ fail: 'drop', reason });
const formerr = (reason: string): ParseFailure => ({ fail: 'formerr', reason });

/** Returns the offset after a (possibly compressed) name, or -1 when it runs off the end. */
export function skipName(msg: Buffer, start: number): number {
  let off = start;
  for (let guard = 0; guard < 128; guard += 1) {
    if (off >= msg.length) return -1;
    const len = msg[off] as number;
    if (len === 0) return off + 1;
    if ((len & 0xc0) === 0xc0) return off + 2 <= msg.length ? off + 2 : -1;
    if (len & 0xc0) return -1;
    off += len + 1;
  }
  return -1;
}

export function parseQuery(msg: Buffer): ParsedQuery | ParseFailure {
  if (msg.length < 12) return drop('shorter than a header');
  const flags = msg.readUInt16BE(2);
  if (flags & FLAG_QR) return drop('not a query');
  const opcode = (flags >> 11) & 0xf;
  if (opcode !== 0) return { fail: 'notimp', reason: `opcode ${opcode}` };
  if (msg.readUInt16BE(4) !== 1) return formerr('question count is not 1');
  // Question name: uncompressed labels, <= 255 bytes.
  let off = 12;
  const labels: string[] = [];
  let opaque = false;
  for (;;) {
    if (off >= msg.length) return formerr('question name runs past the end');
    const len = msg[off] as number;
    if (len === 0) {
      off += 1;
      break;
    }
    if (len > 63) return formerr('compressed or oversized label in question');
    if (off + 1 + len > msg.length) return formerr('label runs past the end');
    let label = '';
    for (let i = off + 1; i <= off + len; i += 1) {
      let c = msg[i] as number;
      if (c >= 0x41 && c <= 0x5a) c += 0x20;
      else if (c === 0x2e || c === 0x5c) opaque = true;
      label += String.fromCharCode(c);
    }
    labels.push(label);
    off += len + 1;
    if (off - 12 > 255) return formerr('question name longer than 255 bytes');
  }
  if (off + 4 > msg.length) return formerr('question type/class missing');
  const type = msg.readUInt16BE(off);
  const qclass = msg.readUInt16BE(off + 2);
  const questionEnd = off + 4;
  const edns = findEdns(msg, questionEnd);
  if (edns === null) return formerr('malformed records after the question');
  return {
    id: msg.readUInt16BE(0),
    flags,
    question: { name: labels.join('.'), type, class: qclass, opaque },
    questionEnd,
    edns,
  };
}

/** Walks answer/authority/additional records after the question; null when malformed. */
function findEdns(msg: Buffer, start: number): Edns | undefined | null {
  const total = msg.readUInt16BE(6) + msg.readUInt16BE(8) + msg.readUInt16BE(10);
  const additionalFrom = msg.readUInt16BE(6) + msg.readUInt16BE(8);
  let off = start;
  let edns: Edns | undefined;
  for (let i = 0; i < total; i += 1) {
    const nameEnd = skipName(msg, off);
    if (nameEnd < 0 || nameEnd + 10 > msg.length) return null;
    const type = msg.readUInt16BE(nameEnd);
    const rdlen = msg.readUInt16BE(nameEnd + 8);
    if (nameEnd + 10 + rdlen > msg.length) return null;
    if (type === QTYPE.OPT && i >= additionalFrom) {
      if (edns || nameEnd !== off + 1) return null; // two OPTs, or OPT not owned by the root
      edns = {
        udpSize: msg.readUInt16BE(nameEnd + 2),
        version: msg[nameEnd + 5] as number,
        dnssecOk: (msg.readUInt16BE(nameEnd + 6) & 0x8000) !== 0,
      };
    }
    off = nameEnd + 10 + rdlen;
  }
  return edns;
}

/** Largest UDP response this client accepts (RFC 6891: below 512 is treated as 512). */
export function udpLimit(q: ParsedQuery, cap = 65535): number {
  if (!q.edns) return 512;
  return Math.min(Math.max(512, q.edns.udpSize), cap);
}

/** One resource record owned by the question name (compression pointer to offset 12). */
export function encodeRecord(type: number, ttl: number, rdata: Buffer): Buffer {
  const rr = Buffer.allocUnsafe(12 + rdata.length);
  rr.writeUInt16BE(0xc00c, 0);
  rr.writeUInt16BE(type, 2);
  rr.writeUInt16BE(1, 4);
  rr.writeUInt32BE(ttl >>> 0, 6);
  rr.writeUInt16BE(rdata.length, 10);
  rdata.copy(rr, 12);
  return rr;
}

/** Uncompressed wire form of a dotted name (for PTR targets). */
export function encodeName(name: string): Buffer {
  const parts = name.split('.').filter((p) => p.length > 0);
  const out = Buffer.alloc(parts.reduce((n, p) => n + Buffer.byteLength(p) + 1, 1));
  let off = 0;
  for (const p of parts) {
    const len = out.write(p, off + 1);
    out[off] = len;
    off += len + 1;
  }
  out[off] = 0;
  return out;
}

function writeOpt(buf: Buffer, off: number, extRcode: number): void {
  buf[off] = 0; // root owner
  buf.writeUInt16BE(QTYPE.OPT, off + 1);
  buf.writeUInt16BE(ADVERTISED_UDP_SIZE, off + 3);
  buf[off + 5] = extRcode;
  buf[off + 6] = 0; // version
  buf.writeUInt16BE(0, off + 7); // flags (no DNSSEC)
  buf.writeUInt16BE(0, off + 9); // rdlen
}

function responseFlags(q: ParsedQuery, rcode: number, authoritative: boolean, truncated: boolean): number {
  let flags = FLAG_QR | FLAG_RA | (q.flags & (FLAG_RD | FLAG_CD)) | (rcode & 0xf);
  if (authoritative) flags |= FLAG_AA;
  if (truncated) flags |= FLAG_TC;
  return flags;
}

/**
 * Builds a response from the query's own question bytes plus `records`. When the whole answer
 * does not fit in `limit` bytes, it keeps the records that fit and sets TC (so clients that do
 * not retry over TCP, such as older musl, still get a usable partial answer).
 */
export function buildResponse(q: ParsedQuery, msg: Buffer, rcode: number, records: readonly Buffer[], limit: number, authoritative = true): Buffer {
  const badvers = q.edns !== undefined && q.edns.version > 0;
  if (badvers) {
    rcode = RCODE.BADVERS;
    records = [];
  }
  const optLen = q.edns ? 11 : 0;
  let size = q.questionEnd + optLen;
  let count = 0;
  let truncated = false;
  for (const rr of records) {
    if (size + rr.length > limit) {
      truncated = true;
      break;
    }
    size += rr.length;
    count += 1;
  }
  const buf = Buffer.allocUnsafe(size);
  buf.writeUInt16BE(q.id, 0);
  buf.writeUInt16BE(responseFlags(q, rcode, authoritative, truncated), 2);
  buf.writeUInt16BE(1, 4);
  buf.writeUInt16BE(count, 6);
  buf.writeUInt16BE(0, 8);
  buf.writeUInt16BE(optLen ? 1 : 0, 10);
  msg.copy(buf, 12, 12, q.questionEnd);
  let off = q.questionEnd;
  for (let i = 0; i < count; i += 1) {
    const rr = records[i] as Buffer;
    rr.copy(buf, off);
    off += rr.length;
  }
  if (optLen) writeOpt(buf, off, rcode >> 4);
  return buf;
}

/** Header-only reply (FORMERR, NOTIMP) for a message we could not parse past its header. */
export function buildHeaderOnly(msg: Buffer, rcode: number): Buffer {
  const buf = Buffer.alloc(12);
  buf.writeUInt16BE(msg.readUInt16BE(0), 0);
  const qflags = msg.readUInt16BE(2);
  buf.writeUInt16BE(FLAG_QR | FLAG_RA | (qflags & (0xf << 11)) | (qflags & FLAG_RD) | (rcode & 0xf), 2);
  return buf;
}

/**
 * Adapts an upstream's whole response to this client: its id, its question spelling (0x20
 * case), OPT only if the client sent one, and TC when it exceeds `limit`.
 */
export function adaptRawResponse(q: ParsedQuery, msg: Buffer, raw: Buffer, optStart: number | undefined, limit: number): Buffer {
  let out: Buffer;
  if (!q.edns && optStart !== undefined && raw.readUInt16BE(10) > 0) {
    out = Buffer.from(raw.subarray(0, optStart));
    out.writeUInt16BE(raw.readUInt16BE(10) - 1, 10);
  } else {
    out = Buffer.from(raw);
  }
  out.writeUInt16BE(q.id, 0);
  const upstreamFlags = out.readUInt16BE(2);
  out.writeUInt16BE((upstreamFlags & ~(FLAG_RD | FLAG_CD)) | (q.flags & (FLAG_RD | FLAG_CD)), 2);
  // The cached answer was fetched with the lower-cased question; echo the client's spelling.
  if (out.length >= q.questionEnd && out.readUInt16BE(4) === 1) {
    let same = true;
    for (let i = 12; i < q.questionEnd && same; i += 1) {
      same = ((out[i] as number) | 0x20) === ((msg[i] as number) | 0x20);
    }
    if (same) msg.copy(out, 12, 12, q.questionEnd);
  }
  if (out.length <= limit) return out;
  const tc = buildResponse(q, msg, out.readUInt16BE(2) & 0xf, [], limit, false);
  tc.writeUInt16BE(tc.readUInt16BE(2) | FLAG_TC, 2);
  return tc;
}

/** Copy of the question section (bytes 12..end) with ASCII letters of the name lower-cased. */
export function lowerQuestion(msg: Buffer, questionEnd: number): Buffer {
  const out = Buffer.allocUnsafe(questionEnd - 12);
  msg.copy(out, 0, 12, questionEnd);
  for (let i = 0; i < out.length - 4; i += 1) {
    const c = out[i] as number;
    if (c >= 0x41 && c <= 0x5a) out[i] = c + 0x20;
  }
  return out;
}
