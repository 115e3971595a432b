/**
 * A service's replicas: the endpoints on its network that carry the service name as an alias
 * (`--network-alias NAME`), read from the DNS registry the CNI plugins write. The registry is
 * the one source: a replica on another node joins the same way, its endpoint mirrored from etcd
 * (ClusterOverlay) with `node` naming where it runs; an endpoint without `node` is local.
 */
import { parseAddress } from '../dns/ip.js';
import type { RegistryEndpoint } from '../dns/registry.js';
import type { ServiceSpec } from './model.js';

export interface Replica {
  /** `<containerId>/<ifname>`: stable for the attachment's life. */
  id: string;
  containerId: string;
  /** The container's DNS name. */
  name: string;
  node: string;
  /** On this node (reached through the local bridge) rather than over the overlay. */
  local: boolean;
  ipv4?: string;
  ipv6?: string;
}

const first = (list: readonly string[] | undefined, family: 4 | 6) =>
  (list ?? []).map((a) => parseAddress(a)).find((a) => a?.family === family)?.toString();

export function isReplicaOf(e: RegistryEndpoint, spec: Pick<ServiceSpec, 'name' | 'network'>): boolean {
  return e.network === spec.network && (e.aliases ?? []).some((a) => a.toLowerCase() === spec.name);
}

/** The replicas of `spec` among `endpoints`, sorted by id (a stable order for the data path). */
export function replicasOf(spec: Pick<ServiceSpec, 'name' | 'network'>, endpoints: readonly RegistryEndpoint[], node = 'local'): Replica[] {
  const out: Replica[] = [];
  for (const e of endpoints) {
    if (!isReplicaOf(e, spec)) continue;
    const r: Replica = { id: `${e.containerId}/${e.ifname}`, containerId: e.containerId, name: e.name, node: e.node ?? node, local: e.node === undefined };
    const v4 = first(e.ipv4, 4);
    const v6 = first(e.ipv6, 6);
    if (v4) r.ipv4 = v4;
    if (v6) r.ipv6 = v6;
    if (v4 || v6) out.push(r);
  }
  return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}
