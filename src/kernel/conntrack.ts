/**
 * Connection tracking entries over ctnetlink (NETLINK_NETFILTER, subsystem CTNETLINK): list and
 * delete. shoal-portmap needs it because a UDP "connection" that was tracked before a port was
 * published (or while another container held it) keeps its old NAT decision for as long as
 * packets keep coming, black-holing the newly published port.
 *
 * Why not the `conntrack` CLI: DESIGN allows `nft` as the one exec, the tool is not installed
 * here, and a dump + delete is a few dozen lines on the synchronous socket we already have.
 *
 * Deletion dumps the table of one family and deletes the matching entries one by one, by their
 * original tuple (and zone), as the reference tools do. We deliberately never send a DELETE
 * without a tuple: the kernel treats that as "flush", and an ignored filter attribute on an
 * older kernel would flush every connection of the host.
 */
import { NetlinkError } from './errors.js';
import { attr, AttrSet, type Attr } from './netlink/codec.js';
import { AF_INET, AF_INET6 } from './netlink/constants.js';
import { bytesToIp, ipToBytes } from './netlink/inet.js';
import { NetlinkSocket } from './netlink/socket.js';
import { withNetns } from './netns.js';

export const NETLINK_NETFILTER = 12;
const NFNL_SUBSYS_CTNETLINK = 1;
const IPCTNL_MSG_CT_GET = 1;
const IPCTNL_MSG_CT_DELETE = 2;
const ENOENT = 2;

const CTA_TUPLE_ORIG = 1;
const CTA_TUPLE_REPLY = 2;
const CTA_ZONE = 18;
const CTA_TUPLE_IP = 1;
const CTA_TUPLE_PROTO = 2;
const CTA_IP_V4_SRC = 1;
const CTA_IP_V4_DST = 2;
const CTA_IP_V6_SRC = 3;
const CTA_IP_V6_DST = 4;
const CTA_PROTO_NUM = 1;
const CTA_PROTO_SRC_PORT = 2;
const CTA_PROTO_DST_PORT = 3;

export const IPPROTO = { tcp: 6, udp: 17, sctp: 132 } as const;

export interface ConntrackTuple {
  src: string;
  dst: string;
  /** IP protocol number (6 tcp, 17 udp, 132 sctp). */
  proto: number;
  srcPort?: number;
  dstPort?: number;
}

export interface ConntrackEntry {
  family: 4 | 6;
  orig: ConntrackTuple;
  reply?: ConntrackTuple;
  zone: number;
}

export interface ConntrackFilter {
  family: 4 | 6;
  proto: number;
  /** Original destination port (the published host port). */
  origDstPort?: number;
  /** Original destination address; any when undefined. */
  origDst?: string;
  /** Reply source address: where a DNAT sent the flow (a load balancer's backend); any when undefined. */
  replySrc?: string;
}

const msgType = (m: number) => (NFNL_SUBSYS_CTNETLINK << 8) | m;

/** struct nfgenmsg { u8 family; u8 version; __be16 res_id }. */
export function nfgenmsg(family: 4 | 6): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt8(family === 4 ? AF_INET : AF_INET6, 0);
  return b;
}

/** CTA_TUPLE_* attributes of one tuple (exported for unit tests). */
export function tupleAttrs(type: number, family: 4 | 6, t: ConntrackTuple): Attr {
  const [srcType, dstType] = family === 4 ? [CTA_IP_V4_SRC, CTA_IP_V4_DST] : [CTA_IP_V6_SRC, CTA_IP_V6_DST];
  const proto: Attr[] = [attr.u8(CTA_PROTO_NUM, t.proto)];
  if (t.srcPort !== undefined) proto.push(attr.be16(CTA_PROTO_SRC_PORT, t.srcPort));
  if (t.dstPort !== undefined) proto.push(attr.be16(CTA_PROTO_DST_PORT, t.dstPort));
  return attr.nested(type, [
    attr.nested(CTA_TUPLE_IP, [attr.bytes(srcType, ipToBytes(t.src)), attr.bytes(dstType, ipToBytes(t.dst))]),
    attr.nested(CTA_TUPLE_PROTO, proto),
  ]);
}

/** The attributes of an IPCTNL_MSG_CT_DELETE for one entry (exported for unit tests). */
export function deleteAttrs(e: ConntrackEntry): Attr[] {
  const attrs = [tupleAttrs(CTA_TUPLE_ORIG, e.family, e.orig)];
  if (e.zone !== 0) attrs.push(attr.be16(CTA_ZONE, e.zone));
  return attrs;
}

function decodeTuple(set: AttrSet | undefined): ConntrackTuple | undefined {
  const ip = set?.nested(CTA_TUPLE_IP);
  const proto = set?.nested(CTA_TUPLE_PROTO);
  if (!ip || !proto) return undefined;
  const src = ip.get(CTA_IP_V4_SRC) ?? ip.get(CTA_IP_V6_SRC);
  const dst = ip.get(CTA_IP_V4_DST) ?? ip.get(CTA_IP_V6_DST);
  if (!src || !dst) return undefined;
  const t: ConntrackTuple = { src: bytesToIp(src), dst: bytesToIp(dst), proto: proto.u8(CTA_PROTO_NUM) ?? 0 };
  const sp = proto.be16(CTA_PROTO_SRC_PORT);
  const dp = proto.be16(CTA_PROTO_DST_PORT);
  if (sp !== undefined) t.srcPort = sp;
  if (dp !== undefined) t.dstPort = dp;
  return t;
}

/** One IPCTNL_MSG_CT_NEW message of a dump (payload = nfgenmsg + attributes). */
export function decodeConntrack(payload: Buffer): ConntrackEntry | undefined {
  const family = payload.readUInt8(0) === AF_INET6 ? 6 : 4;
  const attrs = new AttrSet(payload.subarray(4));
  const orig = decodeTuple(attrs.nested(CTA_TUPLE_ORIG));
  if (!orig) return undefined;
  const entry: ConntrackEntry = { family, orig, zone: attrs.be16(CTA_ZONE) ?? 0 };
  const reply = decodeTuple(attrs.nested(CTA_TUPLE_REPLY));
  if (reply) entry.reply = reply;
  return entry;
}

export function matchesFilter(e: ConntrackEntry, f: ConntrackFilter): boolean {
  if (e.family !== f.family || e.orig.proto !== f.proto) return false;
  if (f.origDstPort !== undefined && e.orig.dstPort !== f.origDstPort) return false;
  if (f.origDst !== undefined && e.orig.dst !== bytesToIp(ipToBytes(f.origDst))) return false;
  if (f.replySrc !== undefined && e.reply?.src !== bytesToIp(ipToBytes(f.replySrc))) return false;
  return true;
}

function openSocket(netns?: string): NetlinkSocket {
  const open = () => NetlinkSocket.open(undefined, NETLINK_NETFILTER);
  return netns ? withNetns(netns, open) : open();
}

function dumpWith(sock: NetlinkSocket, family: 4 | 6): ConntrackEntry[] {
  const msgs = sock.dump({ type: msgType(IPCTNL_MSG_CT_GET), flags: 0, header: nfgenmsg(family) }, `failed to list conntrack entries "ipv${family}"`);
  return msgs.map((m) => decodeConntrack(m.payload)).filter((e): e is ConntrackEntry => e !== undefined);
}

/** Every tracked connection of one family (in the host netns, or in `netns`). */
export function listConntrack(family: 4 | 6, opts: { netns?: string } = {}): ConntrackEntry[] {
  const sock = openSocket(opts.netns);
  try {
    return dumpWith(sock, family);
  } finally {
    sock.close();
  }
}

/**
 * Deletes the entries matching any of `filters`; returns how many were deleted. An entry that
 * vanished between dump and delete (ENOENT) is not an error.
 */
export function deleteConntrack(filters: readonly ConntrackFilter[], opts: { netns?: string } = {}): number {
  if (filters.length === 0) return 0;
  const sock = openSocket(opts.netns);
  let deleted = 0;
  try {
    for (const family of [4, 6] as const) {
      const mine = filters.filter((f) => f.family === family);
      if (mine.length === 0) continue;
      for (const e of dumpWith(sock, family)) {
        if (!mine.some((f) => matchesFilter(e, f))) continue;
        const what = `failed to delete conntrack entry "${e.orig.src}:${e.orig.srcPort ?? ''} -> ${e.orig.dst}:${e.orig.dstPort ?? ''}"`;
        try {
          sock.request({ type: msgType(IPCTNL_MSG_CT_DELETE), flags: 0, header: nfgenmsg(family), attrs: deleteAttrs(e) }, what);
          deleted += 1;
        } catch (err) {
          if (!(err instanceof NetlinkError && err.errno === ENOENT)) throw err;
        }
      }
    }
  } finally {
    sock.close();
  }
  return deleted;
}
