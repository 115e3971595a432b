import type { Store } from '../store/store.js';
import { type Address, addressFromKey, formatAddress } from './address.js';
import { type Attachment, release } from './allocator.js';
import { GarbageCollectionError } from './errors.js';
import { type AddressRecord, addrPrefix, attachmentPrefix, parseAttachmentKey } from './keys.js';

export interface GcReport {
  released: Array<{ containerId: string; ifname: string; addresses: string[] }>;
}

const idOf = (a: Attachment): string => `${a.containerId}\u0000${a.ifname}`;

/**
 * Holders that are Shoal's own, not a runtime's container: a service VIP (`service:<name>`), a
 * node's load-balancer endpoint (`node:<name>`). A runtime's container id cannot contain ':'
 * (CNI spec: alphanumerics, '_', '.', '-'), so a runtime's GC never lists them and must not
 * release them.
 */
export const isShoalHolder = (a: Pick<Attachment, 'containerId'>): boolean => a.containerId.includes(':');

/**
 * Releases every allocation in `network` whose (container id, ifname) is not in `valid`.
 * Each stale attachment is released in its own transaction, so one failure (or a concurrent ADD
 * holding the lock too long) does not stop the rest; failures are collected and thrown together
 * at the end. The address records are the truth: an address record whose owner has no
 * attachment index (which one transaction per ADD should make impossible) is reclaimed too.
 */
export async function collectGarbage(store: Store, network: string, valid: readonly Attachment[]): Promise<GcReport> {
  const keep = new Set(valid.map(idOf));
  const stale = new Map<string, Attachment>();
  for (const kv of await store.list(attachmentPrefix(network))) {
    const attachment = parseAttachmentKey(network, kv.key);
    if (!keep.has(idOf(attachment)) && !isShoalHolder(attachment)) stale.set(idOf(attachment), attachment);
  }
  const orphans: Array<{ key: string; address: Address; owner: Attachment }> = [];
  const prefix = addrPrefix(network);
  for (const kv of await store.list(prefix)) {
    const owner = JSON.parse(kv.value) as AddressRecord;
    if (!keep.has(idOf(owner)) && !stale.has(idOf(owner)) && !isShoalHolder(owner))
      orphans.push({ key: kv.key, address: addressFromKey(kv.key.slice(prefix.length)), owner: { containerId: owner.containerId, ifname: owner.ifname } });
  }

  const report: GcReport = { released: [] };
  const failures: Array<{ containerId: string; ifname: string; error: unknown }> = [];
  for (const attachment of stale.values()) {
    try {
      const addresses = await store.transaction((txn) => release(txn, network, attachment));
      report.released.push({ ...attachment, addresses: addresses.map(formatAddress) });
    } catch (error) {
      failures.push({ ...attachment, error });
    }
  }
  for (const orphan of orphans) {
    try {
      const removed = await store.transaction(async (txn) => {
        // Re-read under the lock: it may have been released or re-allocated meanwhile.
        const current = await txn.get(orphan.key);
        const holder = current && (JSON.parse(current.value) as AddressRecord);
        if (!holder || idOf(holder) !== idOf(orphan.owner)) return false;
        return txn.delete(orphan.key);
      });
      if (removed) report.released.push({ ...orphan.owner, addresses: [formatAddress(orphan.address)] });
    } catch (error) {
      failures.push({ ...orphan.owner, error });
    }
  }
  if (failures.length) throw new GarbageCollectionError(network, failures);
  return report;
}
