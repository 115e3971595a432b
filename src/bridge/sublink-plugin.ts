/**
 * shoal-macvlan and shoal-ipvlan: a link on a parent (`master`) given to the container. The
 * link is created in the host under a temporary name, moved into the netns and renamed there
 * to CNI_IFNAME in one request (the reference's pattern; creating it under the final name in
 * the host could collide with a host link). With `linkInContainer` the parent is looked up in
 * the container's netns and the link is made there directly.
 */
import { withRollback } from '../../cni/invoke.js';
import type { CniRequest } from '../../cni/skel.js';
import type { CniInterface, CniResult } from '../../cni/types.js';
import { LinkExistsError } from '../kernel/errors.js';
import { createLink, deleteLinkIfExists, findLink, getLink, moveLinkToNetns, setLinkMac, type Link } from '../kernel/link.js';
import { AF_INET } from '../kernel/netlink/constants.js';
import { netnsExists } from '../kernel/netns.js';
import { listRoutes } from '../kernel/route.js';
import { openRtnl, withRtnl, type Rtnl } from '../kernel/rtnl.js';
import { checkAttachmentKnown } from './check-known.js';
import { parseAddressing, planAddresses, resultIps, resultRoutes } from './addressing.js';
import { parseIpvlanConf, parseMacvlanConf, type IpvlanConf, type MacvlanConf } from './config.js';
import { configureInterface, verifyInterface } from './container-iface.js';
import { AttachmentCheckError, LinkConflictError } from './errors.js';
import * as ipam from './ipam.js';
import { containerMac } from './mac.js';
import { temporaryLinkName } from './names.js';

type Kind = 'macvlan' | 'ipvlan';
type SubConf = (MacvlanConf & { kind: 'macvlan' }) | (IpvlanConf & { kind: 'ipvlan'; mac?: undefined });

function parse(kind: Kind, config: unknown): SubConf {
  return kind === 'macvlan' ? { kind, ...parseMacvlanConf(config) } : { kind, ...parseIpvlanConf(config) };
}

/** `master`, or the interface of the default IPv4 route in `nl`'s netns (the reference's default). */
export function resolveMaster(nl: Rtnl, master: string | undefined): string {
  if (master) return master;
  const route = listRoutes(nl, { family: AF_INET }).find((r) => r.dst === 'default' && r.oif !== undefined);
  if (!route?.oif) throw new LinkConflictError(`failed to find the parent link: "master" is not set and ${nl.where} has no default route`);
  return getLink(nl, route.oif).name;
}

function createSublink(parentNl: Rtnl, c: SubConf, name: string, parent: string): void {
  try {
    if (c.kind === 'macvlan') createLink(parentNl, { kind: 'macvlan', name, parent, mode: c.mode, mtu: c.mtu, mac: c.mac });
    else createLink(parentNl, { kind: 'ipvlan', name, parent, mode: c.mode, mtu: c.mtu });
  } catch (err) {
    if (err instanceof LinkExistsError) throw new LinkConflictError(`failed to create ${c.kind} link "${name}": it already exists`, { cause: err });
    throw err;
  }
}

export async function add(kind: Kind, req: CniRequest): Promise<CniResult> {
  const c = parse(kind, req.config);
  const ctr = openRtnl(req.netns);
  const host = openRtnl();
  try {
    return await withRollback(async (undo) => {
      if (findLink(ctr, req.ifname)) throw new LinkConflictError(`failed to create ${kind} link "${req.ifname}": it already exists in ${req.netns}`);
      if (c.linkInContainer) {
        const parent = resolveMaster(ctr, c.master);
        createSublink(ctr, c, req.ifname, parent);
      } else {
        const parent = resolveMaster(host, c.master);
        const temp = temporaryLinkName(kind === 'macvlan' ? 'mv' : 'ipv');
        createSublink(host, c, temp, parent);
        undo.push(`delete ${kind} "${temp}"`, () => deleteLinkIfExists(host, temp));
        moveLinkToNetns(host, temp, req.netns, req.ifname);
      }
      undo.push(`delete ${kind} "${req.ifname}" in ${req.netns}`, () => deleteLinkIfExists(ctr, req.ifname));
      if (!req.config.ipam?.type) {
        // No IPAM (e.g. a DHCP client in the container): the link is up, nothing else.
        return { interfaces: [sublinkInterface(kind, req, configureInterface(ctr, req.ifname, { ips: [], routes: [], nodad: true }))] };
      }
      const allocated = await ipam.allocate(req, undo);
      const plan = planAddresses(allocated, { isGateway: false, isDefaultGateway: false, internal: false });
      // A macvlan's MAC follows its address unless the config names one (mac.ts: neighbours on
      // the parent's segment reach a reused address at once). An ipvlan has its parent's MAC.
      const derivedMac = c.kind === 'macvlan' && !c.mac ? containerMac(plan.ips.map((i) => i.address.addr)) : undefined;
      if (derivedMac) setLinkMac(ctr, req.ifname, derivedMac);
      const link = configureInterface(ctr, req.ifname, { ips: plan.ips, routes: plan.routes, nodad: true });
      const result: CniResult = { interfaces: [sublinkInterface(kind, req, link)], ips: resultIps(plan.ips, 0), routes: resultRoutes(plan.routes) };
      if (allocated.dns) result.dns = allocated.dns;
      return result;
    }, req.log);
  } finally {
    ctr.close();
    host.close();
  }
}

function sublinkInterface(kind: Kind, req: CniRequest, link: Link): CniInterface {
  return { name: req.ifname, sandbox: req.netns, ...(link.mac && kind === 'macvlan' ? { mac: link.mac } : {}), ...(link.mtu ? { mtu: link.mtu } : {}) };
}

export async function del(kind: Kind, req: CniRequest): Promise<void> {
  if (req.config.ipam?.type) await ipam.release(req);
  if (!req.netns || !netnsExists(req.netns)) return;
  const ctr = openRtnl(req.netns);
  try {
    const link = findLink(ctr, req.ifname);
    if (link?.kind === kind) deleteLinkIfExists(ctr, link.index);
  } finally {
    ctr.close();
  }
}

export async function check(kind: Kind, req: CniRequest): Promise<void> {
  parse(kind, req.config);
  const missing: string[] = [];
  let present = false;
  if (!req.netns || !netnsExists(req.netns)) missing.push(`no network namespace "${req.netns}"`);
  else {
    present = withRtnl(req.netns, (ctr) => findLink(ctr, req.ifname)) !== undefined;
    if (!present) missing.push(`no interface "${req.ifname}" in ${req.netns}`);
  }
  await checkAttachmentKnown(req, { present, missing });
  const prev = req.prevResult ?? {};
  const index = (prev.interfaces ?? []).findIndex((i) => i.name === req.ifname && i.sandbox === req.netns);
  if (index < 0) throw new AttachmentCheckError(`failed to check "${req.ifname}": prevResult has no interface "${req.ifname}" in sandbox ${req.netns}`);
  const { ips, routes } = parseAddressing({ ips: (prev.ips ?? []).filter((ip) => ip.interface === undefined || ip.interface === index), routes: prev.routes ?? [] });
  const ctr = openRtnl(req.netns);
  try {
    const link = verifyInterface(ctr, req.ifname, { ips, routes, mac: prev.interfaces?.[index]?.mac });
    if (link.kind !== kind) throw new AttachmentCheckError(`failed to check "${req.ifname}": it is a ${link.kind ?? 'non-' + kind} link, not ${kind}`);
  } finally {
    ctr.close();
  }
}

export async function status(req: CniRequest): Promise<void> {
  if (req.config.ipam?.type) await ipam.status(req);
}

export async function gc(req: CniRequest): Promise<void> {
  if (req.config.ipam?.type) await ipam.gc(req);
}

