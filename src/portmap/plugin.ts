/**
 * shoal-portmap: a chained plugin publishing host ports into a container with nftables DNAT
 * (layout in rules.ts), passing prevResult through unchanged. ADD rolls back on any failure;
 * DEL succeeds when everything is already gone; CHECK verifies the rules; GC removes the rules
 * of attachments the runtime no longer knows.
 */
import { CniCode, CniError } from '../../cni/errors.js';
import { withRollback } from '../../cni/invoke.js';
import type { CniRequest } from '../../cni/skel.js';
import type { CniResult } from '../../cni/types.js';
import type { IpAddr } from '../addr.js';
import { AttachmentUnknownError, ShoalError, causeText } from '../errors.js';
import { IPPROTO, deleteConntrack, type ConntrackFilter } from '../kernel/conntrack.js';
import { applyTransaction, NftTransaction } from '../kernel/nftables.js';
import { readTable, type NftTableInfo } from '../kernel/nftables-reader.js';
import { openRtnl } from '../kernel/rtnl.js';
import { getLink } from '../kernel/link.js';
import { listRoutes } from '../kernel/route.js';
import { AF_INET } from '../kernel/netlink/constants.js';
import { ensureSysctl, interfaceSysctlKey } from '../kernel/sysctl.js';
import {
  attachmentFromOwner,
  attachmentOf,
  buildPlan,
  networkOwnerPrefixes,
  ownerOf,
  parseOwner,
  portText,
  type Attachment,
  type DnatEntry,
  type IpFamily,
  type PortmapPlan,
} from './config.js';
import { CHAIN, MAP, addAttachment, addInfra, chainOwner, mapElements, portKey, publishedBy, removeAttachment, tableOf } from './rules.js';
import { listRecords, portmapDir, recordByOwner, removeRecord, writeRecord } from './state.js';

const FAMILIES: IpFamily[] = [4, 6];

export class PortConflictError extends ShoalError {
  constructor(message: string) {
    super('EPORTCONFLICT', message);
  }
}

export class PortmapCheckError extends ShoalError {
  constructor(owner: string, problem: string) {
    super('EPORTMAPCHECK', `failed to check port mappings "${owner}": ${problem}`);
  }
}

type Tables = Record<IpFamily, NftTableInfo | undefined>;
const readTables = (): Tables => ({ 4: readTable(tableOf(4)), 6: readTable(tableOf(6)) });

function dirOf(req: CniRequest): string {
  return portmapDir(req.config.stateDir, req.env as NodeJS.ProcessEnv);
}

// ---- conflicts -------------------------------------------------------------------------------

function holderName(dir: string, owner: string | undefined, fallback: string): string {
  if (owner === undefined) return fallback;
  const rec = recordByOwner(dir, owner);
  if (rec?.name) return `${rec.name} (${rec.containerId.slice(0, 12)})`;
  return rec?.containerId ?? parseOwner(owner)?.containerId ?? owner;
}

/** Refuses a (hostIP, hostPort, protocol) another attachment publishes; overlapping "any address" counts. */
export function findConflict(plan: PortmapPlan, tables: Tables, dir: string): PortConflictError | undefined {
  const a = plan.attachment;
  for (const e of plan.dnat) {
    const table = tables[e.family];
    for (const el of mapElements(table)) {
      if (el.target === a.dnatChain || el.target === a.snatChain) continue;
      if (el.map === MAP.masq) {
        if (el.key === `${e.containerIP} . ${e.protocol} . ${e.containerPort}`) {
          return new PortConflictError(`address ${e.containerIP} port ${portText(e.containerPort, e.protocol)} is already a target of ${holderName(dir, chainOwner(table, el.target), el.target)}`);
        }
        continue;
      }
      if (el.protocol !== e.protocol || el.port !== e.hostPort) continue;
      if (e.hostIP !== undefined && el.hostIP !== undefined && el.hostIP !== e.hostIP) continue;
      const where = e.hostIP !== undefined ? `${e.family === 6 ? `[${e.hostIP}]` : e.hostIP}:` : '';
      return new PortConflictError(`port ${where}${portText(e.hostPort, e.protocol)} is already published by ${holderName(dir, chainOwner(table, el.target), el.target)}`);
    }
  }
  return undefined;
}

// ---- host side of localhost DNAT ---------------------------------------------------------------

/** The host interface the main table routes `ip` out of (longest prefix). */
export function hostInterfaceToward(ip: IpAddr): string | undefined {
  const nl = openRtnl();
  try {
    const routes = listRoutes(nl, { family: AF_INET }).filter((r) => r.oif !== undefined && r.to.length > 0 && r.to.contains(ip));
    routes.sort((x, y) => y.to.length - x.to.length);
    const oif = routes[0]?.oif;
    return oif === undefined ? undefined : getLink(nl, oif).name;
  } finally {
    nl.close();
  }
}

/**
 * 127.0.0.1 -> container DNAT needs route_localnet on the interface towards the container,
 * or the kernel drops loopback-sourced packets leaving it. Not reverted on DEL: other
 * containers on the same bridge rely on it (the reference plugin does the same).
 */
function enableRouteLocalnet(plan: PortmapPlan, req: CniRequest): void {
  if (!plan.snat && !plan.masqAll) return;
  const v4 = plan.addresses.find((a) => a.family === 4);
  if (!v4 || !plan.dnat.some((e) => e.family === 4)) return;
  const ifname = hostInterfaceToward(v4.ip);
  if (!ifname) {
    req.log.warn({ ip: v4.ip.toString() }, 'no host route to the container: 127.0.0.1 will not reach it');
    return;
  }
  ensureSysctl(interfaceSysctlKey('ipv4', ifname, 'route_localnet'), 1);
}

// ---- conntrack -----------------------------------------------------------------------------------

function udpFilters(entries: ReadonlyArray<{ family: IpFamily; hostIP?: string; hostPort: number; protocol: string }>): ConntrackFilter[] {
  return entries
    .filter((e) => e.protocol === 'udp')
    .map((e) => {
      const f: ConntrackFilter = { family: e.family, proto: IPPROTO.udp, origDstPort: e.hostPort };
      if (e.hostIP !== undefined) f.origDst = e.hostIP;
      return f;
    });
}

function flushUdp(filters: ConntrackFilter[], req: CniRequest): void {
  if (filters.length === 0) return;
  const n = deleteConntrack(filters);
  req.log.debug({ deleted: n }, 'flushed UDP conntrack entries of published ports');
}

// ---- verbs ----------------------------------------------------------------------------------------

function removalTx(a: Attachment, tables: Tables): NftTransaction {
  const tx = new NftTransaction();
  for (const f of FAMILIES) removeAttachment(tx, f, a, tables[f]);
  return tx;
}

function publishedEntries(a: Attachment, tables: Tables): Array<{ family: IpFamily; hostIP?: string; hostPort: number; protocol: string }> {
  return FAMILIES.flatMap((family) =>
    publishedBy(tables[family], a).map((el) => {
      const e: { family: IpFamily; hostIP?: string; hostPort: number; protocol: string } = { family, hostPort: el.port, protocol: el.protocol };
      if (el.hostIP !== undefined) e.hostIP = el.hostIP;
      return e;
    }),
  );
}

export async function add(req: CniRequest): Promise<CniResult> {
  const prev = req.prevResult;
  if (!prev) {
    throw new CniError(CniCode.InvalidNetworkConfig, 'invalid network config: field "prevResult" is required: shoal-portmap is a chained plugin and runs after the interface plugin');
  }
  const plan = buildPlan(req.config, req.containerId, req.ifname, prev);
  if (plan.dnat.length === 0) return prev;
  const a = plan.attachment;
  const dir = dirOf(req);

  return withRollback(async (undo) => {
    const tables = readTables();
    const conflict = findConflict(plan, tables, dir);
    if (conflict) throw conflict;
    enableRouteLocalnet(plan, req);

    const tx = new NftTransaction();
    for (const f of FAMILIES) {
      const needed = plan.dnat.some((e) => e.family === f);
      // A repeated ADD replaces what the previous one left (elements, and chains it no longer needs).
      removeAttachment(tx, f, a, tables[f], needed ? new Set([a.dnatChain, a.snatChain]) : undefined);
      if (!needed) continue;
      addInfra(tx, f);
      addAttachment(tx, f, a, plan.dnat, plan);
    }
    try {
      applyTransaction(tx);
    } catch (err) {
      // A concurrent ADD may have taken the port between our read and our commit: the kernel
      // refuses the clashing map element ("File exists"), and the whole transaction with it.
      const raced = findConflict(plan, readTables(), dir);
      throw raced ?? new ShoalError('ENFTABLES', `failed to publish ports of "${a.owner}": ${causeText(err)}`, { cause: err });
    }
    undo.push(`remove nftables rules of ${a.owner}`, () => applyTransaction(removalTx(a, readTables())));

    // UDP flows tracked before the port was published keep their old (non-)NAT decision.
    flushUdp(udpFilters(plan.dnat), req);

    const record = {
      network: a.network,
      containerId: a.containerId,
      ifname: a.ifname,
      netns: req.netns,
      owner: a.owner,
      mappings: plan.mappings,
      containerIPs: plan.addresses.map((x) => x.ip.toString()),
      created: new Date().toISOString(),
    };
    const name = req.args['K8S_POD_NAME'];
    writeRecord(dir, name ? { ...record, name } : record);
    return prev;
  }, req.log);
}

export async function del(req: CniRequest): Promise<void> {
  const a = attachmentOf(req.config.name, req.containerId, req.ifname);
  deleteAttachment(a, req);
  removeRecord(dirOf(req), a);
}

function deleteAttachment(a: Attachment, req: CniRequest): void {
  const tables = readTables();
  const published = publishedEntries(a, tables);
  const tx = removalTx(a, tables);
  if (!tx.isEmpty) applyTransaction(tx);
  flushUdp(udpFilters(published), req);
}

export async function check(req: CniRequest): Promise<void> {
  const plan = buildPlan(req.config, req.containerId, req.ifname, req.prevResult);
  const tables = readTables();
  // Ports asked for and no trace of the attachment at all: never added (or deleted), code 3.
  // With any trace left the detailed check below names what is wrong (and the runtime DELs).
  if (plan.dnat.length > 0 && !hasTrace(plan.attachment, tables, dirOf(req))) {
    const a = plan.attachment;
    throw new AttachmentUnknownError(
      `failed to check port mappings "${a.owner}": no port is published for container ${req.containerId} interface "${req.ifname}" (no chain "${a.dnatChain}", no map element, no state record): never added, or deleted`,
    );
  }
  const problem = checkProblem(plan, tables);
  if (problem) throw new PortmapCheckError(plan.attachment.owner, problem);
}

/** Whether anything of this attachment exists: its chains or map elements, or its state record. */
function hasTrace(a: Attachment, tables: Tables, dir: string): boolean {
  const inTables = FAMILIES.some((f) => publishedBy(tables[f], a).length > 0 || (tables[f]?.chains ?? []).some((c) => c.name === a.dnatChain || c.name === a.snatChain));
  return inTables || recordByOwner(dir, a.owner) !== undefined;
}

/** What is missing or wrong in the kernel for this plan; undefined when everything is there. */
export function checkProblem(plan: PortmapPlan, tables: Tables): string | undefined {
  const a = plan.attachment;
  for (const f of FAMILIES) {
    const mine = plan.dnat.filter((e) => e.family === f);
    const table = tables[f];
    const t = tableOf(f);
    if (mine.length === 0) {
      if (publishedBy(table, a).length > 0) return `table "${t.family} ${t.name}" publishes ports for it that the config does not ask for`;
      continue;
    }
    if (!table) return `table "${t.family} ${t.name}" does not exist`;
    const chains = new Set(table.chains.map((c) => c.name));
    for (const c of Object.values(CHAIN)) if (!chains.has(c)) return `chain "${c}" is missing from "${t.family} ${t.name}"`;
    if (!table.rules.some((r) => r.chain === CHAIN.prerouting) || !table.rules.some((r) => r.chain === CHAIN.dnat)) {
      return `the dispatch rules of "${t.family} ${t.name}" are missing`;
    }
    const rules = table.rules.filter((r) => r.chain === a.dnatChain && r.comment === a.owner);
    if (rules.length !== mine.length) return `chain "${a.dnatChain}" has ${rules.length} DNAT rules, expected ${mine.length}`;
    const elements = mapElements(table);
    for (const e of mine) {
      const { map, key } = portKey(e as DnatEntry);
      if (!elements.some((el) => el.map === map && el.key === key && el.target === a.dnatChain)) {
        return `port ${portText(e.hostPort, e.protocol)} (${f === 4 ? 'IPv4' : 'IPv6'}) is not published`;
      }
    }
    if ((plan.snat || plan.masqAll) && !elements.some((el) => el.map === MAP.masq && el.target === a.snatChain)) {
      return `the masquerade rules for "${a.snatChain}" are missing`;
    }
  }
  return undefined;
}

export async function gc(req: CniRequest): Promise<void> {
  const valid = req.validAttachments;
  if (!valid) return;
  const network = req.config.name;
  const keep = new Set(valid.map((v) => ownerOf(network, v.containerID, v.ifname)));
  const prefixes = networkOwnerPrefixes(network);
  const tables = readTables();
  const stale = new Set<string>();
  for (const f of FAMILIES) {
    for (const r of tables[f]?.rules ?? []) {
      const owner = r.comment;
      if (owner && prefixes.some((p) => owner.startsWith(p)) && !keep.has(owner)) stale.add(owner);
    }
  }
  for (const owner of stale) {
    const a = attachmentFromOwner(network, owner);
    req.log.info({ owner }, 'removing port mappings of a gone attachment');
    deleteAttachment(a, req);
  }
  const dir = dirOf(req);
  for (const rec of listRecords(dir)) {
    if (rec.network === network && !keep.has(rec.owner)) removeRecord(dir, rec);
  }
}

