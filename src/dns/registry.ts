/**
 * The DNS registry in the state store: what shoal-dns (the writer, one short-lived process per
 * CNI call) and the daemon (the reader, following store changes) agree on. Going through the
 * store, not a socket to the daemon, is what lets ADD/DEL work while the daemon is down: the
 * daemon reads the whole registry when it comes up.
 *
 * Key layout (names URI-encoded, values JSON):
 *
 *   dns/networks/<network>                           -> RegistryNetwork  (a DnsNetworkConfig)
 *   dns/endpoints/<network>/<containerId>/<ifname>   -> RegistryEndpoint (a DnsEndpoint + ifname)
 *
 * A network record exists while at least one endpoint of it does: the last DEL (or GC) of a
 * network removes it in the same transaction, so the daemon stops listening on its gateway.
 */
import { IpPrefix } from '../addr.js';
import type { Store, Txn } from '../store/store.js';
import { stripAddress } from './ip.js';
import type { DnsEndpoint, DnsNetworkConfig, DnsRecordsInput } from './types.js';

export const DNS_PREFIX = 'dns/';
export const NETWORKS_PREFIX = 'dns/networks/';
export const ENDPOINTS_PREFIX = 'dns/endpoints/';

/** What the store holds for a network: the DNS server's network config, as is. */
export type RegistryNetwork = DnsNetworkConfig;

/** What the store holds for one attachment: the DNS server's endpoint plus its interface. */
export interface RegistryEndpoint extends DnsEndpoint {
  ifname: string;
  /** The container interface's MAC (from the ADD result), for overlay peers on other nodes. */
  mac?: string;
  /** Set on endpoints of other nodes mirrored from the cluster; absent: this node's. */
  node?: string;
}

export interface AttachmentRef {
  network: string;
  containerId: string;
  ifname: string;
}

const enc = encodeURIComponent;

export function networkKey(network: string): string {
  return `${NETWORKS_PREFIX}${enc(network)}`;
}

/** Prefix of every endpoint of `network` (with a trailing slash so "a" never matches "ab"). */
export function networkEndpointsPrefix(network: string): string {
  return `${ENDPOINTS_PREFIX}${enc(network)}/`;
}

export function endpointKey(ref: AttachmentRef): string {
  return `${networkEndpointsPrefix(ref.network)}${enc(ref.containerId)}/${enc(ref.ifname)}`;
}

/** Inverse of endpointKey; undefined for a key that is not an endpoint key. */
export function parseEndpointKey(key: string): AttachmentRef | undefined {
  if (!key.startsWith(ENDPOINTS_PREFIX)) return undefined;
  const parts = key.slice(ENDPOINTS_PREFIX.length).split('/');
  if (parts.length !== 3 || parts.some((p) => p === '')) return undefined;
  const [network, containerId, ifname] = parts.map((p) => decodeURIComponent(p)) as [string, string, string];
  return { network, containerId, ifname };
}

function union(a: readonly string[] | undefined, b: readonly string[] | undefined): string[] | undefined {
  const out = [...new Set([...(a ?? []), ...(b ?? [])])];
  return out.length ? out : undefined;
}

/**
 * A stored record's addresses in the one formatter's text: records written before it had IPv6
 * subnets uncompressed ("fd00:0:0:0:0:0:0:0/64"), and the union must not hold one subnet twice.
 */
const canonicalGateways = (list: readonly string[] | undefined) => list?.map(stripAddress);
const canonicalSubnets = (list: readonly string[] | undefined) => list?.map((s) => IpPrefix.tryParse(s)?.toString() ?? s);

/**
 * The network record after an ADD: the config's own fields (domain, hosts, upstreams, ttl) come
 * from the latest ADD (the conflist is the source of truth), while gateways and subnets are
 * the union of what every attachment's prevResult showed (a dual-stack network can show the
 * v4 half in one result and both in another, and dropping one would drop a listener).
 */
export function mergeNetwork(existing: RegistryNetwork | undefined, next: RegistryNetwork): RegistryNetwork {
  const merged: RegistryNetwork = { ...next };
  const gateways = union(canonicalGateways(existing?.gateways), next.gateways);
  const subnets = union(canonicalSubnets(existing?.subnets), next.subnets);
  if (gateways) merged.gateways = gateways;
  if (subnets) merged.subnets = subnets;
  return merged;
}

/** A corrupt value must not take the daemon (or every DEL) down: it reads as missing. */
function parseJson<T>(value: string): T | undefined {
  try {
    return JSON.parse(value) as T;
  } catch {
    return undefined;
  }
}

/** ADD: upserts the network and writes the endpoint, atomically. */
export async function registerEndpoint(store: Store, network: RegistryNetwork, endpoint: RegistryEndpoint): Promise<void> {
  if (endpoint.network !== network.name) throw new Error(`endpoint network "${endpoint.network}" is not "${network.name}"`);
  await store.transaction(async (txn) => {
    const existing = await txn.get(networkKey(network.name));
    const prev = existing ? parseJson<RegistryNetwork>(existing.value) : undefined;
    await txn.put(networkKey(network.name), JSON.stringify(mergeNetwork(prev, network)));
    await txn.put(endpointKey(endpoint), JSON.stringify(endpoint));
  });
}

async function removeInTxn(txn: Txn, ref: AttachmentRef): Promise<boolean> {
  const existed = await txn.delete(endpointKey(ref));
  if ((await txn.count(networkEndpointsPrefix(ref.network))) === 0) await txn.delete(networkKey(ref.network));
  return existed;
}

/** DEL: removes the endpoint (and the network with its last endpoint). Unknown is success. */
export async function unregisterEndpoint(store: Store, ref: AttachmentRef): Promise<boolean> {
  return store.transaction((txn) => removeInTxn(txn, ref));
}

export async function getEndpoint(store: Store, ref: AttachmentRef): Promise<RegistryEndpoint | undefined> {
  const kv = await store.get(endpointKey(ref));
  return kv ? parseJson<RegistryEndpoint>(kv.value) : undefined;
}

export async function getNetwork(store: Store, network: string): Promise<RegistryNetwork | undefined> {
  const kv = await store.get(networkKey(network));
  return kv ? parseJson<RegistryNetwork>(kv.value) : undefined;
}

/**
 * GC: removes every endpoint of `network` whose (containerId, ifname) is not in `valid`.
 * Returns the removed attachments.
 */
export async function gcEndpoints(
  store: Store,
  network: string,
  valid: ReadonlyArray<{ containerId: string; ifname: string }>,
): Promise<AttachmentRef[]> {
  const keep = new Set(valid.map((v) => `${v.containerId}\n${v.ifname}`));
  return store.transaction(async (txn) => {
    const removed: AttachmentRef[] = [];
    for (const kv of await txn.list(networkEndpointsPrefix(network))) {
      const ref = parseEndpointKey(kv.key);
      if (!ref || keep.has(`${ref.containerId}\n${ref.ifname}`)) continue;
      await removeInTxn(txn, ref);
      removed.push(ref);
    }
    return removed;
  });
}

export interface RegistryContents extends DnsRecordsInput {
  networks: RegistryNetwork[];
  endpoints: RegistryEndpoint[];
}

/**
 * Everything, for the daemon. Two plain reads, not a transaction: on SQLite a transaction
 * takes the write lock, which would make every daemon refresh contend with CNI ADDs. A write
 * landing between the reads bumps the revision, so the daemon's watch fires again and the next
 * refresh sees both halves.
 */
export async function loadRegistry(store: Store): Promise<RegistryContents> {
  const networks = await readNetworks(store);
  const endpoints: RegistryEndpoint[] = [];
  for (const kv of await store.list(ENDPOINTS_PREFIX)) {
    const e = parseEndpoint(kv.value);
    if (e) endpoints.push(e);
  }
  return { networks, endpoints };
}

/** Every network record that parses. */
export async function readNetworks(store: Pick<Store, 'list'>): Promise<RegistryNetwork[]> {
  const networks: RegistryNetwork[] = [];
  for (const kv of await store.list(NETWORKS_PREFIX)) {
    const n = parseJson<RegistryNetwork>(kv.value);
    if (n && typeof n.name === 'string') networks.push(n);
  }
  return networks;
}

/** An endpoint record, or undefined when the value is not one. */
export function parseEndpoint(value: string): RegistryEndpoint | undefined {
  const e = parseJson<RegistryEndpoint>(value);
  return e && typeof e.name === 'string' && typeof e.network === 'string' ? e : undefined;
}
