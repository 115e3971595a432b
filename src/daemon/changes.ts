/**
 * What changed between two reads of the DNS registry, for the daemon's per-record log events
 * (`dns_record_added` / `_removed` / `_changed`, `dns_network_added` / `_removed` / `_changed`).
 * Pure, so the events a test or an operator sees are unit-tested.
 */
import type { RegistryContents, RegistryEndpoint, RegistryNetwork } from '../dns/registry.js';

export interface RegistryChange {
  event: 'dns_record_added' | 'dns_record_removed' | 'dns_record_changed' | 'dns_network_added' | 'dns_network_removed' | 'dns_network_changed';
  network: string;
  containerId?: string;
  ifname?: string;
  name?: string;
  record: RegistryEndpoint | RegistryNetwork;
}

const endpointId = (e: RegistryEndpoint) => `${e.network}\n${e.containerId}\n${e.ifname}`;

function diff<T>(
  before: readonly T[],
  after: readonly T[],
  id: (v: T) => string,
  make: (kind: 'added' | 'removed' | 'changed', v: T) => RegistryChange,
): RegistryChange[] {
  // The registry reader keeps unchanged records as the same objects in the same order: the
  // common head and tail are skipped by reference (at 100,000 records building the maps for a
  // one-record change cost 150-200 ms of every sync).
  let start = 0;
  while (start < before.length && start < after.length && before[start] === after[start]) start += 1;
  let endBefore = before.length;
  let endAfter = after.length;
  while (endBefore > start && endAfter > start && before[endBefore - 1] === after[endAfter - 1]) {
    endBefore -= 1;
    endAfter -= 1;
  }
  if (start > 0 || endBefore < before.length) {
    before = before.slice(start, endBefore);
    after = after.slice(start, endAfter);
  }
  const prev = new Map(before.map((v) => [id(v), v]));
  const out: RegistryChange[] = [];
  for (const v of after) {
    const old = prev.get(id(v));
    prev.delete(id(v));
    if (old === undefined) out.push(make('added', v));
    // The registry reader keeps an unchanged record's object: no need to compare its text.
    else if (old !== v && JSON.stringify(old) !== JSON.stringify(v)) out.push(make('changed', v));
  }
  for (const v of prev.values()) out.push(make('removed', v));
  return out;
}

export function registryChanges(before: RegistryContents | undefined, after: RegistryContents): RegistryChange[] {
  const b = before ?? { networks: [], endpoints: [] };
  return [
    ...diff(b.networks, after.networks, (n) => n.name, (kind, n) => ({ event: `dns_network_${kind}`, network: n.name, record: n })),
    ...diff(b.endpoints, after.endpoints, endpointId, (kind, e) => ({
      event: `dns_record_${kind}`,
      network: e.network,
      containerId: e.containerId,
      ifname: e.ifname,
      name: e.name,
      record: e,
    })),
  ];
}
