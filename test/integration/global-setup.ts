/**
 * Integration-run bookkeeping for the nftables tables Shoal owns (`inet shoal`, `ip/ip6
 * shoal-nat`, `bridge shoal`). The plugins under test write into the real tables, and by design
 * leave their shared skeleton behind when the last attachment goes (empty maps, dispatch rules):
 * removing it on DEL would race a concurrent ADD. Each test removes its own owners' rules; this
 * teardown removes the skeleton of tables the run itself created, so the suite leaves no table
 * behind. Tables that existed before the run (a Shoal installation on this machine) are never
 * touched, and a table still holding per-owner state is kept and reported.
 */
import { applyTransaction, NftTransaction } from '../../src/kernel/nftables.js';
import { listShoalTables, type NftTableInfo } from '../../src/kernel/nftables-reader.js';

/** Comments of the rules every network shares (portmap dispatch, L2 forward dispatch). */
const SHARED_RULE_OWNERS = new Set(['portmap', 'shoal-l2']);
const key = (t: Pick<NftTableInfo, 'family' | 'name'>) => `${t.family} ${t.name}`;

function onlySkeleton(table: NftTableInfo): boolean {
  return (
    [...table.maps, ...table.sets].every((s) => s.elements.length === 0) &&
    table.rules.every((r) => r.comment !== undefined && SHARED_RULE_OWNERS.has(r.comment))
  );
}

export default function setup(): () => void {
  const before = new Set(listShoalTables().map(key));
  return () => {
    const created = listShoalTables().filter((t) => !before.has(key(t)));
    const leftovers = created.filter((t) => !onlySkeleton(t));
    const tx = new NftTransaction();
    for (const table of created.filter(onlySkeleton)) tx.deleteTable({ family: table.family, name: table.name });
    if (!tx.isEmpty) applyTransaction(tx);
    if (leftovers.length) {
      // Kept on purpose: per-owner state here means a test did not clean up after itself.
      console.error(`integration teardown: nftables state left by tests in ${leftovers.map(key).join(', ')}`);
    }
  };
}
