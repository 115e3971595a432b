/**
 * Service names in DNS, as records the existing snapshot already knows how to serve (no change
 * to the DNS server: whatever thread or process runs it gets the same plain record input).
 *
 * For each service on a network:
 * - the replicas' alias NAME is taken off them, so NAME never answers a replica that is down;
 * - vip: NAME (and NAME.<network>, NAME.<domain>) answers the VIP(s), and the VIP's PTR is NAME;
 * - dnsrr: NAME answers the healthy replicas (the DNS server rotates their order per query:
 *   DnsEngine.rotated; the records are kept in address order, so a shuffle here would be lost);
 * - `tasks.NAME` answers every healthy replica, in both modes.
 * A service with no healthy replica still has its names (NOERROR, no address for dnsrr/tasks),
 * so a client sees "exists, nothing up" rather than NXDOMAIN.
 * TTL: the network's local TTL (5 s by default): short, so dnsrr clients follow health changes.
 */
import type { RegistryContents, RegistryEndpoint } from '../dns/registry.js';
import type { DnsRecordsInput } from '../dns/types.js';
import type { ServiceRecord } from './model.js';
import { isReplicaOf, type Replica } from './replicas.js';

export interface ServiceDnsView {
  record: ServiceRecord;
  /** Healthy replicas only. */
  healthy: readonly Replica[];
}

function synthetic(network: string, containerId: string, name: string, addresses: readonly string[]): RegistryEndpoint {
  return {
    network,
    containerId,
    ifname: 'service',
    name,
    ipv4: addresses.filter((a) => !a.includes(':')),
    ipv6: addresses.filter((a) => a.includes(':')),
  };
}

const addressesOf = (replicas: readonly Replica[]) => replicas.flatMap((r) => [r.ipv4, r.ipv6].filter((a): a is string => a !== undefined));

/** The registry contents with the services' names put in (pure). */
export function withServiceRecords(contents: RegistryContents, services: readonly ServiceDnsView[]): DnsRecordsInput {
  if (services.length === 0) return contents;
  const endpoints: RegistryEndpoint[] = contents.endpoints.map((e) => {
    const mine = services.filter((s) => isReplicaOf(e, s.record));
    if (mine.length === 0) return e;
    const names = new Set(mine.map((s) => s.record.name));
    return { ...e, aliases: (e.aliases ?? []).filter((a) => !names.has(a.toLowerCase())) };
  });
  // Services of networks with no endpoint record at all have no DNS network to live in.
  const networks = new Set(contents.networks.map((n) => n.name));
  for (const s of services) {
    const { name, network } = s.record;
    if (!networks.has(network)) continue;
    const healthy = addressesOf(s.healthy);
    const main = s.record.endpointMode === 'vip' ? s.record.vips : healthy;
    endpoints.push(synthetic(network, `service:${name}`, name, main));
    endpoints.push(synthetic(network, `service-tasks:${name}`, `tasks.${name}`, healthy));
  }
  return { networks: contents.networks, endpoints };
}
