/**
 * Network links over rtnetlink: create (bridge, veth, vxlan, macvlan, ipvlan), get, list,
 * delete, and change state (up/down, MTU, MAC, master, name, netns, kind options). Every
 * function works in the netns of the handle it is given.
 */
import { readFileSync } from 'node:fs';
import { LinkExistsError, LinkNotFoundError, NetlinkError } from './errors.js';
import { attr, type Attr } from './netlink/codec.js';
import {
  AF_BRIDGE,
  AF_UNSPEC,
  IFF_PROMISC,
  IFF_UP,
  IFLA_EXT_MASK,
  IFLA_IFNAME,
  IFLA_NET_NS_FD,
  IFLA_PROTINFO,
  NLM_F_CREATE,
  NLM_F_EXCL,
  RTEXT_FILTER_SKIP_STATS,
  RTM_DELLINK,
  RTM_GETLINK,
  RTM_NEWLINK,
  RTM_SETLINK,
} from './netlink/constants.js';
import type { IpvlanFlag, IpvlanMode, MacvlanMode } from './netlink/constants.js';
import {
  bridgePortAttrs,
  commonLinkAttrs,
  decodeLink,
  encodeIfinfomsg,
  linkInfoAttr,
  type BridgePortFlags,
  type BridgePortInfo,
  type Link,
  type LinkInfoSpec,
  type VxlanInfo,
} from './link-codec.js';
import { knownIndex, linkRefText, op, withNetnsFd, type LinkRef, type Rtnl } from './rtnl.js';

export type { BridgePortFlags, BridgePortInfo, Link, VxlanInfo } from './link-codec.js';

/** What to create. `master`, `parent` and `dev` are resolved in the handle's netns. */
export type CreateLinkSpec = {
  name: string;
  mtu?: number;
  mac?: string;
  master?: LinkRef;
  /** Bring the link up once created. */
  up?: boolean;
  /**
   * Create the link directly inside this handle's netns (IFLA_NET_NS_FD), e.g. a macvlan in a
   * container on a parent in the host: nothing of it ever exists in the host, not even for a
   * moment a crash could leave behind. The name must be free there.
   */
  into?: Rtnl;
} & (
  | { kind: 'bridge'; vlanFiltering?: boolean }
  | {
      kind: 'veth';
      /** `netns` (a path or /run/netns name) creates the peer directly inside that namespace. */
      peer: { name: string; netns?: string; mtu?: number; mac?: string };
    }
  | ({ kind: 'vxlan'; dev?: LinkRef } & Omit<VxlanInfo, 'underlayIndex'>)
  | { kind: 'macvlan'; parent: LinkRef; mode: MacvlanMode }
  | { kind: 'ipvlan'; parent: LinkRef; mode: IpvlanMode; flag?: IpvlanFlag }
);

/** Kind options that can be changed on an existing link (RTM_NEWLINK without NLM_F_CREATE). */
export type ChangeLinkInfoSpec =
  | ({ kind: 'vxlan' } & Partial<Omit<VxlanInfo, 'vni' | 'underlayIndex' | 'proxy'>> & { vni: number; dev?: LinkRef })
  | { kind: 'macvlan'; mode: MacvlanMode }
  | { kind: 'ipvlan'; mode: IpvlanMode; flag?: IpvlanFlag };

/** Turns "no such device" from the kernel into LinkNotFoundError; other errors pass through. */
function notFound(nl: Rtnl, ref: LinkRef, err: unknown): never {
  if (err instanceof NetlinkError && err.errnoName === 'ENODEV') throw new LinkNotFoundError(linkRefText(ref), nl.where, { cause: err });
  throw err;
}

/** The link `ref` names; LinkNotFoundError when there is none. */
export function getLink(nl: Rtnl, ref: LinkRef): Link {
  const attrs: Attr[] = [attr.u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)];
  if (typeof ref === 'string') attrs.push(attr.str(IFLA_IFNAME, ref));
  const header = encodeIfinfomsg({ index: knownIndex(ref) ?? 0 });
  let replies;
  try {
    replies = nl.sock.request({ type: RTM_GETLINK, flags: 0, header, attrs }, op('get link', linkRefText(ref)));
  } catch (err) {
    notFound(nl, ref, err);
  }
  const first = replies[0];
  if (!first) throw new LinkNotFoundError(linkRefText(ref), nl.where);
  return decodeLink(first.payload);
}

/** The link `ref` names, or undefined when there is none. */
export function findLink(nl: Rtnl, ref: LinkRef): Link | undefined {
  try {
    return getLink(nl, ref);
  } catch (err) {
    if (err instanceof LinkNotFoundError) return undefined;
    throw err;
  }
}

export function linkIndex(nl: Rtnl, ref: LinkRef): number {
  return knownIndex(ref) ?? getLink(nl, ref).index;
}

export function listLinks(nl: Rtnl): Link[] {
  const replies = nl.sock.dump(
    { type: RTM_GETLINK, flags: 0, header: encodeIfinfomsg({ family: AF_UNSPEC }), attrs: [attr.u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)] },
    `failed to list links in ${nl.where}`,
  );
  return replies.filter((m) => m.type === RTM_NEWLINK).map((m) => decodeLink(m.payload));
}

/** Creates a link (EEXIST becomes LinkExistsError) and returns it as the kernel reports it. */
export function createLink(nl: Rtnl, spec: CreateLinkSpec): Link {
  const what = op(`create ${spec.kind} link`, spec.name);
  const masterIndex = spec.master === undefined ? undefined : linkIndex(nl, spec.master);
  const parentIndex = 'parent' in spec ? linkIndex(nl, spec.parent) : undefined;
  const target = spec.into ?? nl;
  const request = (attrs: Attr[]): void => {
    const header = encodeIfinfomsg(spec.up ? { flags: IFF_UP, change: IFF_UP } : {});
    try {
      nl.sock.request({ type: RTM_NEWLINK, flags: NLM_F_CREATE | NLM_F_EXCL, header, attrs }, what);
    } catch (err) {
      if (err instanceof NetlinkError && err.errnoName === 'EEXIST') throw new LinkExistsError(spec.name, target.where, { cause: err });
      throw err;
    }
  };
  const send = (info: LinkInfoSpec): void => {
    const attrs = [...commonLinkAttrs({ name: spec.name, mtu: spec.mtu, mac: spec.mac, masterIndex, parentIndex }), linkInfoAttr(info)];
    const into = spec.into?.netns;
    if (into === undefined) request(attrs);
    else withNetnsFd(into, (fd) => request([...attrs, attr.u32(IFLA_NET_NS_FD, fd)]));
  };
  switch (spec.kind) {
    case 'bridge':
      send({ kind: 'bridge', vlanFiltering: spec.vlanFiltering });
      break;
    case 'veth': {
      const { netns, ...peer } = spec.peer;
      if (netns === undefined) send({ kind: 'veth', peer });
      else withNetnsFd(netns, (netnsFd) => send({ kind: 'veth', peer: { ...peer, netnsFd } }));
      break;
    }
    case 'vxlan': {
      const { kind, dev, vni, local, group, port, learning, proxy, ttl } = spec;
      const underlayIndex = dev === undefined ? undefined : linkIndex(nl, dev);
      send({ kind, vni, local, group, port, learning, proxy, ttl, underlayIndex });
      break;
    }
    case 'macvlan':
      send({ kind: 'macvlan', mode: spec.mode });
      break;
    case 'ipvlan':
      send({ kind: 'ipvlan', mode: spec.mode, flag: spec.flag });
      break;
  }
  return getLink(target, spec.name);
}

export function deleteLink(nl: Rtnl, ref: LinkRef): void {
  const what = op('delete link', linkRefText(ref));
  const index = linkIndex(nl, ref);
  try {
    nl.sock.request({ type: RTM_DELLINK, flags: 0, header: encodeIfinfomsg({ index }) }, what);
  } catch (err) {
    notFound(nl, ref, err);
  }
}

/** DEL semantics: true when a link was deleted, false when it was already gone. */
export function deleteLinkIfExists(nl: Rtnl, ref: LinkRef): boolean {
  try {
    deleteLink(nl, ref);
    return true;
  } catch (err) {
    if (err instanceof LinkNotFoundError) return false;
    throw err;
  }
}

/** RTM_SETLINK on the link's index with the given flag change and attributes. */
function setLink(nl: Rtnl, ref: LinkRef, verb: string, attrs: Attr[], flags?: { flags: number; change: number }): void {
  const index = linkIndex(nl, ref);
  try {
    nl.sock.request({ type: RTM_SETLINK, flags: 0, header: encodeIfinfomsg({ index, ...flags }), attrs }, op(verb, linkRefText(ref)));
  } catch (err) {
    notFound(nl, ref, err);
  }
}

export function setLinkUp(nl: Rtnl, ref: LinkRef): void {
  setLink(nl, ref, 'set up link', [], { flags: IFF_UP, change: IFF_UP });
}

export function setLinkDown(nl: Rtnl, ref: LinkRef): void {
  setLink(nl, ref, 'set down link', [], { flags: 0, change: IFF_UP });
}

/** Turns promiscuous mode on or off (IFF_PROMISC through the ifinfomsg flag change mask). */
export function setLinkPromisc(nl: Rtnl, ref: LinkRef, on: boolean): void {
  setLink(nl, ref, `set promisc ${on ? 'on' : 'off'} on link`, [], { flags: on ? IFF_PROMISC : 0, change: IFF_PROMISC });
}

/** Puts the link in device group `group` (nftables matches it as iifgroup/oifgroup). */
export function setLinkGroup(nl: Rtnl, ref: LinkRef, group: number): void {
  setLink(nl, ref, `set group ${group} on link`, commonLinkAttrs({ group }));
}

export function setLinkMtu(nl: Rtnl, ref: LinkRef, mtu: number): void {
  setLink(nl, ref, `set MTU ${mtu} on link`, commonLinkAttrs({ mtu }));
}

export function setLinkMac(nl: Rtnl, ref: LinkRef, mac: string): void {
  setLink(nl, ref, `set MAC ${mac} on link`, commonLinkAttrs({ mac }));
}

/**
 * Asks the kernel whether bridges can filter VLANs: creates a bridge named `probeName` with
 * vlan_filtering on and deletes it again. Returns the kernel's refusal, or undefined when it
 * agreed. (Asked on a bridge of its own: turning filtering on for a bridge in use would change
 * the traffic of every container on it.)
 */
export function bridgeVlanFilteringRefusal(nl: Rtnl, probeName: string): NetlinkError | undefined {
  try {
    createLink(nl, { kind: 'bridge', name: probeName, vlanFiltering: true });
  } catch (err) {
    if (err instanceof NetlinkError) return err;
    throw err;
  }
  deleteLinkIfExists(nl, probeName);
  return undefined;
}

const NET_ADDR_SET = 3;

/**
 * Whether the kernel keeps the link's MAC because it was set explicitly (addr_assign_type
 * NET_ADDR_SET): a bridge then no longer takes the lowest MAC of its ports. rtnetlink does not
 * report the assign type and sysfs does, but sysfs shows the netns it was mounted in, not the
 * caller's: the answer counts only when sysfs's link of that name has the same index.
 * Undefined when sysfs cannot tell.
 */
export function linkMacIsSet(link: Link): boolean | undefined {
  try {
    const dir = `/sys/class/net/${link.name}`;
    if (Number(readFileSync(`${dir}/ifindex`, 'latin1')) !== link.index) return undefined;
    return Number(readFileSync(`${dir}/addr_assign_type`, 'latin1')) === NET_ADDR_SET;
  } catch {
    return undefined;
  }
}

/** Attaches the link to `master` (a bridge), or detaches it with `null` (nomaster). */
export function setLinkMaster(nl: Rtnl, ref: LinkRef, master: LinkRef | null): void {
  const masterIndex = master === null ? 0 : linkIndex(nl, master);
  setLink(nl, ref, master === null ? 'detach link' : `attach to "${linkRefText(master)}" link`, commonLinkAttrs({ masterIndex }));
}

/** Renames a link; the kernel requires it to be down. */
export function renameLink(nl: Rtnl, ref: LinkRef, newName: string): void {
  setLink(nl, ref, `rename to "${newName}" link`, commonLinkAttrs({ name: newName }));
}

/**
 * Moves a link into the netns at `netnsPath`, optionally renaming it on the way (the CNI
 * pattern: create in the host, move, name it eth0 there). The link goes down in the move.
 */
export function moveLinkToNetns(nl: Rtnl, ref: LinkRef, netnsPath: string, newName?: string): void {
  withNetnsFd(netnsPath, (fd) => {
    const attrs: Attr[] = [attr.u32(IFLA_NET_NS_FD, fd)];
    if (newName !== undefined) attrs.push(attr.str(IFLA_IFNAME, newName));
    setLink(nl, ref, `move to netns ${netnsPath} link`, attrs);
  });
}

/**
 * Changes kind-specific options of an existing link. RTM_SETLINK would accept IFLA_LINKINFO and
 * silently ignore it, so this is RTM_NEWLINK on the existing index without NLM_F_CREATE.
 */
export function changeLinkInfo(nl: Rtnl, ref: LinkRef, spec: ChangeLinkInfoSpec): void {
  const index = linkIndex(nl, ref);
  const what = op(`change ${spec.kind} options of link`, linkRefText(ref));
  let info: LinkInfoSpec = spec;
  if (spec.kind === 'vxlan') {
    const { dev, ...rest } = spec;
    info = dev === undefined ? rest : { ...rest, underlayIndex: linkIndex(nl, dev) };
  }
  try {
    nl.sock.request({ type: RTM_NEWLINK, flags: 0, header: encodeIfinfomsg({ index }), attrs: [linkInfoAttr(info)] }, what);
  } catch (err) {
    notFound(nl, ref, err);
  }
}

/**
 * Sets bridge port flags (hairpin, learning, isolated) on a link attached to a bridge:
 * AF_BRIDGE RTM_SETLINK with IFLA_PROTINFO, which must carry NLA_F_NESTED — without it the
 * kernel reads the payload as a bare STP state byte.
 */
export function setBridgePortFlags(nl: Rtnl, ref: LinkRef, flags: BridgePortFlags): void {
  const index = linkIndex(nl, ref);
  const what = op('set bridge port flags on link', linkRefText(ref));
  const attrs = [attr.nested(IFLA_PROTINFO, bridgePortAttrs(flags))];
  try {
    nl.sock.request({ type: RTM_SETLINK, flags: 0, header: encodeIfinfomsg({ family: AF_BRIDGE, index }), attrs }, what);
  } catch (err) {
    notFound(nl, ref, err);
  }
}

/** The link's bridge port flags; undefined when it is not a bridge port. */
export function getBridgePortFlags(nl: Rtnl, ref: LinkRef): BridgePortInfo | undefined {
  return getLink(nl, ref).bridgePort;
}
