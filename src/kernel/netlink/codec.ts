/**
 * Netlink wire format: the 16-byte nlmsghdr, the family header that follows it, and the
 * type-length-value attributes after that, each padded to 4 bytes. Host byte order is
 * little-endian on every platform we run on (x86_64, arm64); only a few attributes (ports) are
 * big-endian and say so at their call sites.
 */
import {
  NLA_F_NESTED,
  NLA_HDRLEN,
  NLA_TYPE_MASK,
  NLMSG_ALIGNTO,
  NLMSG_HDRLEN,
  NLMSGERR_ATTR_MSG,
  NLMSGERR_ATTR_OFFS,
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
} from './constants.js';

export function align(len: number): number {
  return (len + NLMSG_ALIGNTO - 1) & ~(NLMSG_ALIGNTO - 1);
}

/** One attribute to encode: a leaf with a byte value, or a nest of further attributes. */
export type Attr = { type: number; value: Buffer } | { type: number; nested: Attr[] };

/** Constructors for the attribute value types rtnetlink uses. */
export const attr = {
  bytes: (type: number, value: Buffer): Attr => ({ type, value }),
  u8: (type: number, v: number): Attr => ({ type, value: Buffer.from([v & 0xff]) }),
  u16: (type: number, v: number): Attr => {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(v);
    return { type, value: b };
  },
  /** Network byte order u16 (UDP ports). */
  be16: (type: number, v: number): Attr => {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(v);
    return { type, value: b };
  },
  u32: (type: number, v: number): Attr => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    return { type, value: b };
  },
  s32: (type: number, v: number): Attr => {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    return { type, value: b };
  },
  /** NUL-terminated string, as the kernel's NLA_STRING/NLA_NUL_STRING policies expect. */
  str: (type: number, s: string): Attr => ({ type, value: Buffer.from(`${s}\0`, 'utf8') }),
  flag: (type: number): Attr => ({ type, value: Buffer.alloc(0) }),
  /** A nest. `NLA_F_NESTED` is set on it: newer kernel policies (bridge PROTINFO) require it. */
  nested: (type: number, children: Attr[]): Attr => ({ type: type | NLA_F_NESTED, nested: children }),
  /**
   * A nest without NLA_F_NESTED, for the few places where the kernel parses the payload as a
   * nest but old policies were written before the flag existed; it accepts both there.
   */
  plainNest: (type: number, children: Attr[]): Attr => ({ type, nested: children }),
};

export function attrsLength(attrs: readonly Attr[]): number {
  let len = 0;
  for (const a of attrs) len += align(NLA_HDRLEN + attrPayloadLength(a));
  return len;
}

function attrPayloadLength(a: Attr): number {
  return 'nested' in a ? attrsLength(a.nested) : a.value.length;
}

/** Writes `attrs` into `buf` at `offset`; returns the offset after the last (padded) attribute. */
export function writeAttrs(buf: Buffer, offset: number, attrs: readonly Attr[]): number {
  let off = offset;
  for (const a of attrs) {
    const payload = attrPayloadLength(a);
    buf.writeUInt16LE(NLA_HDRLEN + payload, off);
    buf.writeUInt16LE(a.type, off + 2);
    if ('nested' in a) writeAttrs(buf, off + NLA_HDRLEN, a.nested);
    else a.value.copy(buf, off + NLA_HDRLEN);
    off += align(NLA_HDRLEN + payload);
  }
  return off;
}

export function encodeAttrs(attrs: readonly Attr[]): Buffer {
  const buf = Buffer.alloc(attrsLength(attrs));
  writeAttrs(buf, 0, attrs);
  return buf;
}

export interface OutgoingMessage {
  type: number;
  flags: number;
  /** The family header (ifinfomsg, ifaddrmsg, rtmsg, ndmsg), already encoded. */
  header: Buffer;
  attrs?: readonly Attr[];
}

/** Encodes one complete netlink message. Padding bytes are zero (Buffer.alloc). */
export function encodeMessage(msg: OutgoingMessage, seq: number, pid = 0): Buffer {
  const headerLen = align(msg.header.length);
  const total = NLMSG_HDRLEN + headerLen + attrsLength(msg.attrs ?? []);
  const buf = Buffer.alloc(total);
  buf.writeUInt32LE(total, 0);
  buf.writeUInt16LE(msg.type, 4);
  buf.writeUInt16LE(msg.flags, 6);
  buf.writeUInt32LE(seq >>> 0, 8);
  buf.writeUInt32LE(pid >>> 0, 12);
  msg.header.copy(buf, NLMSG_HDRLEN);
  writeAttrs(buf, NLMSG_HDRLEN + headerLen, msg.attrs ?? []);
  return buf;
}

export interface IncomingMessage {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  /** Everything after the nlmsghdr: family header + attributes (a view, not a copy). */
  payload: Buffer;
}

/** Splits one datagram into its messages. Throws on a length field that does not fit. */
export function parseMessages(buf: Buffer): IncomingMessage[] {
  const out: IncomingMessage[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= buf.length) {
    const len = buf.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || off + len > buf.length) {
      throw new Error(`malformed netlink message: length ${len} at offset ${off} of ${buf.length}`);
    }
    out.push({
      type: buf.readUInt16LE(off + 4),
      flags: buf.readUInt16LE(off + 6),
      seq: buf.readUInt32LE(off + 8),
      pid: buf.readUInt32LE(off + 12),
      payload: buf.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align(len);
  }
  return out;
}

/**
 * Decoded attributes of one level. Types are stored without the NESTED/BYTEORDER bits; a type
 * that occurs more than once keeps every occurrence (`all`), `get` returns the first.
 */
export class AttrSet {
  private readonly byType = new Map<number, Buffer[]>();

  constructor(buf: Buffer) {
    let off = 0;
    while (off + NLA_HDRLEN <= buf.length) {
      const len = buf.readUInt16LE(off);
      if (len < NLA_HDRLEN || off + len > buf.length) break; // truncated tail: stop, keep what parsed
      const type = buf.readUInt16LE(off + 2) & NLA_TYPE_MASK;
      const list = this.byType.get(type) ?? [];
      list.push(buf.subarray(off + NLA_HDRLEN, off + len));
      this.byType.set(type, list);
      off += align(len);
    }
  }

  has(type: number): boolean {
    return this.byType.has(type);
  }
  get(type: number): Buffer | undefined {
    return this.byType.get(type)?.[0];
  }
  all(type: number): Buffer[] {
    return this.byType.get(type) ?? [];
  }
  types(): number[] {
    return [...this.byType.keys()];
  }
  u8(type: number): number | undefined {
    const b = this.get(type);
    return b && b.length >= 1 ? b.readUInt8(0) : undefined;
  }
  u16(type: number): number | undefined {
    const b = this.get(type);
    return b && b.length >= 2 ? b.readUInt16LE(0) : undefined;
  }
  be16(type: number): number | undefined {
    const b = this.get(type);
    return b && b.length >= 2 ? b.readUInt16BE(0) : undefined;
  }
  u32(type: number): number | undefined {
    const b = this.get(type);
    return b && b.length >= 4 ? b.readUInt32LE(0) : undefined;
  }
  s32(type: number): number | undefined {
    const b = this.get(type);
    return b && b.length >= 4 ? b.readInt32LE(0) : undefined;
  }
  /** A string attribute, without its NUL terminator. */
  str(type: number): string | undefined {
    const b = this.get(type);
    if (!b) return undefined;
    const nul = b.indexOf(0);
    return b.toString('utf8', 0, nul < 0 ? b.length : nul);
  }
  nested(type: number): AttrSet | undefined {
    const b = this.get(type);
    return b ? new AttrSet(b) : undefined;
  }
}

export interface DecodedError {
  /** Positive errno; 0 means "success" (a plain ACK). */
  errno: number;
  /** The extended-ack text (NLMSGERR_ATTR_MSG) when the kernel sent one. */
  message?: string;
  /** Offset of the offending attribute in our request (NLMSGERR_ATTR_OFFS), when sent. */
  offset?: number;
}

/**
 * Decodes an NLMSG_ERROR payload: `int error; struct nlmsghdr msg;` followed by either the
 * whole request (no NLM_F_CAPPED) or just its header, then — if NLM_F_ACK_TLVS — TLVs carrying
 * the kernel's explanation.
 */
export function decodeError(msg: Pick<IncomingMessage, 'flags' | 'payload'>): DecodedError {
  const p = msg.payload;
  if (p.length < 4) throw new Error('malformed netlink error: payload shorter than 4 bytes');
  const errno = Math.abs(p.readInt32LE(0)); // the kernel sends -errno; abs avoids a -0 for ACKs
  const out: DecodedError = { errno };
  if (!(msg.flags & NLM_F_ACK_TLVS) || p.length < 4 + NLMSG_HDRLEN) return out;
  const echoedLen = msg.flags & NLM_F_CAPPED ? NLMSG_HDRLEN : align(p.readUInt32LE(4));
  const tlvs = new AttrSet(p.subarray(Math.min(p.length, 4 + echoedLen)));
  const text = tlvs.str(NLMSGERR_ATTR_MSG);
  if (text) out.message = text;
  const offs = tlvs.u32(NLMSGERR_ATTR_OFFS);
  if (offs !== undefined) out.offset = offs;
  return out;
}
