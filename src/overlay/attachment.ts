/**
 * A container's link on an overlay network: a macvlan in bridge mode on the network's VXLAN
 * device (device.ts says why not a veth on a bridge), created directly inside the container
 * under CNI_IFNAME (IFLA_NET_NS_FD): it never exists in the host, so no crash can leave one
 * there, and no host link's name is in the way. The rest of the attachment is shoal-bridge's
 * (plugin.ts).
 */
import type { CniRequest } from '../../cni/skel.js';
import type { CniInterface } from '../../cni/types.js';
import type { ContainerLinkCheck, ContainerLinkMaker } from '../bridge/bridge-plugin.js';
import { AttachmentCheckError, LinkConflictError } from '../bridge/errors.js';
import { LinkExistsError } from '../kernel/errors.js';
import { createLink, deleteLinkIfExists, findLink, type Link } from '../kernel/link.js';
import type { Rtnl } from '../kernel/rtnl.js';
import { vxlanDeviceName } from './names.js';

/** The kind of a container's link on an overlay (DEL deletes only a link of this kind). */
export const OVERLAY_LINK_KIND = 'macvlan';

/** CHECK: the container's link is a macvlan on the VXLAN device of (network, VNI). */
export function overlayLinkCheck(network: string, vni: number): ContainerLinkCheck {
  const vxlanName = vxlanDeviceName(network, vni);
  return {
    verify(host: Rtnl, link: Link): void {
      const vxlan = findLink(host, vxlanName);
      if (link.kind !== OVERLAY_LINK_KIND || vxlan === undefined || link.parentIndex !== vxlan.index) {
        throw new AttachmentCheckError(`failed to check "${link.name}": it is not a macvlan on vxlan "${vxlanName}"`);
      }
    },
  };
}

/** Links on the VXLAN device of (network, VNI), the gateway being `gateway` (ensured by the caller). */
export function overlayLinkMaker(network: string, vni: number, gateway: Link): ContainerLinkMaker {
  const vxlanName = vxlanDeviceName(network, vni);
  return {
    ...overlayLinkCheck(network, vni),
    kind: OVERLAY_LINK_KIND,
    gateway: () => gateway,
    make(host: Rtnl, ctr: Rtnl, req: CniRequest, o: { mtu: number | undefined; mac: string | undefined }, undo): CniInterface[] {
      try {
        createLink(host, { kind: 'macvlan', name: req.ifname, parent: vxlanName, mode: 'bridge', mtu: o.mtu, mac: o.mac, into: ctr });
      } catch (err) {
        if (err instanceof LinkExistsError) throw new LinkConflictError(`failed to create macvlan "${req.ifname}": it already exists in ${req.netns}`, { cause: err });
        throw err;
      }
      undo.push(`delete macvlan "${req.ifname}" in ${req.netns}`, () => deleteLinkIfExists(ctr, req.ifname));
      return [];
    },
  };
}
