/**
 * Where a VIP lives in the kernel. The VIP comes from the network's own subnet (store.ts), so a
 * client on the network thinks it is on-link and asks ARP/ND for it: the host answers because
 * the VIP is a /32 (/128) address on the network's bridge (an overlay's gateway link). Packets to it are then routed by
 * the host, where `ip shoal-lb` DNATs them to a replica (nft-rules.ts). Host processes reach it
 * the same way (a local address, through the nat/output hook).
 *
 * Also the IPv4 `route_localnet` switch on the bridge: a published port reached on 127.0.0.1
 * is DNATed to a replica behind the bridge, which the kernel drops without it (as portmap does).
 */
import { parseAddress } from '../dns/ip.js';
import { addAddress, deleteAddressIfExists, listAddresses } from '../kernel/address.js';
import { findLink } from '../kernel/link.js';
import { openRtnl } from '../kernel/rtnl.js';
import { ensureSysctl, interfaceSysctlKey } from '../kernel/sysctl.js';

const hostCidr = (vip: string) => (vip.includes(':') ? `${vip}/128` : `${vip}/32`);

/** Puts each VIP on `bridge` unless it is there; false when the bridge does not exist (yet). */
export function ensureVipAddresses(bridge: string, vips: readonly string[]): boolean {
  const nl = openRtnl();
  try {
    const link = findLink(nl, bridge);
    if (!link) return false;
    const have = new Set(listAddresses(nl, { link }).map((a) => a.ip));
    for (const vip of vips) {
      const canonical = parseAddress(vip)?.toString() ?? vip;
      if (!have.has(canonical)) addAddress(nl, link, hostCidr(canonical), { replace: true, nodad: canonical.includes(':') });
    }
    return true;
  } finally {
    nl.close();
  }
}

export function removeVipAddresses(bridge: string, vips: readonly string[]): void {
  const nl = openRtnl();
  try {
    for (const vip of vips) deleteAddressIfExists(nl, bridge, hostCidr(vip));
  } finally {
    nl.close();
  }
}

/** Not reverted: portmap sets the same switch on the same bridges and relies on it. */
export function enableRouteLocalnet(bridge: string): void {
  ensureSysctl(interfaceSysctlKey('ipv4', bridge, 'route_localnet'), 1);
}
