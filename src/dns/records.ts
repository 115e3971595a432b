/**
 * Shared lookup for the two record handlers (containers, custom hosts): A/AAAA/ANY over an
 * address map, PTR over a reverse map, NODATA when the name exists without the asked family.
 */
import { ptrTarget, type AddressSet, type NetworkRecords, type PtrTarget } from './network-records.js';
import type { Scope } from './snapshot.js';
import { encodeName, encodeRecord } from './wire.js';
import { QTYPE, RCODE, type LocalResult, type Question } from './types.js';

export function answerFromMaps(
  scope: Scope,
  q: Question,
  addresses: (n: NetworkRecords) => ReadonlyMap<string, AddressSet>,
  reverse: (n: NetworkRecords) => ReadonlyMap<string, PtrTarget>,
): LocalResult | undefined {
  if (q.opaque || q.class !== 1 || scope.networks.length === 0) return undefined;
  if (q.type === QTYPE.PTR) {
    for (const net of scope.networks) {
      const target = ptrTarget(reverse(net).get(q.name));
      if (target !== undefined) {
        return { kind: 'local', rcode: RCODE.NOERROR, records: [encodeRecord(QTYPE.PTR, net.ttl, encodeName(target))], network: net.name };
      }
    }
    return undefined;
  }
  let found: NetworkRecords | undefined;
  const v4: Buffer[] = [];
  const v6: Buffer[] = [];
  for (const net of scope.networks) {
    const set = addresses(net).get(q.name);
    if (!set) continue;
    found ??= net;
    for (const a of set.v4) if (!v4.some((b) => b.equals(a))) v4.push(a);
    for (const a of set.v6) if (!v6.some((b) => b.equals(a))) v6.push(a);
  }
  if (!found) return undefined;
  const ttl = found.ttl;
  const records: Buffer[] = [];
  if (q.type === QTYPE.A || q.type === QTYPE.ANY) for (const a of v4) records.push(encodeRecord(QTYPE.A, ttl, a));
  if (q.type === QTYPE.AAAA || q.type === QTYPE.ANY) for (const a of v6) records.push(encodeRecord(QTYPE.AAAA, ttl, a));
  // Any other type, or a family the name has no address of: NOERROR with no answer (NODATA).
  return { kind: 'local', rcode: RCODE.NOERROR, records, network: found.name };
}
