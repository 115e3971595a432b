/**
 * Overlay networks as cluster records (DESIGN §7): `networks/<name>` in etcd holds what every
 * node needs to attach containers to the network (VNI, subnets, DNS options); each node's daemon
 * mirrors it into its local store as a NetworkRecord with its own node facts (underlay address,
 * socket, state dir) and writes the conflist (overlay.ts). Creation is one etcd transaction
 * that re-checks the name, the VNI and the subnets, so two nodes creating at once cannot both
 * win, nor get one VNI or overlapping subnets.
 *
 * Subnets are picked from 10.100.0.0/16 ... 10.127.0.0/16 (and fd89:5348:4f42:<n>::/64 for
 * IPv6) when none is given: an overlay spans nodes, each leasing /26 blocks of it, so a /24
 * (four blocks) would cap it at four nodes.
 */
import { IpAddr, IpPrefix } from '../addr.js';
import { ShoalError } from '../errors.js';
import { buildSubnetSpecs, firstOverlap, SubnetInputError } from '../network/subnet.js';
import { NAME_RE, networkId, type NetworkRecord, type SubnetSpec } from '../network/model.js';
import { CONFLIST_CNI_VERSION, parseAddHost, type TakenRanges } from '../network/manage.js';
import { dnsNameProblem } from '../dns/registry-build.js';
import { overlayBridgeName, VNI_MAX, VNI_MIN } from '../overlay/names.js';
import type { Store, Txn } from '../store/store.js';

export const CLUSTER_NETWORKS_PREFIX = 'networks/';
/** Picked VNIs start here, as Docker's overlay driver's do: below stays free for `-o vni=N`. */
export const FIRST_PICKED_VNI = 4096;

/** `networks/<name>` in etcd. */
export interface ClusterNetwork {
  name: string;
  id: string;
  driver: 'overlay';
  vni: number;
  subnets: SubnetSpec[];
  ipv6: boolean;
  internal: boolean;
  attachable: boolean;
  /** `--mtu`; else each node's underlay MTU minus the VXLAN overhead. */
  mtu?: number;
  /** `-o encrypted=true`: VXLAN between nodes in IPsec ESP (./ipsec.ts); keys under `keys/<name>/`. */
  encrypted?: boolean;
  /** `-o rotation=SECONDS` of an encrypted network: how long one key generation lives. */
  rotationSeconds?: number;
  dns: string[];
  dnsSearch: string[];
  hosts: Array<{ name: string; ip: string }>;
  created: string;
  /** The node whose daemon created it. */
  createdBy: string;
}

/** What `shoal network create --driver overlay` sends the daemon. */
export interface OverlayCreateInput {
  name: string;
  subnets?: string[];
  gateways?: string[];
  ipRanges?: string[];
  ipv6?: boolean;
  internal?: boolean;
  attachable?: boolean;
  options?: Record<string, string>;
  dns?: string[];
  dnsSearch?: string[];
  addHosts?: string[];
}

/** Bad input for a cluster network (API 400, CLI exit 1, nothing written). */
export class ClusterNetworkInputError extends ShoalError {
  constructor(message: string) {
    super('EINVALIDINPUT', message);
  }
}

/** A state that forbids the request (API 409). */
export class ClusterNetworkConflictError extends ShoalError {
  constructor(message: string) {
    super('ECONFLICT', message);
  }
}

export function clusterNetworkKey(name: string): string {
  return `${CLUSTER_NETWORKS_PREFIX}${encodeURIComponent(name)}`;
}

export function clusterEndpointsPrefix(network: string): string {
  return `endpoints/${encodeURIComponent(network)}/`;
}

const OVERLAY_OPTS = ['vni', 'mtu', 'encrypted', 'rotation'];
/** Docker's default key rotation: 12 hours. */
export const DEFAULT_ROTATION_SECONDS = 12 * 3600;

function intOption(key: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) throw new ClusterNetworkInputError(`invalid --opt ${key}="${text}": must be a number ${min}-${max}`);
  return n;
}

function boolOption(key: string, text: string): boolean {
  if (text === 'true' || text === '') return true; // Docker accepts a bare `-o encrypted`
  if (text === 'false') return false;
  throw new ClusterNetworkInputError(`invalid --opt ${key}="${text}": must be true or false`);
}

function* overlayCandidates(family: 4 | 6): Generator<string> {
  if (family === 4) for (let second = 100; second <= 127; second++) yield `10.${second}.0.0/16`;
  else for (let n = 0; n < 0x10000; n++) yield `fd89:5348:4f42:${n.toString(16)}::/64`;
}

function pickOverlaySubnet(family: 4 | 6, taken: TakenRanges): string {
  for (const cand of overlayCandidates(family)) if (firstOverlap(cand, taken) === undefined) return cand;
  throw new ClusterNetworkInputError(`no free private IPv${family} subnet left for an overlay; pass --subnet`);
}

function list<T>(v: T[] | undefined): T[] {
  return Array.isArray(v) ? v : [];
}

/** Validates `input` and builds the record, minus what the transaction decides (VNI, picked subnets). */
function plan(input: OverlayCreateInput, node: string): { net: Omit<ClusterNetwork, 'vni'>; vni: number | undefined; pick: Array<4 | 6> } {
  if (typeof input.name !== 'string' || !NAME_RE.test(input.name)) {
    throw new ClusterNetworkInputError(`invalid network name ${JSON.stringify(input.name)}: use letters, digits, "_", "." and "-" (at most 63, starting with a letter or digit)`);
  }
  if (['host', 'none', 'bridge'].includes(input.name)) throw new ClusterNetworkInputError(`invalid network name "${input.name}": reserved`);
  const options = input.options ?? {};
  for (const k of Object.keys(options)) {
    if (!OVERLAY_OPTS.includes(k)) throw new ClusterNetworkInputError(`unknown --opt "${k}" for driver overlay; known: ${OVERLAY_OPTS.join(', ')}`);
  }
  const vni = options['vni'] === undefined ? undefined : intOption('vni', options['vni'], VNI_MIN, VNI_MAX);
  const mtu = options['mtu'] === undefined ? undefined : intOption('mtu', options['mtu'], 68, 65535);
  const encrypted = options['encrypted'] === undefined ? false : boolOption('encrypted', options['encrypted']);
  if (options['rotation'] !== undefined && !encrypted) throw new ClusterNetworkInputError('invalid --opt rotation: only an encrypted network (-o encrypted=true) has keys to rotate');
  // Rotations shorter than 10 s leave peers too little time to switch generations.
  const rotation = options['rotation'] === undefined ? undefined : intOption('rotation', options['rotation'], 10, 365 * 24 * 3600);
  for (const d of list(input.dns)) if (IpAddr.tryParse(d) === undefined) throw new ClusterNetworkInputError(`invalid --dns "${d}": not an IP address`);
  for (const d of list(input.dnsSearch)) {
    const problem = dnsNameProblem(d);
    if (problem) throw new ClusterNetworkInputError(`invalid --dns-search ${JSON.stringify(d)}: not a domain name (it ${problem})`);
  }
  let hosts: Array<{ name: string; ip: string }>;
  let subnets: SubnetSpec[];
  try {
    hosts = list(input.addHosts).map(parseAddHost);
    subnets = buildSubnetSpecs(list(input.subnets), list(input.gateways), list(input.ipRanges));
  } catch (err) {
    if (err instanceof SubnetInputError || err instanceof ShoalError) throw new ClusterNetworkInputError(err.message);
    throw err;
  }
  const families = new Set(subnets.map((s) => IpPrefix.parse(s.subnet).family));
  if (!input.ipv6 && families.has(6)) throw new ClusterNetworkInputError('invalid --subnet: an IPv6 subnet needs --ipv6');
  const pick: Array<4 | 6> = [];
  if (!families.has(4)) pick.push(4);
  if (input.ipv6 && !families.has(6)) pick.push(6);
  const created = new Date().toISOString();
  const net: Omit<ClusterNetwork, 'vni'> = {
    name: input.name,
    id: networkId(input.name, created),
    driver: 'overlay',
    subnets,
    ipv6: input.ipv6 === true,
    internal: input.internal === true,
    attachable: input.attachable === true,
    dns: list(input.dns),
    dnsSearch: list(input.dnsSearch),
    hosts,
    created,
    createdBy: node,
  };
  if (mtu !== undefined) net.mtu = mtu;
  if (encrypted) {
    net.encrypted = true;
    net.rotationSeconds = rotation ?? DEFAULT_ROTATION_SECONDS;
  }
  return { net, vni, pick };
}

export async function listClusterNetworks(reader: Pick<Txn, 'list'>): Promise<ClusterNetwork[]> {
  const out: ClusterNetwork[] = [];
  for (const kv of await reader.list(CLUSTER_NETWORKS_PREFIX)) {
    try {
      const n = JSON.parse(kv.value) as ClusterNetwork;
      if (n.driver === 'overlay' && typeof n.name === 'string' && Number.isInteger(n.vni) && Array.isArray(n.subnets)) out.push(n);
    } catch {
      // a record that is not JSON is skipped (and cannot be attached to)
    }
  }
  return out;
}

/**
 * Creates the network in etcd. `localTaken`: this node's routes and local networks, which a
 * picked or given subnet must not overlap either.
 */
export async function createClusterNetwork(etcd: Store, input: OverlayCreateInput, node: string, localTaken: TakenRanges): Promise<ClusterNetwork> {
  const { net, vni, pick } = plan(input, node);
  return etcd.transaction(async (txn) => {
    if (await txn.get(clusterNetworkKey(net.name))) throw new ClusterNetworkConflictError(`network "${net.name}" already exists`);
    const others = await listClusterNetworks(txn);
    const taken: TakenRanges = [...others.flatMap((o) => o.subnets.map((s) => ({ cidr: s.subnet, what: `overlay network "${o.name}" (${s.subnet})` }))), ...localTaken];
    for (const s of net.subnets) {
      const clash = firstOverlap(s.subnet, taken);
      if (clash) throw new ClusterNetworkInputError(`invalid --subnet "${s.subnet}": overlaps ${clash}`);
    }
    const subnets = [...net.subnets, ...pick.map((family) => ({ subnet: pickOverlaySubnet(family, taken) }))];
    const used = new Set(others.map((o) => o.vni));
    if (vni !== undefined && used.has(vni)) throw new ClusterNetworkConflictError(`invalid --opt vni=${vni}: used by overlay network "${others.find((o) => o.vni === vni)!.name}"`);
    let chosen = vni ?? FIRST_PICKED_VNI;
    while (vni === undefined && used.has(chosen)) chosen++;
    const record: ClusterNetwork = { ...net, subnets, vni: chosen };
    await txn.put(clusterNetworkKey(net.name), JSON.stringify(record));
    return record;
  });
}

/** Removes the network from etcd (every node then removes its copy); refused while any node has a container on it. */
export async function removeClusterNetwork(etcd: Store, name: string): Promise<void> {
  await etcd.transaction(async (txn) => {
    if (!(await txn.get(clusterNetworkKey(name)))) throw new ClusterNetworkConflictError(`network "${name}" not found in the cluster`);
    const attached = await txn.count(clusterEndpointsPrefix(name));
    if (attached > 0) throw new ClusterNetworkConflictError(`network "${name}" has ${attached} container(s) attached on the cluster's nodes; remove them first`);
    await txn.delete(clusterNetworkKey(name));
  });
}

/** What a node's daemon needs to attach containers here. */
export interface NodeFacts {
  stateDir: string;
  confFile: string;
  underlayAddress: string;
  daemonSocket: string;
}

/** The node's local NetworkRecord for a cluster network (conflist.ts renders its shoal-vxlan conflist). */
export function localRecordOf(net: ClusterNetwork, facts: NodeFacts): NetworkRecord {
  const overlay: NetworkRecord['overlay'] = { vni: net.vni, underlayAddress: facts.underlayAddress, daemonSocket: facts.daemonSocket };
  if (net.mtu !== undefined) overlay.mtu = net.mtu;
  return {
    name: net.name,
    id: net.id,
    driver: 'overlay',
    subnets: net.subnets,
    ipv6: net.ipv6,
    internal: net.internal,
    attachable: net.attachable,
    options: {
      ...(net.mtu !== undefined ? { mtu: String(net.mtu) } : {}),
      vni: String(net.vni),
      ...(net.encrypted ? { encrypted: 'true', rotation: String(net.rotationSeconds ?? DEFAULT_ROTATION_SECONDS) } : {}),
    },
    dns: net.dns,
    dnsSearch: net.dnsSearch,
    hosts: net.hosts,
    bridge: overlayBridgeName(net.name, net.vni),
    overlay,
    cniVersion: CONFLIST_CNI_VERSION,
    confFile: facts.confFile,
    stateDir: facts.stateDir,
    created: net.created,
  };
}
