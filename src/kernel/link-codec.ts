/**
 * Pure encoding and decoding of link messages (ifinfomsg + IFLA_* attributes), including the
 * per-kind IFLA_LINKINFO data for veth, bridge, vxlan, macvlan and ipvlan. No I/O here, so the
 * exact bytes are unit-tested; link.ts does the requests.
 */
import { attr, AttrSet, encodeAttrs, type Attr } from './netlink/codec.js';
import {
  IFF_LOWER_UP,
  IFF_UP,
  IFINFOMSG_LEN,
  IFLA_ADDRESS,
  IFLA_GROUP,
  IFLA_BRPORT_ISOLATED,
  IFLA_BRPORT_LEARNING,
  IFLA_BRPORT_MODE,
  IFLA_BRPORT_NEIGH_SUPPRESS,
  IFLA_BRPORT_STATE,
  IFLA_BR_VLAN_FILTERING,
  IFLA_IFNAME,
  IFLA_INFO_DATA,
  IFLA_INFO_KIND,
  IFLA_INFO_SLAVE_DATA,
  IFLA_INFO_SLAVE_KIND,
  IFLA_IPVLAN_FLAGS,
  IFLA_IPVLAN_MODE,
  IFLA_LINK,
  IFLA_LINKINFO,
  IFLA_LINK_NETNSID,
  IFLA_MACVLAN_MODE,
  IFLA_MASTER,
  IFLA_MTU,
  IFLA_NET_NS_FD,
  IFLA_OPERSTATE,
  IFLA_VXLAN_GROUP,
  IFLA_VXLAN_GROUP6,
  IFLA_VXLAN_ID,
  IFLA_VXLAN_LEARNING,
  IFLA_VXLAN_PROXY,
  IFLA_VXLAN_LINK,
  IFLA_VXLAN_LOCAL,
  IFLA_VXLAN_LOCAL6,
  IFLA_VXLAN_PORT,
  IFLA_VXLAN_TTL,
  IPVLAN_FLAG,
  IPVLAN_MODE,
  MACVLAN_MODE,
  VETH_INFO_PEER,
  type IpvlanFlag,
  type IpvlanMode,
  type MacvlanMode,
} from './netlink/constants.js';
import { bytesToIp, bytesToMac, ipFamily, ipToBytes, macToBytes } from './netlink/inet.js';
import { AF_INET } from './netlink/constants.js';

export interface IfinfoHeader {
  family?: number;
  index?: number;
  flags?: number;
  /** Which bits of `flags` the request changes. */
  change?: number;
}

export function encodeIfinfomsg(h: IfinfoHeader = {}): Buffer {
  const b = Buffer.alloc(IFINFOMSG_LEN);
  b.writeUInt8(h.family ?? 0, 0);
  b.writeUInt16LE(0, 2); // ifi_type: set by the kernel
  b.writeInt32LE(h.index ?? 0, 4);
  b.writeUInt32LE((h.flags ?? 0) >>> 0, 8);
  b.writeUInt32LE((h.change ?? 0) >>> 0, 12);
  return b;
}

/** The veth peer end. `netnsFd` creates it directly inside that netns, under `name`. */
export interface VethPeerInfo {
  name: string;
  netnsFd?: number;
  mtu?: number;
  mac?: string;
}

export interface VxlanInfo {
  vni: number;
  /** Local (source) underlay address, IPv4 or IPv6. */
  local?: string;
  /** Multicast group for BUM traffic; omit for unicast-only (FDB-driven) overlays. */
  group?: string;
  /** UDP destination port; the kernel's default is 8472 when omitted, IANA's is 4789. */
  port?: number;
  /** MAC learning from received packets; overlays programmed from a store turn it off. */
  learning?: boolean;
  /**
   * ARP/ND reduction: the device answers ARP requests and neighbour solicitations for addresses
   * in its own neighbour table instead of sending them. Fixed at creation (no changelink).
   */
  proxy?: boolean;
  /** ifindex of the underlay device. */
  underlayIndex?: number;
  ttl?: number;
}

export type LinkInfoSpec =
  | { kind: 'bridge'; vlanFiltering?: boolean }
  | { kind: 'veth'; peer: VethPeerInfo }
  | ({ kind: 'vxlan' } & VxlanInfo)
  | { kind: 'macvlan'; mode: MacvlanMode }
  | { kind: 'ipvlan'; mode: IpvlanMode; flag?: IpvlanFlag };

/** Attributes every kind of link may carry at creation. */
export function commonLinkAttrs(o: { name?: string; mtu?: number; mac?: string; masterIndex?: number; parentIndex?: number; group?: number }): Attr[] {
  const attrs: Attr[] = [];
  if (o.name !== undefined) attrs.push(attr.str(IFLA_IFNAME, o.name));
  if (o.mtu !== undefined) attrs.push(attr.u32(IFLA_MTU, o.mtu));
  if (o.mac !== undefined) attrs.push(attr.bytes(IFLA_ADDRESS, macToBytes(o.mac)));
  if (o.masterIndex !== undefined) attrs.push(attr.u32(IFLA_MASTER, o.masterIndex));
  if (o.parentIndex !== undefined) attrs.push(attr.u32(IFLA_LINK, o.parentIndex));
  if (o.group !== undefined) attrs.push(attr.u32(IFLA_GROUP, o.group));
  return attrs;
}

/** IFLA_LINKINFO { IFLA_INFO_KIND, IFLA_INFO_DATA { kind-specific } }. */
export function linkInfoAttr(spec: LinkInfoSpec): Attr {
  const data = linkInfoData(spec);
  const children: Attr[] = [attr.str(IFLA_INFO_KIND, spec.kind)];
  if (data) children.push(data);
  return attr.nested(IFLA_LINKINFO, children);
}

function linkInfoData(spec: LinkInfoSpec): Attr | undefined {
  switch (spec.kind) {
    case 'bridge':
      return spec.vlanFiltering === undefined ? undefined : attr.nested(IFLA_INFO_DATA, [attr.u8(IFLA_BR_VLAN_FILTERING, spec.vlanFiltering ? 1 : 0)]);
    case 'veth':
      // VETH_INFO_PEER is not a plain nest: its payload is a whole ifinfomsg followed by the
      // peer's own IFLA_* attributes (name, netns fd, ...).
      return attr.nested(IFLA_INFO_DATA, [attr.bytes(VETH_INFO_PEER, vethPeerPayload(spec.peer))]);
    case 'vxlan':
      return attr.nested(IFLA_INFO_DATA, vxlanAttrs(spec));
    case 'macvlan':
      return attr.nested(IFLA_INFO_DATA, [attr.u32(IFLA_MACVLAN_MODE, MACVLAN_MODE[spec.mode])]);
    case 'ipvlan':
      return attr.nested(IFLA_INFO_DATA, [
        attr.u16(IFLA_IPVLAN_MODE, IPVLAN_MODE[spec.mode]),
        attr.u16(IFLA_IPVLAN_FLAGS, IPVLAN_FLAG[spec.flag ?? 'bridge']),
      ]);
  }
}

export function vethPeerPayload(peer: VethPeerInfo): Buffer {
  const attrs = commonLinkAttrs(peer);
  if (peer.netnsFd !== undefined) attrs.push(attr.u32(IFLA_NET_NS_FD, peer.netnsFd));
  return Buffer.concat([encodeIfinfomsg(), encodeAttrs(attrs)]);
}

function vxlanAttrs(v: VxlanInfo): Attr[] {
  if (!Number.isInteger(v.vni) || v.vni < 0) throw new TypeError(`VXLAN VNI must be a non-negative integer, not ${v.vni}`);
  // Range above 2^24 is left to the kernel on purpose: its refusal text is the clearest message.
  const attrs: Attr[] = [attr.u32(IFLA_VXLAN_ID, v.vni)];
  if (v.local !== undefined) {
    attrs.push(attr.bytes(ipFamily(v.local) === AF_INET ? IFLA_VXLAN_LOCAL : IFLA_VXLAN_LOCAL6, ipToBytes(v.local)));
  }
  if (v.group !== undefined) {
    attrs.push(attr.bytes(ipFamily(v.group) === AF_INET ? IFLA_VXLAN_GROUP : IFLA_VXLAN_GROUP6, ipToBytes(v.group)));
  }
  if (v.port !== undefined) attrs.push(attr.be16(IFLA_VXLAN_PORT, v.port));
  if (v.learning !== undefined) attrs.push(attr.u8(IFLA_VXLAN_LEARNING, v.learning ? 1 : 0));
  if (v.proxy !== undefined) attrs.push(attr.u8(IFLA_VXLAN_PROXY, v.proxy ? 1 : 0));
  if (v.underlayIndex !== undefined) attrs.push(attr.u32(IFLA_VXLAN_LINK, v.underlayIndex));
  if (v.ttl !== undefined) attrs.push(attr.u8(IFLA_VXLAN_TTL, v.ttl));
  return attrs;
}

export interface BridgePortInfo {
  hairpin: boolean;
  learning: boolean;
  isolated: boolean;
  /** The bridge answers ARP/ND for MACs behind this port from its neighbour table. */
  neighSuppress: boolean;
  /** STP state (0 disabled .. 3 forwarding). */
  state: number | undefined;
}

/** A link as the kernel reports it. */
export interface Link {
  index: number;
  name: string;
  /** IFLA_INFO_KIND: "bridge", "veth", "vxlan", ...; undefined for physical devices and lo. */
  kind: string | undefined;
  flags: number;
  up: boolean;
  lowerUp: boolean;
  mtu: number | undefined;
  mac: string | undefined;
  /** ifindex of the bridge (or other master) this link is attached to. */
  masterIndex: number | undefined;
  /** Device group (IFLA_GROUP); 0 is the kernel's default group. */
  group: number | undefined;
  /** IFLA_LINK: the veth peer's or the macvlan/ipvlan parent's ifindex (in linkNetnsId's netns when set). */
  parentIndex: number | undefined;
  linkNetnsId: number | undefined;
  operstate: number | undefined;
  vxlan?: VxlanInfo;
  macvlan?: { mode: MacvlanMode | number };
  ipvlan?: { mode: IpvlanMode | number; flag: IpvlanFlag | number };
  /** Present when the link is a bridge port (IFLA_INFO_SLAVE_KIND "bridge"). */
  bridgePort?: BridgePortInfo;
}

function nameOf<K extends string>(table: Record<K, number>, value: number): K | number {
  const hit = (Object.keys(table) as K[]).find((k) => table[k] === value);
  return hit ?? value;
}

/** Decodes one RTM_NEWLINK message payload (ifinfomsg + attributes). */
export function decodeLink(payload: Buffer): Link {
  const flags = payload.readUInt32LE(8);
  const a = new AttrSet(payload.subarray(IFINFOMSG_LEN));
  const mac = a.get(IFLA_ADDRESS);
  const link: Link = {
    index: payload.readInt32LE(4),
    name: a.str(IFLA_IFNAME) ?? '',
    kind: undefined,
    flags,
    up: (flags & IFF_UP) !== 0,
    lowerUp: (flags & IFF_LOWER_UP) !== 0,
    mtu: a.u32(IFLA_MTU),
    mac: mac && mac.length === 6 ? bytesToMac(mac) : undefined,
    masterIndex: a.u32(IFLA_MASTER),
    group: a.u32(IFLA_GROUP),
    parentIndex: a.u32(IFLA_LINK),
    linkNetnsId: a.s32(IFLA_LINK_NETNSID),
    operstate: a.u8(IFLA_OPERSTATE),
  };
  const info = a.nested(IFLA_LINKINFO);
  if (info) decodeLinkInfo(info, link);
  return link;
}

function decodeLinkInfo(info: AttrSet, link: Link): void {
  link.kind = info.str(IFLA_INFO_KIND);
  const data = info.nested(IFLA_INFO_DATA);
  if (data && link.kind === 'vxlan') {
    const local = data.get(IFLA_VXLAN_LOCAL) ?? data.get(IFLA_VXLAN_LOCAL6);
    const group = data.get(IFLA_VXLAN_GROUP) ?? data.get(IFLA_VXLAN_GROUP6);
    const vx: VxlanInfo = { vni: data.u32(IFLA_VXLAN_ID) ?? 0 };
    if (local) vx.local = bytesToIp(local);
    if (group) vx.group = bytesToIp(group);
    const port = data.be16(IFLA_VXLAN_PORT);
    if (port !== undefined) vx.port = port;
    const learning = data.u8(IFLA_VXLAN_LEARNING);
    if (learning !== undefined) vx.learning = learning !== 0;
    const proxy = data.u8(IFLA_VXLAN_PROXY);
    if (proxy !== undefined) vx.proxy = proxy !== 0;
    const underlay = data.u32(IFLA_VXLAN_LINK);
    if (underlay) vx.underlayIndex = underlay;
    const ttl = data.u8(IFLA_VXLAN_TTL);
    if (ttl !== undefined) vx.ttl = ttl;
    link.vxlan = vx;
  } else if (data && link.kind === 'macvlan') {
    link.macvlan = { mode: nameOf(MACVLAN_MODE, data.u32(IFLA_MACVLAN_MODE) ?? 0) };
  } else if (data && link.kind === 'ipvlan') {
    link.ipvlan = {
      mode: nameOf(IPVLAN_MODE, data.u16(IFLA_IPVLAN_MODE) ?? 0),
      flag: nameOf(IPVLAN_FLAG, data.u16(IFLA_IPVLAN_FLAGS) ?? 0),
    };
  }
  if (info.str(IFLA_INFO_SLAVE_KIND) === 'bridge') {
    link.bridgePort = decodeBridgePort(info.nested(IFLA_INFO_SLAVE_DATA) ?? new AttrSet(Buffer.alloc(0)));
  }
}

export function decodeBridgePort(p: AttrSet): BridgePortInfo {
  return {
    hairpin: p.u8(IFLA_BRPORT_MODE) === 1,
    learning: p.u8(IFLA_BRPORT_LEARNING) === 1,
    isolated: p.u8(IFLA_BRPORT_ISOLATED) === 1,
    neighSuppress: p.u8(IFLA_BRPORT_NEIGH_SUPPRESS) === 1,
    state: p.u8(IFLA_BRPORT_STATE),
  };
}

export interface BridgePortFlags {
  hairpin?: boolean;
  learning?: boolean;
  isolated?: boolean;
  neighSuppress?: boolean;
}

/** The IFLA_BRPORT_* attributes for an AF_BRIDGE IFLA_PROTINFO nest. */
export function bridgePortAttrs(f: BridgePortFlags): Attr[] {
  const attrs: Attr[] = [];
  if (f.hairpin !== undefined) attrs.push(attr.u8(IFLA_BRPORT_MODE, f.hairpin ? 1 : 0));
  if (f.learning !== undefined) attrs.push(attr.u8(IFLA_BRPORT_LEARNING, f.learning ? 1 : 0));
  if (f.isolated !== undefined) attrs.push(attr.u8(IFLA_BRPORT_ISOLATED, f.isolated ? 1 : 0));
  if (f.neighSuppress !== undefined) attrs.push(attr.u8(IFLA_BRPORT_NEIGH_SUPPRESS, f.neighSuppress ? 1 : 0));
  return attrs;
}
