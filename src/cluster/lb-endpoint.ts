/**
 * A node's load-balancer endpoint on an overlay network: an address of the network that belongs
 * to this node alone, the source of its balanced connections to replicas on other nodes (and of
 * its health checks to them).
 *
 * Why it is needed: every node's overlay gateway holds the same address and MAC (an anycast
 * gateway), so a connection DNATed by node A to a replica on node B and masqueraded to the
 * gateway would be answered by B's own gateway, never reaching A's conntrack. Docker's swarm
 * mesh gives each node an address on the ingress network for the same reason.
 *
 * Shape: "lb-…", a macvlan on the network's VXLAN device (as the containers' links are) in the
 * host, with the addresses (one per family of the network: a /32, a /128) and the MAC derived
 * from them (bridge/mac.ts). The address is allocated from this node's own blocks (so it is
 * unique in the cluster) and published to etcd like a container's endpoint, so the other nodes
 * program it as a VXLAN peer: a replica's ARP for it is answered by the other node's VXLAN
 * device (proxy), and the reply is carried back here, where it arrives on "lb-…" as an ordinary
 * local address. The gateway's MAC is never involved, so the anycast gateway stays as it is.
 *
 * The overlay device, gateway and gateway address are ensured too: a node runs the mesh for a
 * service whether or not any of the network's containers runs on it.
 */
import { IpAddr, IpPrefix } from '../addr.js';
import { enableForwarding, ensureGatewayAddress } from '../bridge/bridge-device.js';
import { containerMac } from '../bridge/mac.js';
import { addAddress, listAddresses } from '../kernel/address.js';
import { createLink, deleteLinkIfExists, findLink, setLinkUp } from '../kernel/link.js';
import type { Rtnl } from '../kernel/rtnl.js';
import { ensureSysctl, interfaceSysctlKey } from '../kernel/sysctl.js';
import { subnetGateway, type NetworkRecord } from '../network/model.js';
import { ensureOverlayDevice } from '../overlay/device.js';
import { lbEndpointName } from '../overlay/names.js';
import { resolveUnderlay } from '../overlay/underlay.js';

/** The IPAM attachment that holds a node's endpoint address (':' keeps it apart from container ids). */
export const lbAttachment = (node: string) => ({ containerId: `node:${node}`, ifname: 'lb' });

export interface LbEndpoint {
  network: string;
  /** This node's addresses on the network, one per family of its subnets. */
  v4?: string;
  v6?: string;
  mac: string;
  /** The overlay gateway link: the SNAT rule matches packets leaving through it. */
  bridge: string;
}

/** Makes (or repairs) the overlay plumbing and the endpoint of `net` on this node. Idempotent. */
export function ensureLbEndpoint(nl: Rtnl, net: NetworkRecord, advertiseAddr: string, addresses: readonly IpAddr[]): LbEndpoint {
  const overlay = net.overlay!;
  const underlay = resolveUnderlay(nl, { address: advertiseAddr });
  const device = ensureOverlayDevice(nl, { network: net.name, vni: overlay.vni, gateway: net.bridge!, underlay, mtu: overlay.mtu });
  for (const s of net.subnets) ensureGatewayAddress(nl, device.gateway, subnetGateway(s), false);
  enableForwarding({ v4: true, v6: net.subnets.some((s) => s.subnet.includes(':')) });

  const name = lbEndpointName(net.name, overlay.vni);
  const mac = containerMac(addresses)!;
  let host = findLink(nl, name);
  if (host && (host.mac !== mac || host.kind !== 'macvlan' || host.parentIndex !== device.vxlan.index)) {
    // Another address than the one this node holds now (its blocks were reaped while away), or
    // an older Shoal's veth.
    deleteLinkIfExists(nl, name);
    host = undefined;
  }
  if (!host) host = createLink(nl, { kind: 'macvlan', name, parent: device.vxlan.index, mode: 'bridge', mac, mtu: device.mtu });
  if (!host.up) setLinkUp(nl, host);
  const have = listAddresses(nl, { link: host });
  for (const address of addresses) {
    const cidr = IpPrefix.of(address, address.family === 4 ? 32 : 128);
    if (!have.some((a) => a.prefix.equals(cidr))) addAddress(nl, host, cidr, { nodad: address.family === 6 });
  }
  // Replies from replicas arrive here while the route back to them is the gateway: strict
  // reverse-path filtering would drop them. The kernel uses max(all, this), so 2 is loose.
  ensureSysctl(interfaceSysctlKey('ipv4', name, 'rp_filter'), 2);
  // A connection from 127.0.0.1 to a published port, DNATed to a replica on another node and
  // SNATed to this address: its replies arrive here and are un-NATed to 127.0.0.1, a martian
  // destination on any interface without route_localnet.
  ensureSysctl(interfaceSysctlKey('ipv4', name, 'route_localnet'), 1);
  const v4 = addresses.find((a) => a.family === 4);
  const v6 = addresses.find((a) => a.family === 6);
  return { network: net.name, ...(v4 ? { v4: v4.toString() } : {}), ...(v6 ? { v6: v6.toString() } : {}), mac, bridge: net.bridge! };
}

/** Removes the endpoint's link (the network left this node). */
export function removeLbEndpoint(nl: Rtnl, network: string, vni: number): void {
  deleteLinkIfExists(nl, lbEndpointName(network, vni));
}
