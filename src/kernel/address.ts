/**
 * IP addresses on links over rtnetlink (RTM_NEWADDR/DELADDR/GETADDR), IPv4 and IPv6.
 */
import { NetlinkError } from './errors.js';
import { attr, AttrSet, type Attr } from './netlink/codec.js';
import {
  AF_INET,
  AF_UNSPEC,
  IFADDRMSG_LEN,
  IFA_ADDRESS,
  IFA_BROADCAST,
  IFA_FLAGS,
  IFA_F_NODAD,
  IFA_F_PERMANENT,
  IFA_LABEL,
  IFA_LOCAL,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  RTM_DELADDR,
  RTM_GETADDR,
  RTM_NEWADDR,
  RT_SCOPE,
  type RouteScope,
} from './netlink/constants.js';
import { IpAddr, IpPrefix } from '../addr.js';
import { afOf, toAddr, toPrefix, type Family } from './netlink/inet.js';
import { linkIndex } from './link.js';
import { linkRefText, op, type LinkRef, type Rtnl } from './rtnl.js';

export interface AddAddressOptions {
  /** Skip IPv6 duplicate address detection so the address is usable at once (IFA_F_NODAD). */
  nodad?: boolean;
  /** IPv4 broadcast: an address, or `true` for the subnet's all-ones address (`brd +`). */
  broadcast?: string | IpAddr | true;
  label?: string;
  scope?: RouteScope;
  /** Replace an existing identical address instead of failing with EEXIST. */
  replace?: boolean;
}

export interface Address {
  index: number;
  family: Family;
  /** The address and its prefix length as a value (IFA_LOCAL when present, else IFA_ADDRESS). */
  prefix: IpPrefix;
  /** The address as text (`prefix.addr`, formatted). */
  ip: string;
  prefixLen: number;
  /** `ip/prefixLen`. */
  cidr: string;
  /** IFA_ADDRESS when it differs from `ip` (a point-to-point peer). */
  peer: string | undefined;
  broadcast: string | undefined;
  label: string | undefined;
  scope: number;
  flags: number;
  nodad: boolean;
  permanent: boolean;
}

export function encodeIfaddrmsg(family: number, prefixLen: number, flags: number, scope: number, index: number): Buffer {
  const b = Buffer.alloc(IFADDRMSG_LEN);
  b.writeUInt8(family, 0);
  b.writeUInt8(prefixLen, 1);
  b.writeUInt8(flags & 0xff, 2);
  b.writeUInt8(scope, 3);
  b.writeUInt32LE(index, 4);
  return b;
}

/**
 * The attributes of an RTM_NEWADDR for `cidr` (exported for unit tests). Address arguments here
 * and below are values (src/addr.ts) or text, which is parsed once (a bare address is /32, /128).
 */
export function addressAttrs(cidr: string | IpPrefix, o: AddAddressOptions = {}): Attr[] {
  const prefix = toPrefix(cidr);
  const bytes = prefix.addr.toBytes();
  // As `ip addr add` does: IFA_LOCAL is the address, IFA_ADDRESS equals it unless there is a peer.
  const attrs: Attr[] = [attr.bytes(IFA_LOCAL, bytes), attr.bytes(IFA_ADDRESS, bytes)];
  if (o.broadcast !== undefined) {
    if (prefix.family !== 4) throw new TypeError(`broadcast is an IPv4 option; "${prefix.toString()}" is IPv6`);
    const brd = o.broadcast === true ? prefix.last() : toAddr(o.broadcast);
    attrs.push(attr.bytes(IFA_BROADCAST, brd.toBytes()));
  }
  if (o.label !== undefined) attrs.push(attr.str(IFA_LABEL, o.label));
  // IFA_FLAGS is the 32-bit superset of ifa_flags; NODAD fits in both, we send both.
  if (o.nodad) attrs.push(attr.u32(IFA_FLAGS, IFA_F_NODAD));
  return attrs;
}

export function addAddress(nl: Rtnl, link: LinkRef, cidr: string | IpPrefix, o: AddAddressOptions = {}): void {
  const prefix = toPrefix(cidr);
  const index = linkIndex(nl, link);
  const header = encodeIfaddrmsg(afOf(prefix.family), prefix.length, o.nodad ? IFA_F_NODAD : 0, RT_SCOPE[o.scope ?? 'universe'], index);
  const flags = NLM_F_CREATE | (o.replace ? NLM_F_REPLACE : NLM_F_EXCL);
  nl.sock.request({ type: RTM_NEWADDR, flags, header, attrs: addressAttrs(prefix, o) }, op(`add address ${prefix.toString()} to link`, linkRefText(link)));
}

export function deleteAddress(nl: Rtnl, link: LinkRef, cidr: string | IpPrefix): void {
  const prefix = toPrefix(cidr);
  const index = linkIndex(nl, link);
  const bytes = prefix.addr.toBytes();
  const header = encodeIfaddrmsg(afOf(prefix.family), prefix.length, 0, 0, index);
  const attrs = [attr.bytes(IFA_LOCAL, bytes), attr.bytes(IFA_ADDRESS, bytes)];
  nl.sock.request({ type: RTM_DELADDR, flags: 0, header, attrs }, op(`delete address ${prefix.toString()} from link`, linkRefText(link)));
}

/** DEL semantics: false when the address (or its link) was already gone. */
export function deleteAddressIfExists(nl: Rtnl, link: LinkRef, cidr: string | IpPrefix): boolean {
  try {
    deleteAddress(nl, link, cidr);
    return true;
  } catch (err) {
    // EADDRNOTAVAIL: no such address; ENODEV or LinkNotFoundError: no such link.
    if (err instanceof NetlinkError && (err.errnoName === 'EADDRNOTAVAIL' || err.errnoName === 'ENODEV')) return false;
    if (err instanceof Error && 'code' in err && err.code === 'ELINKNOTFOUND') return false;
    throw err;
  }
}

export function decodeAddress(payload: Buffer): Address {
  const family = payload.readUInt8(0) as Family;
  const prefixLen = payload.readUInt8(1);
  const a = new AttrSet(payload.subarray(IFADDRMSG_LEN));
  const local = a.get(IFA_LOCAL);
  const address = a.get(IFA_ADDRESS);
  // The kernel always sends one of the two; a message without either reads as the zero address.
  const addr = IpAddr.fromBytes(local ?? address ?? Buffer.alloc(family === AF_INET ? 4 : 16));
  const prefix = IpPrefix.of(addr, Math.min(prefixLen, addr.bits));
  const ip = addr.toString();
  const peer = local && address && !local.equals(address) ? IpAddr.fromBytes(address).toString() : undefined;
  const brd = a.get(IFA_BROADCAST);
  const flags = a.u32(IFA_FLAGS) ?? payload.readUInt8(2);
  return {
    index: payload.readUInt32LE(4),
    family,
    prefix,
    ip,
    prefixLen,
    cidr: `${ip}/${prefixLen}`,
    peer,
    broadcast: brd ? IpAddr.fromBytes(brd).toString() : undefined,
    label: a.str(IFA_LABEL),
    scope: payload.readUInt8(3),
    flags,
    nodad: (flags & IFA_F_NODAD) !== 0,
    permanent: (flags & IFA_F_PERMANENT) !== 0,
  };
}

/** Addresses in the handle's netns, optionally only those of one link and/or one family. */
export function listAddresses(nl: Rtnl, filter: { link?: LinkRef; family?: Family } = {}): Address[] {
  const index = filter.link === undefined ? undefined : linkIndex(nl, filter.link);
  // With NETLINK_GET_STRICT_CHK the kernel filters by ifa_index itself.
  const header = encodeIfaddrmsg(filter.family ?? AF_UNSPEC, 0, 0, 0, index ?? 0);
  const replies = nl.sock.dump({ type: RTM_GETADDR, flags: 0, header }, `failed to list addresses in ${nl.where}`);
  return replies
    .filter((m) => m.type === RTM_NEWADDR)
    .map((m) => decodeAddress(m.payload))
    .filter((a) => index === undefined || a.index === index);
}
