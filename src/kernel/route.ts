/**
 * Routes over rtnetlink (RTM_NEWROUTE/DELROUTE/GETROUTE), IPv4 and IPv6: default, via a gateway,
 * onlink, metric, table, scope, device.
 */
import { NetlinkError } from './errors.js';
import { attr, AttrSet, type Attr } from './netlink/codec.js';
import {
  AF_INET,
  AF_INET6,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  RTA_DST,
  RTA_GATEWAY,
  RTA_OIF,
  RTA_PREFSRC,
  RTA_PRIORITY,
  RTA_TABLE,
  RTMSG_LEN,
  RTM_DELROUTE,
  RTM_F_CLONED,
  RTM_GETROUTE,
  RTM_NEWROUTE,
  RTNH_F_ONLINK,
  RTN_UNICAST,
  RTPROT_BOOT,
  RT_SCOPE,
  RT_TABLE_MAIN,
  RT_TABLE_UNSPEC,
  type RouteScope,
} from './netlink/constants.js';
import { IpAddr, IpPrefix } from '../addr.js';
import { afOf, toAddr, toPrefix, type Family } from './netlink/inet.js';
import { linkIndex } from './link.js';
import { linkRefText, op, type LinkRef, type Rtnl } from './rtnl.js';

/**
 * A route to add or delete. Addresses are values (src/addr.ts) or text, parsed once here; a
 * zero-length prefix (0.0.0.0/0, ::/0) is the default route like "default".
 */
export interface RouteSpec {
  /** "default" (needs `family` or a gateway to tell v4 from v6), or a CIDR like 10.1.0.0/16. */
  dst: string | IpPrefix;
  family?: Family;
  gateway?: string | IpAddr;
  dev?: LinkRef;
  /** Accept a gateway that is not on a connected subnet of `dev` (RTNH_F_ONLINK). */
  onlink?: boolean;
  /** Route metric (RTA_PRIORITY). */
  metric?: number;
  /** Routing table id; main (254) when omitted. */
  table?: number;
  /** Defaults as `ip route` does: link for IPv4 routes without a gateway, else universe. */
  scope?: RouteScope;
  /** Preferred source address. */
  src?: string | IpAddr;
  protocol?: number;
}

export interface Route {
  family: Family;
  /** CIDR, or "default" for a zero-length prefix. */
  dst: string;
  /** The destination as a value (0.0.0.0/0 or ::/0 for the default route). */
  to: IpPrefix;
  gateway: string | undefined;
  /** The gateway as a value. */
  via: IpAddr | undefined;
  oif: number | undefined;
  metric: number | undefined;
  table: number;
  scope: number;
  type: number;
  protocol: number;
  flags: number;
  onlink: boolean;
  src: string | undefined;
}

interface RtmsgFields {
  family: number;
  dstLen: number;
  table: number;
  protocol: number;
  scope: number;
  type: number;
  flags: number;
}

export function encodeRtmsg(f: RtmsgFields): Buffer {
  const b = Buffer.alloc(RTMSG_LEN);
  b.writeUInt8(f.family, 0);
  b.writeUInt8(f.dstLen, 1);
  b.writeUInt8(0, 2); // src_len
  b.writeUInt8(0, 3); // tos
  // Tables above 255 only fit in RTA_TABLE; the header then says RT_TABLE_UNSPEC.
  b.writeUInt8(f.table > 255 ? RT_TABLE_UNSPEC : f.table, 4);
  b.writeUInt8(f.protocol, 5);
  b.writeUInt8(f.scope, 6);
  b.writeUInt8(f.type, 7);
  b.writeUInt32LE(f.flags >>> 0, 8);
  return b;
}

function routeFamily(dst: IpPrefix | undefined, gateway: IpAddr | undefined, spec: RouteSpec): Family {
  if (dst) {
    if (gateway && gateway.family !== dst.family) throw new TypeError(`route ${dst.toString()}: gateway ${gateway.toString()} is another IP family`);
    return afOf(dst.family);
  }
  if (gateway) return afOf(gateway.family);
  if (spec.family !== undefined) return spec.family;
  throw new TypeError('a default route without a gateway needs `family`');
}

/** Header and attributes for a route request; `forDelete` matches loosely as `ip route del` does. */
export function routeMessage(spec: RouteSpec, oif: number | undefined, forDelete: boolean): { header: Buffer; attrs: Attr[] } {
  const dst = spec.dst === 'default' ? undefined : toPrefix(spec.dst);
  const gateway = spec.gateway === undefined ? undefined : toAddr(spec.gateway);
  const family = routeFamily(dst, gateway, spec);
  const table = spec.table ?? RT_TABLE_MAIN;
  const defaultScope = family === AF_INET && gateway === undefined ? RT_SCOPE.link : RT_SCOPE.universe;
  const header = encodeRtmsg({
    family,
    dstLen: dst?.length ?? 0,
    table,
    // For delete, zero protocol/type and scope "nowhere" mean "any" to the kernel.
    protocol: forDelete ? 0 : (spec.protocol ?? RTPROT_BOOT),
    scope: spec.scope !== undefined ? RT_SCOPE[spec.scope] : forDelete ? RT_SCOPE.nowhere : defaultScope,
    type: forDelete ? 0 : RTN_UNICAST,
    flags: spec.onlink ? RTNH_F_ONLINK : 0,
  });
  const attrs: Attr[] = [attr.u32(RTA_TABLE, table)];
  if (dst) attrs.push(attr.bytes(RTA_DST, dst.addr.toBytes()));
  if (gateway) attrs.push(attr.bytes(RTA_GATEWAY, gateway.toBytes()));
  if (oif !== undefined) attrs.push(attr.u32(RTA_OIF, oif));
  if (spec.metric !== undefined) attrs.push(attr.u32(RTA_PRIORITY, spec.metric));
  if (spec.src !== undefined) attrs.push(attr.bytes(RTA_PREFSRC, toAddr(spec.src).toBytes()));
  return { header, attrs };
}

function describe(spec: RouteSpec): string {
  return [String(spec.dst), spec.gateway !== undefined && `via ${String(spec.gateway)}`, spec.dev !== undefined && `dev ${linkRefText(spec.dev)}`, spec.table && `table ${spec.table}`]
    .filter(Boolean)
    .join(' ');
}

function send(nl: Rtnl, type: number, flags: number, spec: RouteSpec, verb: string): void {
  const oif = spec.dev === undefined ? undefined : linkIndex(nl, spec.dev);
  const { header, attrs } = routeMessage(spec, oif, type === RTM_DELROUTE);
  nl.sock.request({ type, flags, header, attrs }, op(verb, describe(spec)));
}

/** Adds a route; EEXIST when an identical one exists. */
export function addRoute(nl: Rtnl, spec: RouteSpec): void {
  send(nl, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, spec, 'add route');
}

/** Adds the route or replaces the one with the same destination, table and metric. */
export function replaceRoute(nl: Rtnl, spec: RouteSpec): void {
  send(nl, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, spec, 'replace route');
}

export function deleteRoute(nl: Rtnl, spec: RouteSpec): void {
  send(nl, RTM_DELROUTE, 0, spec, 'delete route');
}

/** DEL semantics: false when no such route (ESRCH) or device was there. */
export function deleteRouteIfExists(nl: Rtnl, spec: RouteSpec): boolean {
  try {
    deleteRoute(nl, spec);
    return true;
  } catch (err) {
    if (err instanceof NetlinkError && (err.errnoName === 'ESRCH' || err.errnoName === 'ENODEV')) return false;
    if (err instanceof Error && 'code' in err && err.code === 'ELINKNOTFOUND') return false;
    throw err;
  }
}

export function decodeRoute(payload: Buffer): Route {
  const family = payload.readUInt8(0) as Family;
  const dstLen = payload.readUInt8(1);
  const flags = payload.readUInt32LE(8);
  const a = new AttrSet(payload.subarray(RTMSG_LEN));
  const dst = a.get(RTA_DST);
  const gw = a.get(RTA_GATEWAY);
  const src = a.get(RTA_PREFSRC);
  const to = IpPrefix.of(IpAddr.fromBytes(dst ?? Buffer.alloc(family === AF_INET6 ? 16 : 4)), dstLen);
  const via = gw ? IpAddr.fromBytes(gw) : undefined;
  return {
    family,
    dst: dst || dstLen !== 0 ? to.toString() : 'default',
    to,
    gateway: via?.toString(),
    via,
    oif: a.u32(RTA_OIF),
    metric: a.u32(RTA_PRIORITY),
    table: a.u32(RTA_TABLE) ?? payload.readUInt8(4),
    scope: payload.readUInt8(6),
    type: payload.readUInt8(7),
    protocol: payload.readUInt8(5),
    flags,
    onlink: (flags & RTNH_F_ONLINK) !== 0,
    src: src ? IpAddr.fromBytes(src).toString() : undefined,
  };
}

/**
 * Routes of one family in the handle's netns; by default only the main table. `table: 0`
 * returns every table (local, main, custom ones).
 */
export function listRoutes(nl: Rtnl, filter: { family: Family; table?: number; dev?: LinkRef }): Route[] {
  const table = filter.table ?? RT_TABLE_MAIN;
  const oif = filter.dev === undefined ? undefined : linkIndex(nl, filter.dev);
  const header = encodeRtmsg({ family: filter.family, dstLen: 0, table: 0, protocol: 0, scope: 0, type: 0, flags: 0 });
  const replies = nl.sock.dump({ type: RTM_GETROUTE, flags: 0, header }, `failed to list routes in ${nl.where}`);
  return replies
    .filter((m) => m.type === RTM_NEWROUTE)
    .map((m) => decodeRoute(m.payload))
    .filter((r) => !(r.flags & RTM_F_CLONED))
    .filter((r) => table === 0 || r.table === table)
    .filter((r) => oif === undefined || r.oif === oif);
}
