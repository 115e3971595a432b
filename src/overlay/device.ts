/**
 * The per-network devices of a node: the VXLAN device and, on it, macvlans in bridge mode.
 *
 *   container eth0 (macvlan) ─┐
 *   container eth0 (macvlan) ─┼─ vx-<vni>-<net>  (VNI, UDP 4789, local = underlay address,
 *   gateway "vb-…" (macvlan) ─┤                   dev = underlay, learning off, proxy on)
 *   lb endpoint "lb-…" (macvlan)┘
 *
 * Why macvlans and not a bridge with veths (issue 14): a host with br_netfilter loaded (every
 * Docker or Kubernetes host) sends every frame crossing a Linux bridge through the host's
 * netfilter hooks (conntrack, NAT, filter chains), once on each node. Container-to-container
 * traffic across nodes then ran at 0.81-0.84x the bare underlay; macvlans on the VXLAN device
 * switch frames below netfilter (0.87-0.92x, as the kernel's own VXLAN does on the same nodes;
 * README.md has the numbers). Frames between containers of the node are switched by macvlan's
 * bridge mode; frames for other MACs go to the VXLAN device, which sends them to the VTEP its
 * FDB names.
 *
 * The gateway is a macvlan in the host holding the gateway addresses, under the name the bridge
 * had ("vb-…", or the config's `bridge`), with the MAC derived from that name: the same address
 * and MAC on every node (an anycast gateway), in Shoal's device group, so the host's rules
 * (isolation, masquerade, the load balancer's) see it as they saw the bridge.
 *
 * The VXLAN device has learning off (remote MACs are programmed, never learned) and proxy on: it
 * answers ARP requests and neighbour solicitations for remote containers from the neighbour
 * entries peers.ts writes on it, so those never cross the underlay.
 *
 * `ensureOverlayDevice` is desired state: it creates what is missing and corrects what can be
 * corrected in place (local address and underlay dev after a node was re-addressed, learning,
 * MTU, up); what cannot (the VNI, the port, proxy, a foreign link under a name) is an error
 * naming it. Idempotent under concurrent ADDs: a creator that loses the race (EEXIST) uses the
 * winner's device. DEL never removes them; `removeOverlayDevice` is for network removal.
 */
import { LinkExistsError, NetlinkError } from '../kernel/errors.js';
import { changeLinkInfo, createLink, deleteLinkIfExists, findLink, getLink, listLinks, setLinkGroup, setLinkMtu, setLinkUp, type Link } from '../kernel/link.js';
import type { Rtnl } from '../kernel/rtnl.js';
import { skipLinkLocalDad } from '../bridge/bridge-device.js';
import { LinkConflictError } from '../bridge/errors.js';
import { SHOAL_BRIDGE_GROUP } from '../bridge/firewall.js';
import { bridgeMac } from '../bridge/mac.js';
import { OverlayConfigError } from './errors.js';
import { VXLAN_PORT, vxlanDeviceName } from './names.js';
import { vxlanOverhead, type Underlay } from './underlay.js';

export interface OverlayDeviceSpec {
  /** Network name: with the VNI, it names the VXLAN device. */
  network: string;
  vni: number;
  /** The network's gateway link (the config's `bridge`): created if missing, with the MAC derived from its name. */
  gateway: string;
  underlay: Underlay;
  /** MTU of the VXLAN device and the gateway, and what containers should get. Default: underlay MTU − overhead. */
  mtu?: number | undefined;
}

export interface OverlayDevice {
  vxlan: Link;
  /** The gateway macvlan (holds the gateway addresses). */
  gateway: Link;
  /** The overlay MTU in effect (give it to the containers' links). */
  mtu: number;
}

/**
 * The overlay MTU: `requested`, or the underlay's MTU minus the VXLAN overhead (50 bytes over
 * IPv4, 70 over IPv6: a 9000-byte underlay gives 8950). More than the underlay can carry is a
 * config error naming `mtu` (the kernel refuses it with a bare EINVAL).
 */
export function overlayMtu(underlay: Pick<Underlay, 'mtu' | 'family' | 'link'>, requested?: number): number {
  const overhead = vxlanOverhead(underlay.family);
  const max = underlay.mtu - overhead;
  if (requested === undefined) return max;
  if (requested > max) {
    throw new OverlayConfigError('mtu', requested, `is more than the underlay "${underlay.link.name}" can carry (its MTU ${underlay.mtu} − ${overhead} bytes of VXLAN over IPv${underlay.family} = ${max})`);
  }
  return requested;
}

/**
 * The kernel's refusal of a VXLAN setting, with the config field it concerns named when its
 * extended-ack text says which (e.g. "VXLAN ID must be lower than 16777216", "A VXLAN device
 * with the specified VNI already exists"); any other refusal passes through as it came.
 */
function kernelRefusal(err: NetlinkError, spec: OverlayDeviceSpec): Error {
  const text = err.kernelMessage ?? '';
  const field = /VNI|VXLAN ID/i.test(text) ? 'vni' : /MTU/i.test(text) ? 'mtu' : /local/i.test(text) ? 'underlayAddress' : undefined;
  if (!field) return err;
  const value = field === 'vni' ? spec.vni : field === 'mtu' ? spec.mtu : spec.underlay.address;
  return new OverlayConfigError(field, value, `was refused by the kernel: ${err.message} (vni ${spec.vni}, local ${spec.underlay.address}, dev ${spec.underlay.link.name}, port ${VXLAN_PORT})`, { cause: err });
}

/** Creates the VXLAN device, or finds the one a racing ADD made. Returns it and whether this call made it. */
function createOrFind(nl: Rtnl, spec: OverlayDeviceSpec, name: string, mtu: number): { link: Link; created: boolean } {
  try {
    const link = createLink(nl, {
      kind: 'vxlan',
      name,
      vni: spec.vni,
      local: spec.underlay.address,
      port: VXLAN_PORT,
      learning: false,
      proxy: true,
      dev: spec.underlay.link.index,
      mtu,
    });
    return { link, created: true };
  } catch (err) {
    if (err instanceof LinkExistsError) {
      // EEXIST is either the name (a racing ADD made it: use it) or the kernel's "A VXLAN
      // device with the specified VNI already exists" (another device has this VNI and port).
      const raced = findLink(nl, name);
      if (raced) return { link: raced, created: false };
      if (err.cause instanceof NetlinkError) throw kernelRefusal(err.cause, spec);
      throw err;
    }
    if (err instanceof NetlinkError) throw kernelRefusal(err, spec);
    throw err;
  }
}

/** Corrects what differs and can change in place; refuses what cannot. True when it changed something. */
function reconcile(nl: Rtnl, link: Link, spec: OverlayDeviceSpec, mtu: number): boolean {
  const name = link.name;
  if (link.kind !== 'vxlan') throw new LinkConflictError(`failed to use vxlan "${name}": a link of kind ${link.kind ?? 'unknown'} already has that name`);
  const vx = link.vxlan;
  if (!vx || vx.vni !== spec.vni) throw new LinkConflictError(`failed to use vxlan "${name}": it has VNI ${vx?.vni ?? 'unknown'}, not ${spec.vni}`);
  if (vx.port !== VXLAN_PORT) throw new LinkConflictError(`failed to use vxlan "${name}": it uses UDP port ${vx.port ?? 'unknown'}, not ${VXLAN_PORT} (the kernel cannot change it in place)`);
  if (vx.proxy !== true || link.masterIndex !== undefined) {
    throw new LinkConflictError(`failed to use vxlan "${name}": it is an older Shoal's (a bridge port without ARP/ND proxy, which the kernel cannot turn on in place); remove the network's containers on this node and delete the link`);
  }
  const change: { local?: string; dev?: number; learning?: boolean } = {};
  if (vx.local !== spec.underlay.address) change.local = spec.underlay.address;
  if (vx.underlayIndex !== spec.underlay.link.index) change.dev = spec.underlay.link.index;
  if (vx.learning !== false) change.learning = false;
  const changed = Object.keys(change).length > 0;
  if (changed) {
    try {
      changeLinkInfo(nl, link, { kind: 'vxlan', vni: spec.vni, ...change });
    } catch (err) {
      if (err instanceof NetlinkError) throw kernelRefusal(err, spec);
      throw err;
    }
  }
  if (link.mtu !== mtu) setLinkMtu(nl, link, mtu);
  return changed || link.mtu !== mtu;
}

/** What a link found under the gateway's name is, for the refusal. */
function foreignGateway(link: Link): string {
  if (link.kind === 'bridge') return "an older Shoal's overlay bridge (remove the network's containers on this node and delete it)";
  return link.kind === 'macvlan' ? 'a macvlan on another link' : `a link of kind ${link.kind ?? 'unknown'}`;
}

/**
 * The gateway macvlan on `vxlan`: created if missing (DAD off before it is up, as for a bridge),
 * up, in Shoal's device group, with the derived MAC and the overlay MTU. `found`: the link under
 * `name` as the caller already looked it up.
 */
function ensureGateway(nl: Rtnl, name: string, found: Link | undefined, vxlan: Link, mtu: number): Link {
  let link = found;
  if (!link) {
    // One gateway per network: another one on the device means the network's `bridge` changed.
    // One under this very name was made by a racing ADD since the caller looked: it is used below.
    const other = listLinks(nl).find((l) => l.kind === 'macvlan' && l.parentIndex === vxlan.index && l.group === SHOAL_BRIDGE_GROUP && l.name !== name);
    if (other) throw new LinkConflictError(`failed to add gateway "${name}" to vxlan "${vxlan.name}": its gateway is "${other.name}" (did the network's bridge change?)`);
    try {
      link = createLink(nl, { kind: 'macvlan', name, parent: vxlan.index, mode: 'bridge', mac: bridgeMac(name), mtu });
    } catch (err) {
      if (!(err instanceof LinkExistsError)) throw err;
      link = getLink(nl, name);
    }
  }
  if (link.kind !== 'macvlan' || link.parentIndex !== vxlan.index) throw new LinkConflictError(`failed to use gateway "${name}": it is ${foreignGateway(link)}`);
  if (link.up && link.group === SHOAL_BRIDGE_GROUP && link.mtu === mtu) return link;
  if (!link.up) {
    skipLinkLocalDad(nl, name);
    setLinkUp(nl, link.index);
  }
  if (link.group !== SHOAL_BRIDGE_GROUP) setLinkGroup(nl, link.index, SHOAL_BRIDGE_GROUP);
  if (link.mtu !== mtu) setLinkMtu(nl, link.index, mtu);
  return getLink(nl, link.index);
}

/**
 * Makes the network's VXLAN device (learning off, proxy on, up) and its gateway macvlan exist
 * as `spec` says. See the module comment.
 */
export function ensureOverlayDevice(nl: Rtnl, spec: OverlayDeviceSpec): OverlayDevice {
  const name = vxlanDeviceName(spec.network, spec.vni);
  const mtu = overlayMtu(spec.underlay, spec.mtu);
  // A foreign link under the gateway's name fails before anything is made.
  const existingGateway = findLink(nl, spec.gateway);
  if (existingGateway && existingGateway.kind !== 'macvlan') throw new LinkConflictError(`failed to use gateway "${spec.gateway}": it is ${foreignGateway(existingGateway)}`);
  // The VXLAN device first: the kernel's refusals (a VNI clash) leave nothing behind.
  let vxlan = findLink(nl, name);
  let created = false;
  if (!vxlan) ({ link: vxlan, created } = createOrFind(nl, spec, name, mtu));
  try {
    const changed = !created && reconcile(nl, vxlan, spec, mtu);
    const wasUp = vxlan.up;
    if (!wasUp) setLinkUp(nl, vxlan.index);
    const gateway = ensureGateway(nl, spec.gateway, existingGateway, vxlan, mtu);
    return { vxlan: changed || !wasUp ? getLink(nl, vxlan.index) : vxlan, gateway, mtu };
  } catch (err) {
    // Made here and not usable: leave nothing (a racing ADD that found it fails the same way).
    if (created) deleteLinkIfExists(nl, vxlan.index);
    throw err;
  }
}

/** CHECK: the devices exist as ensureOverlayDevice leaves them. Returns what differs (empty: fine). */
export function overlayDeviceProblems(nl: Rtnl, spec: Omit<OverlayDeviceSpec, 'mtu'>): string[] {
  const name = vxlanDeviceName(spec.network, spec.vni);
  const link = findLink(nl, name);
  if (!link) return [`vxlan "${name}" does not exist`];
  const problems: string[] = [];
  const vx = link.vxlan;
  if (link.kind !== 'vxlan' || !vx) return [`"${name}" is a ${link.kind ?? 'non-vxlan'} link`];
  if (vx.vni !== spec.vni) problems.push(`VNI is ${vx.vni}, not ${spec.vni}`);
  if (vx.port !== VXLAN_PORT) problems.push(`port is ${vx.port ?? 'unset'}, not ${VXLAN_PORT}`);
  if (vx.local !== spec.underlay.address) problems.push(`local address is ${vx.local ?? 'unset'}, not ${spec.underlay.address}`);
  if (vx.underlayIndex !== spec.underlay.link.index) problems.push(`underlay dev is not "${spec.underlay.link.name}"`);
  if (vx.learning !== false) problems.push('learning is on');
  if (vx.proxy !== true) problems.push('ARP/ND proxy is off');
  if (!link.up) problems.push('it is down');
  const gateway = findLink(nl, spec.gateway);
  if (gateway?.kind !== 'macvlan' || gateway.parentIndex !== link.index) problems.push(`its gateway "${spec.gateway}" is not a macvlan on it`);
  else if (!gateway.up) problems.push(`its gateway "${spec.gateway}" is down`);
  return problems.map((p) => `vxlan "${name}": ${p}`);
}

/**
 * Deletes the network's VXLAN device (network removal; DEL never does), and with it every
 * macvlan on it: the gateway, the load-balancer endpoint. False when it was gone.
 */
export function removeOverlayDevice(nl: Rtnl, network: string, vni: number): boolean {
  const name = vxlanDeviceName(network, vni);
  const link = findLink(nl, name);
  if (link?.kind !== 'vxlan') return false;
  return deleteLinkIfExists(nl, link.index);
}
