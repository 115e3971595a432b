/**
 * Neighbour entries (ARP/NDP: IP -> MAC on a link) and bridge FDB entries (MAC -> port, or on a
 * VXLAN device MAC -> remote VTEP) over rtnetlink RTM_NEWNEIGH/DELNEIGH/GETNEIGH. The VXLAN
 * overlay programs both: a neighbour per remote container IP and an FDB entry per remote MAC,
 * plus 00:00:00:00:00:00 entries (one per peer, appended) for flooding.
 */
import { NetlinkError } from './errors.js';
import { attr, AttrSet, type Attr } from './netlink/codec.js';
import {
  AF_BRIDGE,
  AF_UNSPEC,
  NDA_DST,
  NDA_LLADDR,
  NDA_MASTER,
  NDA_PORT,
  NDA_PROTOCOL,
  NDA_VLAN,
  NDA_VNI,
  NDMSG_LEN,
  NLM_F_APPEND,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  NTF_EXT_LEARNED,
  NTF_MASTER,
  NTF_SELF,
  NUD,
  RTM_DELNEIGH,
  RTM_GETNEIGH,
  RTM_NEWNEIGH,
  type NeighbourState,
} from './netlink/constants.js';
import { bytesToIp, bytesToMac, ipFamily, ipToBytes, macToBytes, type Family } from './netlink/inet.js';
import { linkIndex } from './link.js';
import { linkRefText, op, type LinkRef, type Rtnl } from './rtnl.js';

/** add fails if the entry exists; replace overwrites it; append adds another destination (FDB). */
export type NeighbourWriteMode = 'add' | 'replace' | 'append';

const MODE_FLAGS: Record<NeighbourWriteMode, number> = {
  add: NLM_F_CREATE | NLM_F_EXCL,
  replace: NLM_F_CREATE | NLM_F_REPLACE,
  append: NLM_F_CREATE | NLM_F_APPEND,
};

export function encodeNdmsg(family: number, index: number, state: number, flags: number): Buffer {
  const b = Buffer.alloc(NDMSG_LEN);
  b.writeUInt8(family, 0);
  b.writeInt32LE(index, 4);
  b.writeUInt16LE(state, 8);
  b.writeUInt8(flags, 10);
  return b; // ndm_type stays 0 (unspecified)
}

function stateBits(state: NeighbourState | number): number {
  return typeof state === 'number' ? state : NUD[state];
}

export interface NeighbourSpec {
  dev: LinkRef;
  ip: string;
  /** Omit only when deleting. */
  mac?: string;
  state?: NeighbourState;
  /** Owner tag (NDA_PROTOCOL, 0-255): who made the entry, as a route's protocol says. */
  protocol?: number;
}

export interface Neighbour {
  index: number;
  family: number;
  ip: string | undefined;
  mac: string | undefined;
  state: number;
  flags: number;
  permanent: boolean;
  /** NDA_PROTOCOL; undefined when the entry carries none. */
  protocol: number | undefined;
}

export interface FdbSpec {
  dev: LinkRef;
  mac: string;
  /** Remote VTEP address (VXLAN devices only). */
  dst?: string;
  vni?: number;
  port?: number;
  vlan?: number;
  /** Where the entry lives: the device's own table (`self`, default; VXLAN) or its bridge's (`master`). */
  on?: 'self' | 'master';
  state?: NeighbourState;
  /**
   * NTF_EXT_LEARNED (`extern_learn`): the entry was made by a control plane. The bridge never
   * ages such an entry or lets learning override it, and a dump reports the flag back, so it
   * also tells a controller's entries from anyone else's.
   */
  externLearned?: boolean;
}

export interface FdbEntry {
  index: number;
  mac: string;
  dst: string | undefined;
  vni: number | undefined;
  vlan: number | undefined;
  masterIndex: number | undefined;
  state: number;
  flags: number;
  self: boolean;
  master: boolean;
  permanent: boolean;
  externLearned: boolean;
}

/** Header and attributes of an IP neighbour request (exported for unit tests). */
export function neighbourMessage(index: number, spec: NeighbourSpec): { header: Buffer; attrs: Attr[] } {
  const attrs: Attr[] = [attr.bytes(NDA_DST, ipToBytes(spec.ip))];
  if (spec.mac !== undefined) attrs.push(attr.bytes(NDA_LLADDR, macToBytes(spec.mac)));
  if (spec.protocol !== undefined) attrs.push(attr.u8(NDA_PROTOCOL, spec.protocol));
  return { header: encodeNdmsg(ipFamily(spec.ip), index, stateBits(spec.state ?? 'permanent'), 0), attrs };
}

/** Header and attributes of a bridge FDB request (exported for unit tests). */
export function fdbMessage(index: number, spec: FdbSpec): { header: Buffer; attrs: Attr[] } {
  const attrs: Attr[] = [attr.bytes(NDA_LLADDR, macToBytes(spec.mac))];
  if (spec.dst !== undefined) attrs.push(attr.bytes(NDA_DST, ipToBytes(spec.dst)));
  if (spec.vlan !== undefined) attrs.push(attr.u16(NDA_VLAN, spec.vlan));
  if (spec.port !== undefined) attrs.push(attr.be16(NDA_PORT, spec.port));
  if (spec.vni !== undefined) attrs.push(attr.u32(NDA_VNI, spec.vni));
  const flags = (spec.on === 'master' ? NTF_MASTER : NTF_SELF) | (spec.externLearned ? NTF_EXT_LEARNED : 0);
  return { header: encodeNdmsg(AF_BRIDGE, index, stateBits(spec.state ?? 'permanent'), flags), attrs };
}

export function setNeighbour(nl: Rtnl, spec: NeighbourSpec, mode: NeighbourWriteMode = 'replace'): void {
  if (spec.mac === undefined) throw new TypeError(`neighbour ${spec.ip}: a MAC address is required`);
  const { header, attrs } = neighbourMessage(linkIndex(nl, spec.dev), spec);
  nl.sock.request({ type: RTM_NEWNEIGH, flags: MODE_FLAGS[mode], header, attrs }, op(`${mode} neighbour ${spec.ip} on link`, linkRefText(spec.dev)));
}

export function deleteNeighbour(nl: Rtnl, spec: NeighbourSpec): void {
  const { header, attrs } = neighbourMessage(linkIndex(nl, spec.dev), { dev: spec.dev, ip: spec.ip });
  nl.sock.request({ type: RTM_DELNEIGH, flags: 0, header, attrs }, op(`delete neighbour ${spec.ip} on link`, linkRefText(spec.dev)));
}

export function setFdbEntry(nl: Rtnl, spec: FdbSpec, mode: NeighbourWriteMode = 'replace'): void {
  const { header, attrs } = fdbMessage(linkIndex(nl, spec.dev), spec);
  const label = spec.dst ? `${spec.mac} dst ${spec.dst}` : spec.mac;
  nl.sock.request({ type: RTM_NEWNEIGH, flags: MODE_FLAGS[mode], header, attrs }, op(`${mode} fdb entry ${label} on link`, linkRefText(spec.dev)));
}

/** Deletes an FDB entry; with `dst` on a VXLAN device only that remote of the MAC goes. */
export function deleteFdbEntry(nl: Rtnl, spec: FdbSpec): void {
  const { header, attrs } = fdbMessage(linkIndex(nl, spec.dev), spec);
  const label = spec.dst ? `${spec.mac} dst ${spec.dst}` : spec.mac;
  nl.sock.request({ type: RTM_DELNEIGH, flags: 0, header, attrs }, op(`delete fdb entry ${label} on link`, linkRefText(spec.dev)));
}

/** Runs a delete and reports false when the entry or its link was already gone. */
export function ignoreMissing(fn: () => void): boolean {
  try {
    fn();
    return true;
  } catch (err) {
    if (err instanceof NetlinkError && (err.errnoName === 'ENOENT' || err.errnoName === 'ENODEV')) return false;
    if (err instanceof Error && 'code' in err && err.code === 'ELINKNOTFOUND') return false;
    throw err;
  }
}

export function decodeNeighbour(payload: Buffer): Neighbour {
  const a = new AttrSet(payload.subarray(NDMSG_LEN));
  const dst = a.get(NDA_DST);
  const ll = a.get(NDA_LLADDR);
  const state = payload.readUInt16LE(8);
  return {
    family: payload.readUInt8(0),
    index: payload.readInt32LE(4),
    ip: dst ? bytesToIp(dst) : undefined,
    mac: ll && ll.length === 6 ? bytesToMac(ll) : undefined,
    state,
    flags: payload.readUInt8(10),
    permanent: (state & NUD.permanent) !== 0,
    protocol: a.u8(NDA_PROTOCOL),
  };
}

export function decodeFdbEntry(payload: Buffer): FdbEntry {
  const a = new AttrSet(payload.subarray(NDMSG_LEN));
  const dst = a.get(NDA_DST);
  const ll = a.get(NDA_LLADDR);
  const state = payload.readUInt16LE(8);
  const flags = payload.readUInt8(10);
  const masterIndex = a.u32(NDA_MASTER);
  return {
    index: payload.readInt32LE(4),
    mac: ll ? bytesToMac(ll) : '',
    dst: dst ? bytesToIp(dst) : undefined,
    vni: a.u32(NDA_VNI),
    vlan: a.u16(NDA_VLAN),
    masterIndex,
    state,
    flags,
    self: (flags & NTF_SELF) !== 0,
    // The bridge reports entries of its own table with NDA_MASTER, not with NTF_MASTER.
    master: (flags & NTF_MASTER) !== 0 || (!(flags & NTF_SELF) && masterIndex !== undefined),
    permanent: (state & NUD.permanent) !== 0,
    externLearned: (flags & NTF_EXT_LEARNED) !== 0,
  };
}

function dumpNeigh(nl: Rtnl, family: number, what: string): Buffer[] {
  const replies = nl.sock.dump({ type: RTM_GETNEIGH, flags: 0, header: encodeNdmsg(family, 0, 0, 0) }, what);
  return replies.filter((m) => m.type === RTM_NEWNEIGH).map((m) => m.payload);
}

/** IP neighbours (ARP/NDP) in the handle's netns, optionally of one link and family. */
export function listNeighbours(nl: Rtnl, filter: { dev?: LinkRef; family?: Family } = {}): Neighbour[] {
  const index = filter.dev === undefined ? undefined : linkIndex(nl, filter.dev);
  return dumpNeigh(nl, filter.family ?? AF_UNSPEC, `failed to list neighbours in ${nl.where}`)
    .map(decodeNeighbour)
    .filter((n) => n.family !== AF_BRIDGE && (index === undefined || n.index === index));
}

/** Bridge FDB entries in the handle's netns, optionally of one device. */
export function listFdbEntries(nl: Rtnl, filter: { dev?: LinkRef } = {}): FdbEntry[] {
  const index = filter.dev === undefined ? undefined : linkIndex(nl, filter.dev);
  return dumpNeigh(nl, AF_BRIDGE, `failed to list fdb entries in ${nl.where}`)
    .map(decodeFdbEntry)
    .filter((e) => index === undefined || e.index === index);
}
