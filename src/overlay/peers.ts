/**
 * Remote endpoints of an overlay network on this node, as desired state diffed against the
 * kernel (DESIGN §4.13). Given every remote endpoint {vtep, mac, ip} of the network, the sync
 * reads what Shoal has programmed on the network's VXLAN device, computes the
 * difference (a pure function, unit-tested) and applies only that.
 *
 * Per remote endpoint, two entries on the network's VXLAN device (README.md explains the layout):
 *
 * | entry | marked as Shoal's by |
 * |---|---|
 * | FDB `mac dst <vtep> self permanent` (where the frame goes) | `extern_learn` |
 * | neighbour `ip lladdr mac permanent` (the device's ARP/ND proxy answers from it) | `proto 83` (SHOAL_NEIGH_PROTOCOL) |
 *
 * No all-zeros (flood) FDB entries: the VXLAN device's proxy answers ARP/ND for remote
 * endpoints itself, so nothing needs to be flooded to other nodes, and a broadcast or an unknown
 * unicast reaching the VXLAN device is dropped there (counted in its tx_dropped) instead of
 * being copied to every node.
 *
 * Only entries carrying Shoal's mark are ever changed or removed; an entry someone else made
 * for a MAC or IP the sync wants (a static FDB entry, a permanent neighbour without the mark)
 * is left alone and reported. Kernel-learned state (dynamic neighbours, the device's own MAC)
 * is neither Shoal's nor in the way: the sync overwrites a dynamic neighbour with its own.
 *
 * Order of application, so that no intermediate state answers ARP for a MAC that cannot be
 * reached: additions FDB before neighbours; removals neighbours before FDB.
 * Netlink has no transaction over these; every operation is attempted, failures are collected
 * and raised together (PeerSyncError) after the rest were applied, and the next sync retries.
 */
import { deleteFdbEntry, deleteNeighbour, ignoreMissing, listFdbEntries, listNeighbours, setFdbEntry, setNeighbour } from '../kernel/neighbour.js';
import { getLink, type Link } from '../kernel/link.js';
import type { LinkRef, Rtnl } from '../kernel/rtnl.js';
import { IpAddr } from '../addr.js';
import { PeerSyncError } from './errors.js';
import { SHOAL_NEIGH_PROTOCOL, vxlanDeviceName } from './names.js';

/** One address of a container on another node: what the daemon reads from the store. */
export interface RemoteEndpoint {
  /** Underlay address of the node the container is on (its VTEP). */
  vtep: string;
  mac: string;
  /** The container's address (a bare address; a CIDR's prefix is ignored). Dual stack: one record per address. */
  ip: string;
}

/** The device of an overlay network on this node that holds its peers. */
export interface PeerTarget {
  vxlan: LinkRef;
}

/** The VXLAN device of (network, VNI) by name, as ensureOverlayDevice makes it. */
export function overlayTarget(network: string, vni: number): PeerTarget {
  return { vxlan: vxlanDeviceName(network, vni) };
}

/** What should be programmed: one VTEP per MAC, one MAC per IP. */
export interface DesiredPeers {
  /** MAC → VTEP. */
  remotes: Map<string, string>;
  /** IP → MAC. */
  neighbours: Map<string, string>;
}

/** What is programmed, as read back from the kernel. */
export interface CurrentPeers {
  /** Shoal's VXLAN FDB entries: MAC → VTEPs (the kernel allows several per MAC). */
  remotes: Map<string, string[]>;
  /** Shoal's neighbours on the VXLAN device: IP → MAC. */
  neighbours: Map<string, string>;
  /** MACs with a static FDB entry that Shoal did not make (left alone). */
  foreignMacs: Set<string>;
  /** IPs with a permanent neighbour on the VXLAN device that Shoal did not make (left alone). */
  foreignIps: Set<string>;
}

export type PeerOp =
  | { op: 'set-remote'; mac: string; vtep: string; from?: string }
  | { op: 'set-neighbour'; ip: string; mac: string; from?: string }
  | { op: 'del-neighbour'; ip: string; mac: string }
  | { op: 'del-remote'; mac: string; vtep: string };

export interface PeerPlan {
  /** In the order they must be applied. Empty: the kernel already has the desired state. */
  ops: PeerOp[];
  /** Why some desired entries are not programmed (someone else's entry is in the way). */
  problems: string[];
}

export function emptyPeers(): CurrentPeers {
  return { remotes: new Map(), neighbours: new Map(), foreignMacs: new Set(), foreignIps: new Set() };
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

function canonicalIp(text: string): string | undefined {
  return IpAddr.tryParse(text.split('/')[0] ?? '')?.toString();
}

function canonicalMac(text: string): string | undefined {
  const mac = text.toLowerCase();
  if (!MAC_RE.test(mac)) return undefined;
  // A group (multicast/broadcast) address or all zeros is never a container's.
  if ((parseInt(mac.slice(0, 2), 16) & 1) === 1 || mac === '00:00:00:00:00:00') return undefined;
  return mac;
}

const byText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The desired state from the network's endpoints: malformed records and endpoints on the local
 * VTEP (this node's own, reached through macvlan's bridge mode) are left out. Conflicts are settled the same
 * way on every node and reported: a MAC announced by two VTEPs goes to the lowest VTEP (as
 * text), an IP announced with two MACs to the lowest MAC.
 */
export function desiredPeers(endpoints: Iterable<RemoteEndpoint>, options: { localVtep?: string } = {}): { desired: DesiredPeers; problems: string[] } {
  const local = options.localVtep === undefined ? undefined : canonicalIp(options.localVtep);
  const problems: string[] = [];
  const valid: RemoteEndpoint[] = [];
  for (const e of endpoints) {
    const vtep = canonicalIp(e.vtep);
    const mac = canonicalMac(e.mac);
    const ip = canonicalIp(e.ip);
    if (!vtep || !mac || !ip) {
      problems.push(`endpoint ${JSON.stringify(e)} ignored: ${!vtep ? 'vtep is not an IP address' : !mac ? 'mac is not a unicast MAC address' : 'ip is not an IP address'}`);
      continue;
    }
    if (vtep === local) continue;
    valid.push({ vtep, mac, ip });
  }
  valid.sort((a, b) => byText(a.mac, b.mac) || byText(a.vtep, b.vtep) || byText(a.ip, b.ip));
  const remotes = new Map<string, string>();
  const neighbours = new Map<string, string>();
  for (const e of valid) {
    const had = remotes.get(e.mac);
    if (had === undefined) remotes.set(e.mac, e.vtep);
    else if (had !== e.vtep) {
      problems.push(`MAC ${e.mac} is announced by VTEPs ${had} and ${e.vtep}: using ${had}`);
      continue;
    }
    const owner = neighbours.get(e.ip);
    if (owner === undefined) neighbours.set(e.ip, e.mac);
    else if (owner !== e.mac) problems.push(`IP ${e.ip} is announced with MACs ${owner} and ${e.mac}: using ${owner}`);
  }
  return { desired: { remotes, neighbours }, problems };
}

/** The operations that turn `current` into `desired`, touching only what differs. */
export function diffPeers(current: CurrentPeers, desired: DesiredPeers): PeerPlan {
  const problems: string[] = [];
  const setRemote: PeerOp[] = [];
  const setNeigh: PeerOp[] = [];
  const delNeigh: PeerOp[] = [];
  const delRemote: PeerOp[] = [];

  for (const mac of [...desired.remotes.keys()].sort(byText)) {
    const vtep = desired.remotes.get(mac)!;
    if (current.foreignMacs.has(mac)) {
      problems.push(`MAC ${mac}: an FDB entry Shoal did not make is in the way; left alone`);
      continue;
    }
    const have = current.remotes.get(mac) ?? [];
    if (!have.includes(vtep)) {
      // Replace moves the entry's (first) destination in place: no moment without one.
      setRemote.push(have[0] === undefined ? { op: 'set-remote', mac, vtep } : { op: 'set-remote', mac, vtep, from: have[0] });
      for (const other of have.slice(1)) delRemote.push({ op: 'del-remote', mac, vtep: other });
    } else {
      for (const other of have) if (other !== vtep) delRemote.push({ op: 'del-remote', mac, vtep: other });
    }
  }
  for (const ip of [...desired.neighbours.keys()].sort(byText)) {
    const mac = desired.neighbours.get(ip)!;
    if (current.foreignIps.has(ip)) {
      problems.push(`IP ${ip}: a permanent neighbour entry Shoal did not make is in the way; left alone`);
      continue;
    }
    const have = current.neighbours.get(ip);
    if (have !== mac) setNeigh.push(have === undefined ? { op: 'set-neighbour', ip, mac } : { op: 'set-neighbour', ip, mac, from: have });
  }
  for (const ip of [...current.neighbours.keys()].sort(byText)) {
    if (!desired.neighbours.has(ip)) delNeigh.push({ op: 'del-neighbour', ip, mac: current.neighbours.get(ip)! });
  }
  for (const mac of [...current.remotes.keys()].sort(byText)) {
    if (desired.remotes.has(mac)) continue;
    for (const vtep of current.remotes.get(mac)!) delRemote.push({ op: 'del-remote', mac, vtep });
  }
  return { ops: [...setRemote, ...setNeigh, ...delNeigh, ...delRemote], problems };
}

const ZERO_MAC = '00:00:00:00:00:00';

/** Shoal's entries (and others' in the way) on the network's VXLAN device. */
export function readPeers(nl: Rtnl, vxlan: Link): CurrentPeers {
  const current = emptyPeers();
  for (const e of listFdbEntries(nl, { dev: vxlan })) {
    // Flood entries are never Shoal's (it makes none) and never a container's MAC.
    if (e.mac === ZERO_MAC) continue;
    if (e.self) {
      if (e.dst === undefined) continue;
      if (e.externLearned) {
        const list = current.remotes.get(e.mac) ?? [];
        list.push(canonicalIp(e.dst) ?? e.dst);
        current.remotes.set(e.mac, list);
      } else {
        current.foreignMacs.add(e.mac);
      }
    }
  }
  for (const n of listNeighbours(nl, { dev: vxlan })) {
    if (n.ip === undefined) continue;
    const ip = canonicalIp(n.ip) ?? n.ip;
    if (n.protocol === SHOAL_NEIGH_PROTOCOL && n.mac) current.neighbours.set(ip, n.mac);
    else if (n.permanent) current.foreignIps.add(ip);
  }
  return current;
}

function opText(o: PeerOp): string {
  switch (o.op) {
    case 'set-remote':
      return `set FDB ${o.mac} dst ${o.vtep}${o.from ? ` (was ${o.from})` : ''}`;
    case 'set-neighbour':
      return `set neighbour ${o.ip} lladdr ${o.mac}${o.from ? ` (was ${o.from})` : ''}`;
    case 'del-neighbour':
      return `delete neighbour ${o.ip}`;
    case 'del-remote':
      return `delete FDB ${o.mac} dst ${o.vtep}`;
  }
}

/** Applies `ops` in order; every one is attempted. Returns the failures (empty: all applied). */
export function applyPeerOps(nl: Rtnl, vxlan: Link, ops: readonly PeerOp[]): string[] {
  const failures: string[] = [];
  for (const o of ops) {
    try {
      switch (o.op) {
        case 'set-remote':
          setFdbEntry(nl, { dev: vxlan, mac: o.mac, dst: o.vtep, state: 'permanent', externLearned: true }, 'replace');
          break;
        case 'set-neighbour':
          setNeighbour(nl, { dev: vxlan, ip: o.ip, mac: o.mac, state: 'permanent', protocol: SHOAL_NEIGH_PROTOCOL }, 'replace');
          break;
        case 'del-neighbour':
          ignoreMissing(() => deleteNeighbour(nl, { dev: vxlan, ip: o.ip }));
          break;
        case 'del-remote':
          ignoreMissing(() => deleteFdbEntry(nl, { dev: vxlan, mac: o.mac, dst: o.vtep }));
          break;
      }
    } catch (err) {
      failures.push(`${opText(o)}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return failures;
}

export interface PeerSyncReport {
  /** What was applied, in order (empty when the kernel already matched). */
  ops: PeerOp[];
  /** Endpoints or entries not programmed, and why (conflicts, malformed records, foreign entries). */
  problems: string[];
}

/**
 * Brings the network's peer entries on this node to `endpoints` (all of the network's endpoints;
 * those on `localVtep` are skipped). Reads the kernel once, applies the difference, and throws
 * PeerSyncError naming every operation that failed after attempting all of them. The devices
 * must exist (ensureOverlayDevice, or the network's first ADD on this node).
 */
export function syncPeers(nl: Rtnl, target: PeerTarget, endpoints: Iterable<RemoteEndpoint>, options: { localVtep?: string } = {}): PeerSyncReport {
  const vxlan = getLink(nl, target.vxlan);
  const { desired, problems } = desiredPeers(endpoints, options);
  const plan = diffPeers(readPeers(nl, vxlan), desired);
  const failures = applyPeerOps(nl, vxlan, plan.ops);
  if (failures.length > 0) throw new PeerSyncError(vxlan.name, failures);
  return { ops: plan.ops, problems: [...problems, ...plan.problems] };
}

export { opText as describePeerOp };
