// For benchmarks: Shoal's nftables tables a bench run created and left as empty skeletons.
// DEL leaves a table's skeleton on purpose (a concurrent ADD may need it); a bench removes the
// skeletons of tables that did not exist before it started, as the integration teardown does.
import { spawnSync } from 'node:child_process';

/** Shoal's nftables tables, as "family name". */
export function shoalTables() {
  const out = spawnSync('nft', ['-j', 'list', 'tables'], { encoding: 'utf8' }).stdout || '{"nftables":[]}';
  return JSON.parse(out).nftables.filter((o) => o.table?.name?.startsWith('shoal')).map((o) => `${o.table.family} ${o.table.name}`);
}

/** True when a table holds only the skeleton DEL leaves (empty maps and sets, shared dispatch rules). */
function onlySkeleton(family, name) {
  const items = JSON.parse(spawnSync('nft', ['-j', 'list', 'table', family, name], { encoding: 'utf8' }).stdout || '{"nftables":[]}').nftables;
  return items.every((o) => (o.map ? !o.map.elem?.length : o.set ? !o.set.elem?.length : o.rule ? ['portmap', 'shoal-l2'].includes(o.rule.comment) : true));
}

/** Deletes the skeletons of Shoal tables not in `before` (from shoalTables() at the start). */
export function removeNewSkeletons(before) {
  for (const t of shoalTables().filter((t) => !before.has(t))) {
    const [family, name] = t.split(' ');
    if (onlySkeleton(family, name)) spawnSync('nft', ['delete', 'table', family, name]);
  }
}
