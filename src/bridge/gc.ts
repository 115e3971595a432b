/**
 * GC for the L2 plugins' per-container rules: every rule in the attachment chains owned by an
 * attachment of this network that the runtime no longer lists is deleted. Allocations are the
 * IPAM's GC (delegated by the plugin before this runs).
 */
import type { GcAttachment } from '../../cni/types.js';
import { deleteAttachmentRules } from './firewall.js';
import { attachmentOwner, parseAttachmentOwner } from './names.js';

export function collectStaleRules(network: string, valid: readonly GcAttachment[], log: { info(o: Record<string, unknown>, m?: string): void }): string[] {
  const keep = new Set(valid.map((a) => attachmentOwner(network, a.containerID, a.ifname)));
  const removed = deleteAttachmentRules((owner) => parseAttachmentOwner(owner)?.network === network && !keep.has(owner));
  if (removed.length) log.info({ removed }, 'removed nftables rules of stale attachments');
  return removed;
}
