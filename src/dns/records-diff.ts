/**
 * What changed between two record sets, so DNS can apply a change instead of rebuilding
 * everything (snapshot.ts `applyDelta`): the endpoints that left and the ones that came.
 *
 * The daemon hands over the whole registry on every store change, in the store's key order,
 * so one ADD or DEL shows as one entry inserted or dropped. The diff therefore skips the
 * common head and tail by comparing fields (no allocation: ~5 ms for 100,000 endpoints) and
 * compares only the part between them as multisets, by a key per endpoint. A reordered input
 * still diffs right, only slower.
 *
 * A container on several networks shares one scope across its addresses, a fact of all its
 * endpoints, not only the changed ones: the delta carries every changed container's endpoints
 * after the change (one pass over the new set, ~1 ms at 100,000), and each worker sets that
 * container's shared scope from them (container-scopes.ts).
 *
 * A full record set is sent instead (`kind: 'full'`) when a delta could not say it: the first
 * set, a changed network config or SRV table (they shape every answer of the network), an
 * endpoint on a network without a config, or a delta of more than 1,000 endpoints and a
 * quarter of the records.
 */
import type { DnsEndpoint, DnsRecordsInput } from './types.js';
import type { ContainerEndpoints } from './container-scopes.js';
import type { RecordsDelta } from './snapshot.js';

export type RecordsChange = { kind: 'full' } | ({ kind: 'delta' } & RecordsDelta);

const sameList = (a: readonly string[] | undefined, b: readonly string[] | undefined): boolean => {
  if (a === b) return true;
  const x = a ?? [];
  const y = b ?? [];
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i += 1) if (x[i] !== y[i]) return false;
  return true;
};

/** Equal as DNS sees them (fields like ifname or mac do not make an answer). */
export function sameEndpoint(a: DnsEndpoint, b: DnsEndpoint): boolean {
  return (
    a === b ||
    (a.network === b.network && a.containerId === b.containerId && a.name === b.name && sameList(a.aliases, b.aliases) && sameList(a.ipv4, b.ipv4) && sameList(a.ipv6, b.ipv6))
  );
}

const endpointKey = (e: DnsEndpoint): string =>
  `${e.network}\n${e.containerId}\n${e.name}\n${(e.aliases ?? []).join(' ')}\n${(e.ipv4 ?? []).join(' ')}\n${(e.ipv6 ?? []).join(' ')}`;

/** The endpoints of `next` not in `prev` and those of `prev` not in `next`, as multisets. */
export function diffEndpoints(prev: readonly DnsEndpoint[], next: readonly DnsEndpoint[]): Omit<RecordsDelta, 'containers'> {
  let head = 0;
  while (head < prev.length && head < next.length && sameEndpoint(prev[head] as DnsEndpoint, next[head] as DnsEndpoint)) head += 1;
  let endPrev = prev.length;
  let endNext = next.length;
  while (endPrev > head && endNext > head && sameEndpoint(prev[endPrev - 1] as DnsEndpoint, next[endNext - 1] as DnsEndpoint)) {
    endPrev -= 1;
    endNext -= 1;
  }
  // Removed ones carry prev's object: the receiver takes away exactly what it was given.
  const left = new Map<string, DnsEndpoint[]>();
  for (let i = head; i < endPrev; i += 1) {
    const e = prev[i] as DnsEndpoint;
    const k = endpointKey(e);
    const list = left.get(k);
    if (list) list.push(e);
    else left.set(k, [e]);
  }
  const added: DnsEndpoint[] = [];
  for (let i = head; i < endNext; i += 1) {
    const e = next[i] as DnsEndpoint;
    const list = left.get(endpointKey(e));
    if (list?.length) list.pop();
    else added.push(e);
  }
  return { added, removed: [...left.values()].flat() };
}

/** The SRV table and network configs as text: small, and compared whole. */
function configKey(input: DnsRecordsInput): string {
  const srv = input.srv ? [...input.srv].map(([net, names]) => [net, [...names]]) : null;
  return JSON.stringify([input.networks, srv]);
}

/** Each of `ids` with its endpoints in `endpoints` (empty when it has none left). */
function containerEndpoints(endpoints: readonly DnsEndpoint[], ids: ReadonlySet<string>): ContainerEndpoints[] {
  const byId = new Map<string, DnsEndpoint[]>();
  for (const id of ids) byId.set(id, []);
  for (const e of endpoints) byId.get(e.containerId)?.push(e);
  return [...byId];
}

/**
 * Remembers the last record set (by reference: callers hand over a new one per change and do
 * not mutate it afterwards) and says how the next one differs.
 */
export class RecordsDiffer {
  private prev: DnsRecordsInput | undefined;
  private prevConfig = '';

  change(next: DnsRecordsInput): RecordsChange {
    const prev = this.prev;
    const config = configKey(next);
    this.prev = next;
    const prevConfig = this.prevConfig;
    this.prevConfig = config;
    if (!prev || config !== prevConfig) return { kind: 'full' };
    const delta = diffEndpoints(prev.endpoints, next.endpoints);
    const changed = [...delta.added, ...delta.removed];
    if (changed.length === 0) return { kind: 'delta', ...delta, containers: [] };
    if (changed.length > Math.max(1000, next.endpoints.length / 4)) return { kind: 'full' };
    const configured = new Set(next.networks.map((n) => n.name));
    if (changed.some((e) => !configured.has(e.network))) return { kind: 'full' };
    const ids = new Set(changed.map((e) => e.containerId));
    return { kind: 'delta', ...delta, containers: containerEndpoints(next.endpoints, ids) };
  }
}
