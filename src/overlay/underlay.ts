/**
 * The underlay: which interface and address of this node carry the VXLAN traffic (the local
 * VTEP). The rule, in order:
 *
 * 1. `underlayAddress` given: that address, on the interface that holds it (it must be one of
 *    this node's addresses). With `underlayInterface` too, it must be on that interface.
 * 2. `underlayInterface` given: that interface and its first global IPv4 address (else its
 *    first global IPv6 address).
 * 3. Neither: the interface of the default route (IPv4, else IPv6; the lowest metric wins),
 *    and the route's preferred source when it has one, else that interface's first global
 *    address of the route's family. This is the address the daemon advertises by default
 *    (DESIGN §7: `--advertise-addr` defaults to the source address of the default route), so a
 *    plugin and its daemon agree without configuration.
 */
import { listAddresses, type Address } from '../kernel/address.js';
import { findLink, getLink, type Link } from '../kernel/link.js';
import { AF_INET, AF_INET6, RT_SCOPE } from '../kernel/netlink/constants.js';
import { listRoutes, type Route } from '../kernel/route.js';
import type { Rtnl } from '../kernel/rtnl.js';
import { IpAddr } from '../addr.js';
import { OverlayConfigError } from './errors.js';

export interface UnderlaySpec {
  /** `underlayInterface`: the interface carrying VXLAN traffic. */
  interface?: string | undefined;
  /** `underlayAddress`: the local VTEP address. */
  address?: string | undefined;
}

export interface Underlay {
  link: Link;
  /** The local VTEP address (canonical text). */
  address: string;
  family: 4 | 6;
  /** The interface's MTU (the overlay's is this minus the VXLAN overhead). */
  mtu: number;
}

/** Bytes VXLAN adds to each frame: outer Ethernet 14 + IP (20 or 40) + UDP 8 + VXLAN 8. */
export function vxlanOverhead(family: 4 | 6): number {
  return family === 4 ? 50 : 70;
}

function canonical(ip: string): string | undefined {
  return IpAddr.tryParse(ip)?.toString();
}

const isGlobal = (a: Address): boolean => a.scope === RT_SCOPE.universe;
const familyOf = (a: Address): 4 | 6 => (a.family === AF_INET6 ? 6 : 4);

function underlayOf(link: Link, address: string, family: 4 | 6): Underlay {
  if (link.mtu === undefined) throw new OverlayConfigError('underlayInterface', link.name, `has no MTU (cannot size the overlay)`);
  return { link, address, family, mtu: link.mtu };
}

/** The first global address of `link`, IPv4 before IPv6 unless `family` says which. */
function firstGlobalAddress(nl: Rtnl, link: Link, family?: 4 | 6): Address | undefined {
  const all = listAddresses(nl, { link: link.index }).filter(isGlobal);
  const of = (f: 4 | 6) => all.find((a) => familyOf(a) === f);
  return family ? of(family) : (of(4) ?? of(6));
}

export function resolveUnderlay(nl: Rtnl, spec: UnderlaySpec): Underlay {
  if (spec.address !== undefined) return byAddress(nl, spec.address, spec.interface);
  if (spec.interface !== undefined) return byInterface(nl, spec.interface);
  return byDefaultRoute(nl);
}

function byAddress(nl: Rtnl, text: string, ifname: string | undefined): Underlay {
  const wanted = canonical(text);
  if (!wanted) throw new OverlayConfigError('underlayAddress', text, 'is not an IP address');
  const holder = listAddresses(nl).find((a) => canonical(a.ip) === wanted);
  if (!holder) throw new OverlayConfigError('underlayAddress', text, `is not an address of any interface in ${nl.where}`);
  const link = getLink(nl, holder.index);
  if (ifname !== undefined && link.name !== ifname) {
    throw new OverlayConfigError('underlayAddress', text, `is on "${link.name}", not on "underlayInterface" "${ifname}"`);
  }
  return underlayOf(link, wanted, familyOf(holder));
}

function byInterface(nl: Rtnl, ifname: string): Underlay {
  const link = findLink(nl, ifname);
  if (!link) throw new OverlayConfigError('underlayInterface', ifname, `does not exist in ${nl.where}`);
  const address = firstGlobalAddress(nl, link);
  if (!address) throw new OverlayConfigError('underlayInterface', ifname, 'has no global IP address (add one, or set "underlayAddress")');
  return underlayOf(link, canonical(address.ip) ?? address.ip, familyOf(address));
}

function defaultRoute(nl: Rtnl, family: typeof AF_INET | typeof AF_INET6): Route | undefined {
  return listRoutes(nl, { family })
    .filter((r) => r.dst === 'default' && r.oif !== undefined)
    .sort((a, b) => (a.metric ?? 0) - (b.metric ?? 0))[0];
}

function byDefaultRoute(nl: Rtnl): Underlay {
  const route = defaultRoute(nl, AF_INET) ?? defaultRoute(nl, AF_INET6);
  if (!route?.oif) {
    throw new OverlayConfigError('underlayInterface', undefined, `is not set, nor is "underlayAddress", and ${nl.where} has no default route to find the underlay by`);
  }
  const link = getLink(nl, route.oif);
  const family = route.family === AF_INET6 ? 6 : 4;
  const src = route.src === undefined ? undefined : canonical(route.src);
  if (src) return underlayOf(link, src, family);
  const address = firstGlobalAddress(nl, link, family);
  if (!address) throw new OverlayConfigError('underlayInterface', undefined, `is not set and "${link.name}", the interface of the default route, has no global IPv${family} address`);
  return underlayOf(link, canonical(address.ip) ?? address.ip, family);
}
