/**
 * The host bridge: created on first use and shared by every container of the network. Creation
 * is idempotent under races (32 concurrent ADDs: one creates, the others see EEXIST and use
 * it); the gateway address is added the same way. The bridge is never deleted by DEL, as in the
 * reference plugin: other containers may still be on it.
 */
import { existsSync } from 'node:fs';
import { addAddress, deleteAddress, listAddresses } from '../kernel/address.js';
import { LinkExistsError, NetlinkError, SysctlError } from '../kernel/errors.js';
import { createLink, findLink, getLink, linkMacIsSet, setLinkGroup, setLinkMac, setLinkMtu, setLinkPromisc, setLinkUp, type Link } from '../kernel/link.js';
import type { IpPrefix } from '../addr.js';
import { afOf } from '../kernel/netlink/inet.js';
import type { Rtnl } from '../kernel/rtnl.js';
import { ensureSysctl, interfaceSysctlKey, sysctlPath, writeSysctl } from '../kernel/sysctl.js';
import { LinkConflictError } from './errors.js';
import { SHOAL_BRIDGE_GROUP } from './firewall.js';
import { bridgeMac } from './mac.js';

export interface BridgeOptions {
  name: string;
  mtu: number | undefined;
  promiscMode: boolean;
}

/**
 * The bridge, created if missing, up, in Shoal's device group, with the requested settings and
 * a MAC of its own that its ports cannot change (mac.ts says why).
 */
export function ensureBridge(host: Rtnl, o: BridgeOptions): Link {
  // Look first: the bridge exists on every ADD but a network's first, and a refused create
  // costs a round trip and an error object. Create when missing; EEXIST then means a racing ADD
  // made it in between, and the lookup is repeated.
  let link = findLink(host, o.name);
  if (!link) {
    try {
      link = createLink(host, { kind: 'bridge', name: o.name, mtu: o.mtu, mac: bridgeMac(o.name), up: true });
      skipLinkLocalDad(host, o.name);
    } catch (err) {
      if (!(err instanceof LinkExistsError)) throw err;
      link = getLink(host, o.name);
    }
  }
  if (link.kind !== 'bridge') {
    throw new LinkConflictError(`failed to use bridge "${o.name}": a link of kind ${link.kind ?? 'unknown'} already has that name`);
  }
  pinBridgeMac(host, link);
  // On every ADD, not only on creation: a racing creator may not have got this far yet.
  if (!link.up) setLinkUp(host, link.index);
  if (link.group !== SHOAL_BRIDGE_GROUP) setLinkGroup(host, link.index, SHOAL_BRIDGE_GROUP);
  if (o.promiscMode && (link.flags & 0x100) === 0) setLinkPromisc(host, link.index, true);
  if (o.mtu !== undefined && link.mtu !== o.mtu && link.masterIndex === undefined) {
    // The reference sets the MTU when it creates the bridge; a bridge without ports takes it.
    try {
      setLinkMtu(host, link.index, o.mtu);
    } catch {
      // A bridge with ports clamps to its smallest port: not worth failing the ADD over.
    }
  }
  return link;
}

/**
 * The bridge's fe80:: address appears when its first port brings carrier, and stays tentative
 * for the 1-2 s of duplicate address detection. Meanwhile the kernel has no source for the
 * neighbour solicitations of routed or DNATed IPv6 traffic (from another interface, a published
 * port on a host address): the first packets to a new container waited 1-2 s. Nothing else can
 * own a link-local address on a bridge Shoal just made, so DAD is off before carrier comes.
 * Without IPv6 (the conf directory is missing) there is nothing to do.
 */
export function skipLinkLocalDad(host: Rtnl, name: string): void {
  try {
    writeSysctl(interfaceSysctlKey('ipv6', name, 'accept_dad'), '0', { netns: host.netns });
  } catch (err) {
    if (!(err instanceof SysctlError) || existsSync(sysctlPath(['net', 'ipv6']))) throw err;
  }
}

/**
 * A bridge made by an older build (or by someone else) may still follow its ports' MACs.
 * Setting its MAC to the one it has now pins it without changing what neighbours see; this
 * happens once, since afterwards the kernel reports the MAC as set. Shoal's own bridges carry
 * the derived MAC, which needs no look at sysfs.
 */
function pinBridgeMac(host: Rtnl, link: Link): void {
  if (!link.mac || link.mac === bridgeMac(link.name)) return;
  if (linkMacIsSet(link) === true) return;
  setLinkMac(host, link.index, link.mac);
}

/**
 * Puts `gateway` (with its subnet's length) on the bridge. As the reference's ensureAddr: an
 * IPv4 bridge holds one address; a different one (or, for IPv6, one of an overlapping subnet) is
 * an error unless `forceAddress`, which replaces it.
 */
export function ensureGatewayAddress(host: Rtnl, bridge: Link, gateway: IpPrefix, forceAddress: boolean): void {
  const v6 = gateway.family === 6;
  const present = listAddresses(host, { link: bridge.index, family: afOf(gateway.family) });
  // Checked first: the kernel lists IPv6 addresses newest first, so a service VIP added later
  // came before the gateway and was taken for a rival (the mesh's dual-stack test, 819).
  if (present.some((a) => a.prefix.equals(gateway))) return;
  for (const a of present) {
    if (a.prefix.length === a.prefix.bits) continue; // a host address: a service VIP, not a gateway
    if (v6 && a.scope !== 0) continue; // link-local fe80:: addresses
    if (v6 && !a.prefix.overlaps(gateway)) continue;
    if (!forceAddress) {
      throw new LinkConflictError(`failed to set gateway address on bridge "${bridge.name}": it already has ${a.cidr}, different from ${gateway.toString()} (set "forceAddress" to replace it)`);
    }
    deleteAddress(host, bridge.index, a.prefix);
  }
  try {
    addAddress(host, bridge.index, gateway, v6 ? { nodad: true } : { broadcast: true });
  } catch (err) {
    // A racing ADD added the same address first.
    if (err instanceof NetlinkError && err.errnoName === 'EEXIST') return;
    throw err;
  }
}

/** Routing between the bridge and the rest of the host (the reference's enableIPForward). */
export function enableForwarding(families: { v4: boolean; v6: boolean }): void {
  if (families.v4) ensureSysctl('net.ipv4.ip_forward', 1);
  if (families.v6) ensureSysctl('net.ipv6.conf.all.forwarding', 1);
}
