/**
 * Configuring and verifying the container's interface through a netlink socket opened in its
 * netns (DESIGN §4.3): link up, addresses, routes. Shared by bridge, macvlan and ipvlan.
 */
import { addAddress, listAddresses } from '../kernel/address.js';
import { getLink, setLinkUp, type Link } from '../kernel/link.js';
import { AF_INET, AF_INET6 } from '../kernel/netlink/constants.js';
import { addRoute, listRoutes } from '../kernel/route.js';
import type { Rtnl } from '../kernel/rtnl.js';
import type { CniIpConfig, CniRoute } from '../../cni/types.js';
import { isIpv6, routeGateway } from './addressing.js';
import { AttachmentCheckError } from './errors.js';

export interface IfaceConfig {
  ips: CniIpConfig[];
  routes: CniRoute[];
  /** Skip IPv6 duplicate address detection (the reference's default, `enabledad: false`). */
  nodad: boolean;
}

/** Brings `ifname` up and adds its addresses, then its routes (a gateway needs the subnet route). */
/**
 * Brings the container interface up with its addresses and routes. Looks the link up once (every
 * operation by name would look it up again) and returns it as it was found: MAC and MTU, which
 * the result reports, do not change here.
 */
export function configureInterface(ctr: Rtnl, ifname: string, c: IfaceConfig): Link {
  const link = getLink(ctr, ifname);
  setLinkUp(ctr, link);
  for (const ip of c.ips) addAddress(ctr, link, ip.address, isIpv6(ip.address) ? { nodad: c.nodad } : { broadcast: true });
  for (const route of c.routes) {
    const gateway = routeGateway(route, c.ips);
    addRoute(ctr, { dst: route.dst, ...(gateway ? { gateway } : { family: isIpv6(route.dst) ? AF_INET6 : AF_INET }), dev: link });
  }
  return link;
}

const canonical = (ip: string): string => ip.toLowerCase();

/** CHECK: the interface exists, is up, and has the addresses and routes of prevResult. */
export function verifyInterface(ctr: Rtnl, ifname: string, c: { ips: CniIpConfig[]; routes: CniRoute[]; mac?: string | undefined }): Link {
  let link: Link;
  try {
    link = getLink(ctr, ifname);
  } catch (err) {
    throw new AttachmentCheckError(`failed to check "${ifname}": ${(err as Error).message}`);
  }
  if (!link.up) throw new AttachmentCheckError(`failed to check "${ifname}": the link is down`);
  if (c.mac && link.mac?.toLowerCase() !== c.mac.toLowerCase()) {
    throw new AttachmentCheckError(`failed to check "${ifname}": MAC is ${link.mac ?? 'none'}, prevResult says ${c.mac}`);
  }
  const have = new Set(listAddresses(ctr, { link: link.index }).map((a) => `${canonical(a.ip)}/${a.prefixLen}`));
  for (const ip of c.ips) {
    const [addr = '', prefix] = ip.address.split('/');
    if (!have.has(`${canonical(addr)}/${prefix}`)) throw new AttachmentCheckError(`failed to check "${ifname}": address ${ip.address} is missing`);
  }
  for (const route of c.routes) {
    const v6 = isIpv6(route.dst);
    const gateway = routeGateway(route, c.ips);
    const dst = route.dst === '0.0.0.0/0' || route.dst === '::/0' ? 'default' : route.dst;
    const found = listRoutes(ctr, { family: v6 ? AF_INET6 : AF_INET, dev: link.index }).some(
      (r) => (r.dst === dst || (dst !== 'default' && r.dst === route.dst)) && (gateway === undefined || canonical(r.gateway ?? '') === canonical(gateway)),
    );
    if (!found) throw new AttachmentCheckError(`failed to check "${ifname}": route to ${route.dst}${gateway ? ` via ${gateway}` : ''} is missing`);
  }
  return link;
}
