/**
 * The per-network VXLAN device of a node, enslaved to the network's bridge:
 *
 *   container veth ─┐
 *   container veth ─┼─ bridge (gateway address, MAC derived from its name) ── vx-<vni>-<net>
 *                   │                                                  (VNI, UDP 4789,
 *                                                                        local = underlay address,
 *                                                                        dev = underlay,
 *                                                                        learning off, proxy off)
 *
 * As bridge port, the VXLAN device has learning off (remote MACs are programmed, never learned)
 * and neigh_suppress on: the bridge answers ARP/ND for remote containers from the neighbour
 * entries peers.ts writes on it, so those requests never cross the underlay (README.md says
 * why this replaces flooding).
 *
 * `ensureOverlayDevice` is desired state for the device itself: it creates what is missing and
 * corrects what can be corrected in place (local address and underlay dev after a node was
 * re-addressed, learning, MTU, port flags, master, up); what cannot (the VNI, the port, a
 * foreign link under the name) is an error naming it. Idempotent under concurrent ADDs: a
 * creator that loses the race (EEXIST) uses the winner's device, as ensureBridge does. Like
 * the bridge, DEL never removes it; `removeOverlayDevice` is for network removal.
 */
import { LinkExistsError, NetlinkError } from '../kernel/errors.js';
import {
  changeLinkInfo,
  createLink,
  deleteLinkIfExists,
  findLink,
  getLink,
  setBridgePortFlags,
  setLinkMaster,
  setLinkMtu,
  setLinkUp,
  type Link,
} from '../kernel/link.js';
import type { Rtnl } from '../kernel/rtnl.js';
import { ensureBridge } from '../bridge/bridge-device.js';
import { LinkConflictError } from '../bridge/errors.js';
import { OverlayConfigError } from './errors.js';
import { VXLAN_PORT, vxlanDeviceName } from './names.js';
import { vxlanOverhead, type Underlay } from './underlay.js';

export interface OverlayDeviceSpec {
  /** Network name: with the VNI, it names the VXLAN device. */
  network: string;
  vni: number;
  /** The network's bridge (created if missing, with its derived MAC). */
  bridge: string;
  underlay: Underlay;
  /** MTU of the VXLAN device, of a bridge created here, and what containers should get. Default: underlay MTU − overhead. */
  mtu?: number | undefined;
}

export interface OverlayDevice {
  vxlan: Link;
  bridge: Link;
  /** The overlay MTU in effect (give it to the containers' veths). */
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

/** Corrects what differs and can change in place; refuses what cannot. */
function reconcile(nl: Rtnl, link: Link, spec: OverlayDeviceSpec, mtu: number): void {
  const name = link.name;
  if (link.kind !== 'vxlan') throw new LinkConflictError(`failed to use vxlan "${name}": a link of kind ${link.kind ?? 'unknown'} already has that name`);
  const vx = link.vxlan;
  if (!vx || vx.vni !== spec.vni) throw new LinkConflictError(`failed to use vxlan "${name}": it has VNI ${vx?.vni ?? 'unknown'}, not ${spec.vni}`);
  if (vx.port !== VXLAN_PORT) throw new LinkConflictError(`failed to use vxlan "${name}": it uses UDP port ${vx.port ?? 'unknown'}, not ${VXLAN_PORT} (the kernel cannot change it in place)`);
  const change: { local?: string; dev?: number; learning?: boolean } = {};
  if (vx.local !== spec.underlay.address) change.local = spec.underlay.address;
  if (vx.underlayIndex !== spec.underlay.link.index) change.dev = spec.underlay.link.index;
  if (vx.learning !== false) change.learning = false;
  if (Object.keys(change).length > 0) {
    try {
      changeLinkInfo(nl, link, { kind: 'vxlan', vni: spec.vni, ...change });
    } catch (err) {
      if (err instanceof NetlinkError) throw kernelRefusal(err, spec);
      throw err;
    }
  }
  if (link.mtu !== mtu) setLinkMtu(nl, link, mtu);
}

/**
 * Makes the network's VXLAN device and bridge exist as `spec` says, the device enslaved to the
 * bridge with learning off and neigh_suppress on, up. See the module comment.
 */
export function ensureOverlayDevice(nl: Rtnl, spec: OverlayDeviceSpec): OverlayDevice {
  const name = vxlanDeviceName(spec.network, spec.vni);
  const mtu = overlayMtu(spec.underlay, spec.mtu);
  // A foreign link under the bridge's name fails before anything is made.
  const existingBridge = findLink(nl, spec.bridge);
  if (existingBridge && existingBridge.kind !== 'bridge') {
    throw new LinkConflictError(`failed to use bridge "${spec.bridge}": a link of kind ${existingBridge.kind ?? 'unknown'} already has that name`);
  }
  // The VXLAN device before the bridge: the kernel's refusals (a VNI clash) leave nothing behind.
  let vxlan = findLink(nl, name);
  let created = false;
  if (!vxlan) ({ link: vxlan, created } = createOrFind(nl, spec, name, mtu));
  try {
    if (!created) reconcile(nl, vxlan, spec, mtu);
    const bridge = ensureBridge(nl, { name: spec.bridge, mtu, promiscMode: false });
    if (vxlan.masterIndex !== bridge.index) {
      if (vxlan.masterIndex !== undefined) {
        const other = findLink(nl, vxlan.masterIndex)?.name ?? `ifindex ${vxlan.masterIndex}`;
        throw new LinkConflictError(`failed to attach vxlan "${name}" to bridge "${spec.bridge}": it is attached to "${other}" (did the network's bridge change?)`);
      }
      setLinkMaster(nl, vxlan, bridge);
    }
    const port = getLink(nl, vxlan.index);
    if (port.bridgePort?.learning !== false || port.bridgePort.neighSuppress !== true) {
      setBridgePortFlags(nl, port, { learning: false, neighSuppress: true });
    }
    if (!port.up) setLinkUp(nl, port);
    return { vxlan: getLink(nl, vxlan.index), bridge, mtu };
  } catch (err) {
    // Made here and not usable: leave nothing (a racing ADD that found it fails the same way).
    if (created) deleteLinkIfExists(nl, vxlan.index);
    throw err;
  }
}

/** CHECK: the device exists as ensureOverlayDevice leaves it. Returns what differs (empty: fine). */
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
  if (!link.up) problems.push('it is down');
  const bridge = findLink(nl, spec.bridge);
  if (!bridge || link.masterIndex !== bridge.index) problems.push(`it is not attached to bridge "${spec.bridge}"`);
  else if (link.bridgePort?.learning !== false || link.bridgePort.neighSuppress !== true) problems.push('its bridge port needs learning off and neigh_suppress on');
  return problems.map((p) => `vxlan "${name}": ${p}`);
}

/** Deletes the network's VXLAN device (network removal; DEL never does). False when it was gone. */
export function removeOverlayDevice(nl: Rtnl, network: string, vni: number): boolean {
  const name = vxlanDeviceName(network, vni);
  const link = findLink(nl, name);
  if (link?.kind !== 'vxlan') return false;
  return deleteLinkIfExists(nl, link.index);
}
