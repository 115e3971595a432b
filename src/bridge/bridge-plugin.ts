/**
 * shoal-bridge: the reference bridge plugin's behaviour (same options, same result shape) on
 * Shoal's kernel layer, plus `isolate` and `internal`. See README.md for the options.
 *
 * ADD keeps an undo stack (DESIGN §4.2): a failed ADD deletes the veth, releases the IPAM
 * allocation and removes the container's rules. Shared things (the bridge, its gateway
 * address, the network's isolation rules) are never undone: other containers use them.
 */
import { withRollback } from '../../cni/invoke.js';
import type { CniRequest } from '../../cni/skel.js';
import type { CniInterface, CniResult } from '../../cni/types.js';
import { LinkExistsError } from '../kernel/errors.js';
import { createLink, deleteLinkIfExists, findLink, getLink, setBridgePortFlags, setLinkMac, type Link } from '../kernel/link.js';
import { NftTransaction } from '../kernel/nftables.js';
import { openRtnl, withRtnl, type Rtnl } from '../kernel/rtnl.js';
import { checkAttachmentKnown, type KernelTraces } from './check-known.js';
import { netnsExists } from '../kernel/netns.js';
import type { IpPrefix } from '../addr.js';
import { parseAddressing, planAddresses, resultIps, resultRoutes } from './addressing.js';
import { enableForwarding, ensureBridge, ensureGatewayAddress } from './bridge-device.js';
import { parseBridgeConf, parseBridgeConfForDel, requestedMac, type BridgeConf } from './config.js';
import { configureInterface, verifyInterface } from './container-iface.js';
import { AttachmentCheckError, LinkConflictError } from './errors.js';
import { addAttachmentRules, addNetworkPolicy, deleteAttachmentRules, macspoofRule, MACSPOOF_CHAIN, missingMasquerade, readShoalTables, attachmentRules } from './firewall.js';
import { applyTransaction } from '../kernel/nftables.js';
import * as ipam from './ipam.js';
import { attachmentOwner, hostVethName } from './names.js';
import { containerMac } from './mac.js';
import { refuseVlan } from './vlan.js';
import { collectStaleRules } from './gc.js';
import { addEmbedded, checkEmbedded, delEmbedded, gcEmbedded, hasEmbedded } from './embedded.js';
import { throwFirst } from '../../cni/chain.js';

/**
 * How the container's link is made where it is not a veth on the bridge: shoal-vxlan gives a
 * macvlan on the network's VXLAN device (src/overlay/attachment.ts). The rest of the attachment
 * (IPAM, addresses, routes, gateway addresses, rules, the embedded steps, rollback) is the same.
 */
export interface ContainerLinkMaker {
  /** The kind of the container's link (DEL deletes only a link of this kind). */
  kind: string;
  /** The host link that holds the gateway addresses, ensured. */
  gateway(host: Rtnl): Link;
  /** Makes `req.ifname` in the container, down, with `mtu` and `mac`; pushes its undo. Returns the host-side interfaces of the result. */
  make(host: Rtnl, ctr: Rtnl, req: CniRequest, o: { mtu: number | undefined; mac: string | undefined }, undo: Undo): CniInterface[];
  /** CHECK: throws AttachmentCheckError when the container's link (read back) is not this maker's. */
  verify(host: Rtnl, link: Link): void;
}

/** What CHECK needs of a maker: the container's link is not a veth, and how to verify it. */
export type ContainerLinkCheck = Pick<ContainerLinkMaker, 'verify'>;

type Undo = { push(what: string, fn: () => unknown): void };

function closeAll(...handles: Array<Rtnl | undefined>): void {
  for (const h of handles) h?.close();
}

/** The veth pair whose host end is a port of the bridge (shoal-bridge's own link). */
function makeVeth(conf: BridgeConf, bridge: Link, host: Rtnl, ctr: Rtnl, req: CniRequest, mac: string | undefined, undo: Undo): CniInterface[] {
  const vethName = hostVethName(conf.network, req.containerId, req.ifname);
  let hostLink: Link;
  try {
    hostLink = createLink(host, {
      kind: 'veth',
      name: vethName,
      mtu: conf.mtu,
      master: bridge.index,
      up: true,
      peer: { name: req.ifname, netns: req.netns, mtu: conf.mtu, mac },
    });
  } catch (err) {
    if (!(err instanceof LinkExistsError)) throw err;
    const where = findLink(ctr, req.ifname) ? `"${req.ifname}" already exists in ${req.netns}` : `host link "${vethName}" already exists (a DEL for this container was missed)`;
    throw new LinkConflictError(`failed to create veth "${vethName}" for "${req.ifname}": ${where}`, { cause: err });
  }
  undo.push(`delete veth "${vethName}"`, () => deleteLinkIfExists(host, vethName));
  if (conf.hairpinMode) setBridgePortFlags(host, vethName, { hairpin: true });
  return [withMtu({ name: vethName, mac: hostLink.mac }, hostLink.mtu)];
}

export async function add(req: CniRequest, maker?: ContainerLinkMaker): Promise<CniResult> {
  const conf = parseBridgeConf(req.config);
  const mac = requestedMac(req);
  // The container's socket first: a missing netns fails before anything is allocated.
  const ctr = openRtnl(req.netns);
  const host = openRtnl();
  try {
    return await withRollback(async (undo) => {
      refuseVlan(host, conf);
      const bridge = maker ? maker.gateway(host) : ensureBridge(host, { name: conf.bridge, mtu: conf.mtu, promiscMode: conf.promiscMode });
      const hostInterfaces = maker ? maker.make(host, ctr, req, { mtu: conf.mtu, mac }, undo) : makeVeth(conf, bridge, host, ctr, req, mac, undo);

      const allocated = await ipam.allocate(req, undo);
      // The IPAM result's text is parsed here, once; values from here on (addressing.ts).
      const plan = planAddresses(allocated, conf);
      const addresses = plan.ips.map((i) => i.address);
      // Unless the runtime asked for one, the MAC follows the address (mac.ts): set while the
      // link is still down, before configureInterface reads it back for the result.
      const derivedMac = mac ? undefined : containerMac(addresses.map((a) => a.addr));
      if (derivedMac) setLinkMac(ctr, req.ifname, derivedMac);
      const ctrLink = configureInterface(ctr, req.ifname, { ips: plan.ips, routes: plan.routes, nodad: !conf.enabledad });
      for (const gateway of plan.bridgeAddresses) ensureGatewayAddress(host, bridge, gateway, conf.forceAddress);
      if (conf.isGateway) enableForwarding({ v4: addresses.some((a) => a.family === 4), v6: addresses.some((a) => a.family === 6) });

      // Both ends as they were read back (createLink, configureInterface): MAC and MTU are final.
      const hostVeth = maker ? undefined : hostVethName(conf.network, req.containerId, req.ifname);
      applyRules(conf, req, addresses, hostVeth, ctrLink.mac, undo);

      // Re-read the bridge: its MAC follows its ports' until it is set, as the reference notes.
      const bridgeNow = getLink(host, bridge.index);
      // [bridge, host veth, container], or [gateway, container] for a maker's link.
      const interfaces: CniInterface[] = [
        withMtu({ name: bridgeNow.name, mac: bridgeNow.mac }, bridgeNow.mtu),
        ...hostInterfaces,
        withMtu({ name: req.ifname, mac: ctrLink.mac, sandbox: req.netns }, ctrLink.mtu),
      ];
      const result: CniResult = { interfaces, ips: resultIps(plan.ips, interfaces.length - 1), routes: resultRoutes(plan.routes) };
      if (allocated.dns) result.dns = allocated.dns;
      if (!hasEmbedded(conf)) return result;
      return await addEmbedded(req, conf, result, undo);
    }, req.log);
  } finally {
    closeAll(ctr, host);
  }
}

function withMtu(iface: CniInterface, mtu: number | undefined): CniInterface {
  return mtu === undefined ? iface : { ...iface, mtu };
}

/** One nft transaction for the network's policy and this container's rules (no call when empty). */
function applyRules(conf: BridgeConf, req: CniRequest, addresses: IpPrefix[], vethName: string | undefined, mac: string | undefined, undo: Undo): void {
  const owner = attachmentOwner(conf.network, req.containerId, req.ifname);
  const tx = new NftTransaction();
  addNetworkPolicy(tx, { network: conf.network, bridge: conf.bridge, isolate: conf.isolate, internal: conf.internal });
  const masquerade = conf.ipMasq && !conf.internal ? addresses : [];
  // Without a host veth (a maker's link) there is no port to check the source MAC on.
  const macspoof = conf.macspoofchk && mac && vethName ? { hostVeth: vethName, mac } : undefined;
  addAttachmentRules(tx, { owner, masquerade, macspoof });
  if (tx.isEmpty) return;
  applyTransaction(tx);
  if (masquerade.length || macspoof) undo.push(`delete nftables rules of "${owner}"`, () => deleteAttachmentRules((o) => o === owner));
}

/** `containerKind`: the kind of link the attachment gave the container (a maker's kind, or veth). */
export async function del(req: CniRequest, containerKind = 'veth'): Promise<void> {
  const conf = parseBridgeConfForDel(req.config);
  // Reverse chain order: the embedded steps (dns, portmap) before the bridge's own DEL, which
  // runs even when one of them failed; their first error is raised after it.
  const errors = hasEmbedded(conf) ? await delEmbedded(req, conf) : [];
  await delBridge(req, conf, containerKind);
  throwFirst(errors);
}

async function delBridge(req: CniRequest, conf: BridgeConf, containerKind: string): Promise<void> {
  // IPAM first and always (DESIGN §4.2): a missing netns or link must not leak the address.
  if (req.config.ipam?.type) await ipam.release(req);
  const owner = attachmentOwner(conf.network, req.containerId, req.ifname);
  // Reading the ruleset costs an nft run; a network without per-container rules skips it.
  // Rules left by an earlier config of the network are GC's to collect.
  if (conf.ipMasq || conf.macspoofchk) deleteAttachmentRules((o) => o === owner);
  const host = openRtnl();
  try {
    // Deleting the host end removes the pair now; netns teardown would do it only eventually.
    if (deleteLinkIfExists(host, hostVethName(conf.network, req.containerId, req.ifname))) return;
  } finally {
    host.close();
  }
  if (!req.netns || !netnsExists(req.netns)) return;
  const ctr = openRtnl(req.netns);
  try {
    const link = findLink(ctr, req.ifname);
    if (link?.kind === containerKind) deleteLinkIfExists(ctr, link.index);
  } finally {
    ctr.close();
  }
}

/** What of the attachment the kernel has: its container interface, its host veth (none for a maker's link). */
function bridgeTraces(req: CniRequest, conf: BridgeConf, hasHostVeth: boolean): KernelTraces {
  const vethName = hostVethName(conf.network, req.containerId, req.ifname);
  const missing: string[] = [];
  const hostVeth = hasHostVeth ? withRtnl(undefined, (host) => findLink(host, vethName)) : undefined;
  if (hasHostVeth && !hostVeth) missing.push(`no host veth "${vethName}"`);
  let inside = false;
  if (!req.netns || !netnsExists(req.netns)) missing.push(`no network namespace "${req.netns}"`);
  else {
    inside = withRtnl(req.netns, (ctr) => findLink(ctr, req.ifname)) !== undefined;
    if (!inside) missing.push(`no interface "${req.ifname}" in ${req.netns}`);
  }
  return { present: hostVeth !== undefined || inside, missing };
}

/** Unknown (code 3) before anything else when no part of it exists; see check-known.ts. */
export async function checkKnown(req: CniRequest, maker?: ContainerLinkCheck): Promise<void> {
  await checkAttachmentKnown(req, bridgeTraces(req, parseBridgeConf(req.config), !maker));
}

export async function check(req: CniRequest, options: { knownChecked?: boolean; maker?: ContainerLinkCheck } = {}): Promise<void> {
  const conf = parseBridgeConf(req.config);
  if (!options.knownChecked) await checkAttachmentKnown(req, bridgeTraces(req, conf, !options.maker));
  const prev = req.prevResult ?? {};
  const ifaces = prev.interfaces ?? [];
  const index = ifaces.findIndex((i) => i.name === req.ifname && i.sandbox === req.netns);
  if (index < 0) throw new AttachmentCheckError(`failed to check "${req.ifname}": prevResult has no interface "${req.ifname}" in sandbox ${req.netns}`);
  // prevResult's text, parsed once.
  const { ips, routes } = parseAddressing({ ips: (prev.ips ?? []).filter((ip) => ip.interface === undefined || ip.interface === index), routes: prev.routes ?? [] });
  const vethName = hostVethName(conf.network, req.containerId, req.ifname);
  const host = openRtnl();
  const ctr = openRtnl(req.netns);
  try {
    const hostVeth = options.maker ? undefined : checkBridgePort(host, conf.bridge, vethName);
    const link = verifyInterface(ctr, req.ifname, { ips, routes, mac: ifaces[index]?.mac });
    if (options.maker) options.maker.verify(host, link);
    else if (link.kind !== 'veth' || link.parentIndex !== hostVeth?.index) {
      throw new AttachmentCheckError(`failed to check "${req.ifname}": it is not the peer of host veth "${vethName}"`);
    }
    const owner = attachmentOwner(conf.network, req.containerId, req.ifname);
    if ((conf.ipMasq && !conf.internal) || conf.macspoofchk) {
      const tables = readShoalTables();
      if (conf.ipMasq && !conf.internal) {
        const missing = missingMasquerade(tables, owner, ips.map((i) => i.address));
        if (missing.length) throw new AttachmentCheckError(`failed to check masquerade of "${owner}": no rule for ${missing.join(', ')}`);
      }
      if (conf.macspoofchk && link.mac) {
        const want = macspoofRule(vethName, link.mac);
        const has = attachmentRules(tables, (o) => o === owner).some((r) => r.chain === MACSPOOF_CHAIN);
        if (!has) throw new AttachmentCheckError(`failed to check MAC spoofing rule of "${owner}": missing (${want})`);
      }
    }
  } finally {
    closeAll(host, ctr);
  }
  if (hasEmbedded(conf)) await checkEmbedded(req, conf);
}

/** CHECK of the bridge and the host veth on it; returns the veth. */
function checkBridgePort(host: Rtnl, bridgeName: string, vethName: string): Link {
  const bridge = findLink(host, bridgeName);
  if (bridge?.kind !== 'bridge') throw new AttachmentCheckError(`failed to check bridge "${bridgeName}": ${bridge ? `it is a ${bridge.kind ?? 'non-bridge'} link` : 'it does not exist'}`);
  const hostVeth = findLink(host, vethName);
  if (!hostVeth) throw new AttachmentCheckError(`failed to check veth "${vethName}": it does not exist`);
  if (hostVeth.masterIndex !== bridge.index) throw new AttachmentCheckError(`failed to check veth "${vethName}": it is not attached to bridge "${bridgeName}"`);
  if (!hostVeth.up) throw new AttachmentCheckError(`failed to check veth "${vethName}": the link is down`);
  return hostVeth;
}

export async function status(req: CniRequest): Promise<void> {
  parseBridgeConfForDel(req.config);
  if (req.config.ipam?.type) await ipam.status(req);
}

export async function gc(req: CniRequest): Promise<void> {
  const conf = parseBridgeConfForDel(req.config);
  // Every step runs, whatever the steps before it did; the first error is raised at the end.
  const errors: unknown[] = [];
  const step = async (fn: () => unknown): Promise<void> => {
    try {
      await fn();
    } catch (err) {
      errors.push(err);
    }
  };
  if (req.config.ipam?.type) await step(() => ipam.gc(req));
  const valid = req.validAttachments;
  if (valid) await step(() => collectStaleRules(conf.network, valid, req.log));
  if (hasEmbedded(conf)) await step(() => gcEmbedded(req, conf));
  throwFirst(errors);
}
