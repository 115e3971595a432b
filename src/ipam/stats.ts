import type { Store } from '../store/store.js';
import { NETWORKS_PREFIX, addrPrefix, networkFromInfoKey, networkInfoKey } from './keys.js';

export interface IpamNetworkStats {
  network: string;
  /** Addresses held by attachments right now. */
  allocated: number;
  /** Addresses the network's ranges can hand out (gateways and excludes not counted), as of its last ADD. */
  capacity: number;
}

/**
 * For the daemon's `shoal_ipam_addresses_allocated{network}` / `_capacity` gauges. Needs only
 * the store: every ADD records its network's capacity there. A capacity beyond 2^53 (an IPv6
 * /64) is reported as a float, which is what a Prometheus gauge holds anyway.
 */
export async function ipamNetworkStats(store: Store, network: string): Promise<IpamNetworkStats> {
  const info = await store.get(networkInfoKey(network));
  const capacity = info ? Number((JSON.parse(info.value) as { capacity: string }).capacity) : 0;
  return { network, allocated: await store.count(addrPrefix(network)), capacity };
}

export async function ipamStats(store: Store): Promise<IpamNetworkStats[]> {
  const networks = (await store.list(NETWORKS_PREFIX)).map((kv) => networkFromInfoKey(kv.key));
  const stats: IpamNetworkStats[] = [];
  for (const network of networks) stats.push(await ipamNetworkStats(store, network));
  return stats;
}
