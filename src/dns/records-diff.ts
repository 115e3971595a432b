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
 * A full record set is sent instead (`kind: 'full'`) when a delta could not say it: the first
 * set, a changed network config or SRV table (they shape every answer of the network), an
 * endpoint on a network without a config, one of a container on several networks (its
 * addresses share a scope across them), or a delta of more than 1,000 endpoints and a quarter of the records.
 */
import type { DnsEndpoint, DnsRecordsInput } from './types.js';
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
export function diffEndpoints(prev: readonly DnsEndpoint[], next: readonly DnsEndpoint[]): RecordsDelta {
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

/** Containers among `ids` with endpoints on more than one network in `endpoints`. */
function onSeveralNetworks(endpoints: readonly DnsEndpoint[], ids: ReadonlySet<string>): boolean {
  const seen = new Map<string, string>();
  for (const e of endpoints) {
    if (!ids.has(e.containerId)) continue;
    const first = seen.get(e.containerId);
    if (first === undefined) seen.set(e.containerId, e.network);
    else if (first !== e.network) return true;
  }
  return false;
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
    if (changed.length === 0) return { kind: 'delta', ...delta };
    if (changed.length > Math.max(1000, next.endpoints.length / 4)) return { kind: 'full' };
    const configured = new Set(next.networks.map((n) => n.name));
    if (changed.some((e) => !configured.has(e.network))) return { kind: 'full' };
    const ids = new Set(changed.map((e) => e.containerId));
    if (onSeveralNetworks(prev.endpoints, ids) || onSeveralNetworks(next.endpoints, ids)) return { kind: 'full' };
    return { kind: 'delta', ...delta };
  }
}
