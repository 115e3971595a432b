/**
 * Configuring and verifying the container's interface through a netlink socket opened in its
 * netns (DESIGN §4.3): link up, addresses, routes. Shared by bridge, macvlan and ipvlan.
 */
import { addAddress, listAddresses } from '../kernel/address.js';
import { getLink, setLinkUp, type Link } from '../kernel/link.js';
import { afOf } from '../kernel/netlink/inet.js';
import { addRoute, listRoutes } from '../kernel/route.js';
import type { Rtnl } from '../kernel/rtnl.js';
import { routeGateway, type Addressing } from './addressing.js';
import { AttachmentCheckError } from './errors.js';

export interface IfaceConfig extends Addressing {
  /** Skip IPv6 duplicate address detection (the reference's default, `enabledad: false`). */
  nodad: boolean;
}

/**
 * Brings the container interface up with its addresses and routes. Looks the link up once (every
 * operation by name would look it up again) and returns it as it was found: MAC and MTU, which
 * the result reports, do not change here.
 */
export function configureInterface(ctr: Rtnl, ifname: string, c: IfaceConfig): Link {
  const link = getLink(ctr, ifname);
  setLinkUp(ctr, link);
  for (const ip of c.ips) addAddress(ctr, link, ip.address, ip.address.family === 6 ? { nodad: c.nodad } : { broadcast: true });
  for (const route of c.routes) {
    const gateway = routeGateway(route, c.ips);
    addRoute(ctr, { dst: route.dst, ...(gateway ? { gateway } : { family: afOf(route.dst.family) }), dev: link });
  }
  return link;
}

/** CHECK: the interface exists, is up, and has the addresses and routes of prevResult. */
export function verifyInterface(ctr: Rtnl, ifname: string, c: Addressing & { mac?: string | undefined }): Link {
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
  const have = listAddresses(ctr, { link: link.index });
  for (const ip of c.ips) {
    if (!have.some((a) => a.prefix.equals(ip.address))) throw new AttachmentCheckError(`failed to check "${ifname}": address ${ip.address.toString()} is missing`);
  }
  for (const route of c.routes) {
    const gateway = routeGateway(route, c.ips);
    // The kernel keeps a route's destination without host bits.
    const dst = route.dst.masked();
    const found = listRoutes(ctr, { family: afOf(dst.family), dev: link.index }).some((r) => r.to.equals(dst) && (gateway === undefined || r.via?.equals(gateway) === true));
    if (!found) throw new AttachmentCheckError(`failed to check "${ifname}": route to ${route.dst.toString()}${gateway ? ` via ${gateway.toString()}` : ''} is missing`);
  }
  return link;
}
