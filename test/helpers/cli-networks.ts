import { deleteAttachmentRules, removeNetworkPolicy } from '../../src/bridge/firewall.js';
import { bridgeNameFor } from '../../src/network/model.js';
import { ipQuiet } from './kernel-objects.js';

/**
 * Teardown after `shoal network rm --force`: what the networks `names` made in the kernel, in
 * case rm itself failed (a failing run must not leave a bridge or its nftables rules behind).
 * Bridges are named as `shoal network create` names them; nothing here exists after a good rm.
 */
export function removeNetworkLeftovers(names: string[]): void {
  for (const name of names) {
    const bridge = bridgeNameFor(name);
    removeNetworkPolicy(bridge);
    deleteAttachmentRules((owner) => owner.startsWith(`${name}/`));
    ipQuiet(['link', 'del', 'dev', bridge]);
  }
}
