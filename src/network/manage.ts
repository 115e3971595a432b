/**
 * Network lifecycle behind `shoal network create/rm`: validate everything first (nothing is
 * created on bad input), pick a free subnet when none is given, record the network and write
 * its conflist; remove both (and the bridge the plugins made) on rm.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Store } from '../store/store.js';
import { conflistFileName, renderConflist, validateOptions, type Conflist } from './conflist.js';
import { bridgeNameFor, DRIVERS, getNetwork, listNetworks, NAME_RE, networkId, networkKey, NetworkError, type Driver, type NetworkRecord } from './model.js';
import { buildSubnetSpecs, firstOverlap, pickFreeSubnet, SubnetInputError } from './subnet.js';
import { parseCidr } from '../ipam/address.js';
import { dnsNameProblem } from '../dns/registry-build.js';

export const DEFAULT_CNI_CONF_DIR = '/etc/cni/net.d';

/** Where conflists go: SHOAL_CNI_CONF_DIR when set (DESIGN §2, so several test "hosts" share one filesystem), else /etc/cni/net.d. */
export function cniConfDir(env: NodeJS.ProcessEnv = process.env): string {
  return env['SHOAL_CNI_CONF_DIR'] || DEFAULT_CNI_CONF_DIR;
}
/** libcni 1.1 (podman 4.3) reads conflists up to 1.0.0; our plugins speak it. */
export const CONFLIST_CNI_VERSION = '1.0.0';

/** A problem with what the user asked for: the CLI exits 2 without creating anything. */
export class CreateInputError extends NetworkError {
  constructor(message: string) {
    super('EINVALIDINPUT', message);
  }
}

export interface CreateInput {
  name: string;
  driver: string;
  subnets: string[];
  gateways: string[];
  ipRanges: string[];
  ipv6: boolean;
  internal: boolean;
  attachable: boolean;
  options: Record<string, string>;
  dns: string[];
  dnsSearch: string[];
  addHosts: string[];
  confDir: string;
  stateDir: string;
}

/** Host routes as {cidr, what}; read by the caller through the kernel layer (host-routes.ts). */
export type TakenRanges = Array<{ cidr: string; what: string }>;

export function parseAddHost(spec: string): { name: string; ip: string } {
  // NAME:IP, where IP may be IPv6 (its colons follow the first one).
  const i = spec.indexOf(':');
  const name = spec.slice(0, i);
  const ip = spec.slice(i + 1);
  if (i <= 0 || !/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(name) || !parseCidr(`${ip}/0`)) {
    throw new CreateInputError(`invalid --add-host ${JSON.stringify(spec)}: expected NAME:IP`);
  }
  const problem = dnsNameProblem(name);
  if (problem) throw new CreateInputError(`invalid --add-host ${JSON.stringify(spec)}: the name ${problem}`);
  return { name, ip };
}

/** Builds the record for `input`, or throws CreateInputError; touches nothing. */
export async function planNetwork(store: Store, input: CreateInput, hostRoutes: TakenRanges): Promise<NetworkRecord> {
  if (!NAME_RE.test(input.name)) throw new CreateInputError(`invalid network name ${JSON.stringify(input.name)}: use letters, digits, "_", "." and "-" (at most 63, starting with a letter or digit)`);
  if (['host', 'none', 'bridge'].includes(input.name)) throw new CreateInputError(`invalid network name "${input.name}": reserved`);
  if (!DRIVERS.includes(input.driver as Driver)) throw new CreateInputError(`invalid --driver "${input.driver}": one of ${DRIVERS.join(', ')}`);
  const driver = input.driver as Driver;
  try {
    validateOptions(driver, input.options);
  } catch (err) {
    throw new CreateInputError((err as Error).message);
  }
  for (const d of input.dns) if (!parseCidr(`${d}/0`)) throw new CreateInputError(`invalid --dns "${d}": not an IP address`);
  for (const d of input.dnsSearch) {
    const problem = dnsNameProblem(d);
    if (problem) throw new CreateInputError(`invalid --dns-search ${JSON.stringify(d)}: not a domain name (it ${problem})`);
  }
  const hosts = input.addHosts.map(parseAddHost);
  if (await getNetwork(store, input.name)) throw new CreateInputError(`network "${input.name}" already exists`);
  const confFile = path.join(path.resolve(input.confDir), conflistFileName(input.name));
  if (fs.existsSync(confFile)) throw new CreateInputError(`network "${input.name}" already has a conflist at ${confFile} that Shoal did not record`);

  let subnets;
  try {
    subnets = buildSubnetSpecs(input.subnets, input.gateways, input.ipRanges);
  } catch (err) {
    if (err instanceof SubnetInputError) throw new CreateInputError(err.message);
    throw err;
  }
  const others = await listNetworks(store);
  const taken: TakenRanges = [...others.flatMap((n) => n.subnets.map((s) => ({ cidr: s.subnet, what: `network "${n.name}" (${s.subnet})` }))), ...hostRoutes];
  for (const s of subnets) {
    const clash = firstOverlap(s.subnet, taken);
    if (clash) throw new CreateInputError(`invalid --subnet "${s.subnet}": overlaps ${clash}`);
  }
  const families = new Set(subnets.map((s) => parseCidr(s.subnet)!.family));
  try {
    if (!families.has(4)) subnets.push({ subnet: pickFreeSubnet(4, taken) });
    if (input.ipv6 && !families.has(6)) subnets.push({ subnet: pickFreeSubnet(6, taken) });
  } catch (err) {
    throw new CreateInputError((err as Error).message);
  }
  if (!input.ipv6 && families.has(6)) throw new CreateInputError(`invalid --subnet: an IPv6 subnet needs --ipv6`);

  let bridge: string | undefined;
  if (driver === 'bridge') {
    bridge = input.options['bridge'] ?? input.options['com.docker.network.bridge.name'] ?? bridgeNameFor(input.name);
    const user = others.find((n) => n.bridge === bridge);
    if (user) throw new CreateInputError(`invalid bridge name "${bridge}": used by network "${user.name}"`);
  }
  const created = new Date().toISOString();
  const net: NetworkRecord = {
    name: input.name,
    id: networkId(input.name, created),
    driver,
    subnets,
    ipv6: input.ipv6,
    internal: input.internal,
    attachable: input.attachable,
    options: input.options,
    dns: input.dns,
    dnsSearch: input.dnsSearch,
    hosts,
    cniVersion: CONFLIST_CNI_VERSION,
    confFile,
    stateDir: path.resolve(input.stateDir),
    created,
  };
  if (bridge) net.bridge = bridge;
  return net;
}

export function writeFileAtomic(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}`);
  fs.writeFileSync(tmp, text, { mode: 0o644 });
  fs.renameSync(tmp, file);
}

/**
 * Records the network (in one transaction that re-checks name and subnets, so two racing
 * creates cannot both win) and writes the conflist. A failed write removes the record again.
 */
export async function createNetwork(store: Store, net: NetworkRecord): Promise<Conflist> {
  const conflist = renderConflist(net);
  await store.transaction(async (txn) => {
    if (await txn.get(networkKey(net.name))) throw new CreateInputError(`network "${net.name}" already exists`);
    for (const kv of await txn.list('networks/')) {
      const other = JSON.parse(kv.value) as NetworkRecord;
      const clash = net.subnets.map((s) => firstOverlap(s.subnet, other.subnets.map((o) => ({ cidr: o.subnet, what: `network "${other.name}" (${o.subnet})` })))).find(Boolean);
      if (clash) throw new CreateInputError(`invalid --subnet: overlaps ${clash}`);
    }
    await txn.put(networkKey(net.name), JSON.stringify(net));
  });
  try {
    writeFileAtomic(net.confFile, JSON.stringify(conflist, null, 2) + '\n');
  } catch (err) {
    await store.delete(networkKey(net.name));
    throw err;
  }
  return conflist;
}

/** A conflist file that exists but cannot be used; the file is left as it is for the operator. */
export class ConflistError extends NetworkError {
  constructor(file: string, problem: string, options?: { cause?: unknown }) {
    super('ECONFLIST', `failed to load conflist "${file}": ${problem}`, options);
  }
}

/** What is wrong with a parsed conflist for `net`, or undefined when it has the shape we run. */
function conflistProblem(doc: unknown, net: NetworkRecord): string | undefined {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return 'not a JSON object';
  const c = doc as Record<string, unknown>;
  if (typeof c['cniVersion'] !== 'string') return '"cniVersion" is missing or not a string';
  if (typeof c['name'] !== 'string') return '"name" is missing or not a string';
  if (c['name'] !== net.name) return `"name" is "${c['name']}", not the network's name "${net.name}"`;
  const plugins = c['plugins'];
  if (!Array.isArray(plugins) || plugins.length === 0) return '"plugins" is missing or not a non-empty array';
  const bad = plugins.findIndex((p) => typeof p !== 'object' || p === null || Array.isArray(p) || typeof (p as Record<string, unknown>)['type'] !== 'string' || (p as Record<string, unknown>)['type'] === '');
  if (bad >= 0) return `"plugins[${bad}]" is not an object with a "type"`;
  return undefined;
}

/**
 * The conflist a network's attachments run: the file if it is there, re-rendered from the record
 * when the file is gone. A file that cannot be read, is not JSON or has the wrong shape is refused
 * with ConflistError naming the file and the problem (never silently replaced: it may be an
 * operator's edit, and running something else than what podman reads would split the two).
 */
export function loadConflist(net: NetworkRecord): Conflist {
  let text: string;
  try {
    text = fs.readFileSync(net.confFile, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return renderConflist(net);
    throw new ConflistError(net.confFile, `cannot read it: ${(err as Error).message}`, { cause: err });
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new ConflistError(net.confFile, `not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  const problem = conflistProblem(doc, net);
  if (problem) throw new ConflistError(net.confFile, problem);
  return doc as Conflist;
}

/** Removes the record and the conflist (the caller has dealt with attachments). */
export async function deleteNetworkRecord(store: Store, net: NetworkRecord): Promise<void> {
  fs.rmSync(net.confFile, { force: true });
  await store.delete(networkKey(net.name));
}
