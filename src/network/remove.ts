/**
 * Removing a network, for `shoal network rm` and `prune`: detach what is attached (DEL through
 * the chain for each cached attachment, then GC of the whole list), delete the bridge when
 * nothing else uses it, remove the bridge plugin's network-level rules, then the record and
 * the conflist.
 */
import { ShoalError } from '../errors.js';
import type { Store } from '../store/store.js';
import { attachmentProblems, listAttachments } from './attachments.js';
import { readCached } from './cache.js';
import { delCached, gcNetworkList, type ChainOptions } from './chain.js';
import { deleteNetworkRecord, loadConflist } from './manage.js';
import type { NetworkRecord } from './model.js';

export class NetworkInUseError extends ShoalError {
  constructor(network: string, who: string[]) {
    super('ENETWORKINUSE', `failed to remove network "${network}": ${who.length} container(s) attached (${who.join(', ')}); disconnect them or use --force`);
  }
}

/** DEL of every attachment ADD cached, then GC of the list with nothing valid. */
export async function detachAll(store: Store, net: NetworkRecord, opts: ChainOptions): Promise<void> {
  for (const a of await listAttachments(store, net)) {
    if (readCached(opts.stateDir, net.name, a.containerId, a.ifname)) await delCached(opts, net.name, a.containerId, a.ifname);
  }
  await gcNetworkList(opts, loadConflist(net), []);
}

/** The network's bridge, unless something else still has ports on it, and its policy rules. */
async function deleteBridge(net: NetworkRecord): Promise<void> {
  if (!net.bridge) return;
  const { openRtnl } = await import('../kernel/rtnl.js');
  const { findLink, listLinks, deleteLinkIfExists } = await import('../kernel/link.js');
  const nl = openRtnl();
  try {
    const br = findLink(nl, net.bridge);
    if (br && br.kind !== 'bridge') return;
    // A bridge that still has ports is in use by something we do not know: leave it and its rules.
    if (br && listLinks(nl).some((l) => l.masterIndex === br.index)) return;
    if (br) deleteLinkIfExists(nl, br.index);
  } finally {
    nl.close();
  }
  // The bridge plugin's network-level rules (isolation/internal chain) outlive every DEL by
  // design; the plugin exports this for removing a network (src/bridge/firewall.ts).
  const { removeNetworkPolicy } = await import('../bridge/firewall.js');
  removeNetworkPolicy(net.bridge);
}

/**
 * Removes the network; refused (NetworkInUseError) while containers are attached, unless
 * `force`. Attachment records that cannot be read count as attached and are reported through
 * `warn` (src/network/attachments.ts).
 */
export async function removeNetwork(store: Store, net: NetworkRecord, force: boolean, opts: ChainOptions, warn?: (problems: string[]) => void): Promise<void> {
  const attached = await listAttachments(store, net);
  const problems = attachmentProblems(net, attached);
  if (problems.length) warn?.(problems);
  if (attached.length && !force) throw new NetworkInUseError(net.name, attached.map((a) => a.name ?? a.containerId.slice(0, 12)));
  if (attached.length) await detachAll(store, net, opts);
  await deleteBridge(net);
  await deleteNetworkRecord(store, net);
}
