/**
 * The network records `shoal network create` keeps in the state store, and the key layout.
 * The store record is the source of truth for the CLI; the conflist in the CNI config dir is
 * rendered from it (conflist.ts) and is what runtimes (podman) read.
 *
 *   networks/<name>   -> NetworkRecord (JSON)
 *
 * Names are URI-encoded in keys (the store wants ASCII and no forged "/").
 */
import { createHash } from 'node:crypto';
import type { Store } from '../store/store.js';
import { ShoalError } from '../errors.js';
import { IpAddr, IpPrefix } from '../addr.js';

export const NETWORKS_KEY_PREFIX = 'networks/';

export type Driver = 'bridge' | 'macvlan' | 'ipvlan' | 'overlay';
/** What `shoal network create` makes on its own; `overlay` goes through the daemon (DESIGN §7). */
export const DRIVERS: readonly Driver[] = ['bridge', 'macvlan', 'ipvlan'];

/** The node-side facts of an overlay network, filled in by the node's daemon. */
export interface OverlayFacts {
  vni: number;
  /** This node's underlay address (its VTEP): the daemon's --advertise-addr. */
  underlayAddress: string;
  /** Where shoal-ipam asks this node's daemon for a new address block. */
  daemonSocket: string;
  /** Set by --mtu; else the underlay's MTU minus the VXLAN overhead. */
  mtu?: number;
}

export interface SubnetSpec {
  /** Network address form, e.g. 10.89.0.0/24. */
  subnet: string;
  gateway?: string;
  /** Sub-range addresses are handed out from (docker's --ip-range). */
  ipRange?: string;
}

/** The subnet's gateway: as given, else its first address (shoal-ipam's default). */
export function subnetGateway(s: Pick<SubnetSpec, 'subnet' | 'gateway'>): IpPrefix {
  const subnet = IpPrefix.parse(s.subnet);
  return IpPrefix.of(s.gateway ? IpAddr.parse(s.gateway) : subnet.network().next(), subnet.length);
}

export interface NetworkRecord {
  name: string;
  /** sha256 of name + creation time: stable identity, shown like docker's network id. */
  id: string;
  driver: Driver;
  subnets: SubnetSpec[];
  ipv6: boolean;
  internal: boolean;
  attachable: boolean;
  /** `--opt K=V` as given (validated per driver). */
  options: Record<string, string>;
  /** Upstream resolvers for this network (`--dns`). */
  dns: string[];
  dnsSearch: string[];
  /** `--add-host NAME:IP`: served by the network's DNS and written into sandboxes' /etc/hosts. */
  hosts: Array<{ name: string; ip: string }>;
  /** Linux bridge name (bridge and overlay drivers). */
  bridge?: string;
  /** Overlay networks only: a cluster network, mirrored here from etcd by the daemon. */
  overlay?: OverlayFacts;
  cniVersion: string;
  /** Absolute path of the conflist written for this network. */
  confFile: string;
  /** State dir the conflist's plugins were told to use. */
  stateDir: string;
  created: string;
}

/** Network names: what CNI accepts for a network name, and short enough to read in tables. */
export const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;

export class NetworkError extends ShoalError {}
export class NetworkNotFoundError extends ShoalError {
  constructor(name: string) {
    super('ENETWORKNOTFOUND', `network "${name}" not found`);
  }
}

export function networkKey(name: string): string {
  return NETWORKS_KEY_PREFIX + encodeURIComponent(name);
}

export function networkId(name: string, created: string): string {
  return createHash('sha256').update(`${name}\0${created}`).digest('hex');
}

/**
 * The Linux bridge of a network: "shoal-<name>" when it fits the 15-byte interface limit,
 * else "shoal-" + 9 hex digits of a hash of the name, so two long names never collide.
 */
export function bridgeNameFor(name: string): string {
  const plain = `shoal-${name}`;
  if (Buffer.byteLength(plain) <= 15 && /^[a-zA-Z0-9_.-]+$/.test(name)) return plain;
  return `shoal-${createHash('sha256').update(name).digest('hex').slice(0, 9)}`;
}

export async function getNetwork(store: Store, name: string): Promise<NetworkRecord | undefined> {
  const kv = await store.get(networkKey(name));
  return kv ? (JSON.parse(kv.value) as NetworkRecord) : undefined;
}

export async function requireNetwork(store: Store, name: string): Promise<NetworkRecord> {
  const net = await getNetwork(store, name);
  if (!net) throw new NetworkNotFoundError(name);
  return net;
}

export async function listNetworks(store: Store): Promise<NetworkRecord[]> {
  const kvs = await store.list(NETWORKS_KEY_PREFIX);
  return kvs.map((kv) => JSON.parse(kv.value) as NetworkRecord).sort((a, b) => a.name.localeCompare(b.name));
}

/** Finds a network by exact name, else by a unique id prefix of at least 3 characters. */
export async function findNetwork(store: Store, query: string): Promise<NetworkRecord | undefined> {
  const exact = await getNetwork(store, query);
  if (exact) return exact;
  if (query.length < 3) return undefined;
  const matches = (await listNetworks(store)).filter((n) => n.id.startsWith(query));
  return matches.length === 1 ? matches[0] : undefined;
}
