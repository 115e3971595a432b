/**
 * The L2 plugins' nftables rules, as data (DESIGN §4.4), all in Shoal's own tables:
 *
 * - `ip shoal-nat` / `ip6 shoal-nat`, chain `l2_postrouting`: one masquerade rule per container
 *   address (`ipMasq`), owner "<network>/<container>/<ifname>".
 * - `bridge shoal`, chain `l2_macspoof`: one rule per container (`macspoofchk`) dropping frames
 *   from its host veth whose source MAC is not the container's. A bridge-family table, because
 *   traffic between two ports of one bridge never reaches the IP hooks.
 * - `inet shoal`, chain `l2_forward` + map `l2_nets` + one chain per bridge (`isolate`,
 *   `internal`): network-level rules, owner "<network>", rewritten whole by every ADD (flush
 *   and re-add in one transaction, so racing ADDs stay idempotent without reading the table).
 *
 * Shoal bridges are recognised by their device group (SHOAL_BRIDGE_GROUP), which ADD sets on
 * every bridge it manages: `isolate` then needs no list of other networks, and a network that
 * is not isolated itself needs no nft call at all.
 *
 * Every chain name here starts with "l2_": other Shoal components share these tables.
 */
import type { IpPrefix } from '../addr.js';
import { NftablesError } from '../kernel/errors.js';
import { applyTransaction, NftTransaction, SHOAL_NAT4, SHOAL_NAT6, SHOAL_TABLE, type NftTableRef } from '../kernel/nftables.js';
import { listShoalTables, type NftRuleInfo, type NftTableInfo } from '../kernel/nftables-reader.js';
import { bridgeChainName } from './names.js';

export const SHOAL_BRIDGE_TABLE: NftTableRef = { family: 'bridge', name: 'shoal' };
/** Device group of every bridge the L2 plugins manage ("SH"). */
export const SHOAL_BRIDGE_GROUP = 0x5348;

export const MASQ_CHAIN = 'l2_postrouting';
export const MACSPOOF_CHAIN = 'l2_macspoof';
export const FORWARD_CHAIN = 'l2_forward';
export const NETWORKS_MAP = 'l2_nets';
/** Owner comment of the two dispatch rules in l2_forward, shared by every network. */
const DISPATCH_OWNER = 'shoal-l2';

/** Where a container's per-attachment rules live; DEL, CHECK and GC look only here. */
export const ATTACHMENT_CHAINS: ReadonlyArray<{ table: NftTableRef; chain: string }> = [
  { table: SHOAL_NAT4, chain: MASQ_CHAIN },
  { table: SHOAL_NAT6, chain: MASQ_CHAIN },
  { table: SHOAL_BRIDGE_TABLE, chain: MACSPOOF_CHAIN },
];

/** A name spliced into a rule in double quotes: nft has no escapes, so refuse what would break it. */
function quoted(name: string): string {
  if (!/^[^"\\\s]{1,15}$/.test(name)) throw new NftablesError(`failed to build nftables rule for interface "${name}": the name cannot be quoted for nft`);
  return `"${name}"`;
}

/**
 * The masquerade rule for one container address (reference ipmasq: not to its own subnet, not
 * multicast). `address` is the container's address with its subnet's length (10.1.2.5/24).
 */
export function masqueradeRule(address: IpPrefix): { table: NftTableRef; expr: string } {
  const ip = address.addr.toString();
  const subnet = address.masked().toString();
  if (address.family === 6) return { table: SHOAL_NAT6, expr: `ip6 saddr ${ip} ip6 daddr != ${subnet} ip6 daddr != ff00::/8 masquerade` };
  return { table: SHOAL_NAT4, expr: `ip saddr ${ip} ip daddr != ${subnet} ip daddr != 224.0.0.0/4 masquerade` };
}

export function macspoofRule(hostVeth: string, mac: string): string {
  return `iifname ${quoted(hostVeth)} ether saddr != ${mac.toLowerCase()} drop`;
}

export interface NetworkPolicy {
  network: string;
  bridge: string;
  isolate: boolean | 'strict';
  internal: boolean;
}

/** The rules of one bridge's chain, in order. Empty when the network has no policy. */
export function networkPolicyRules(p: NetworkPolicy): string[] {
  const br = quoted(p.bridge);
  const rules = [`iifname ${br} oifname ${br} return`];
  if (p.internal) rules.push(`iifname ${br} drop`, `oifname ${br} drop`);
  if (p.isolate === 'strict') rules.push(`iifname ${br} meta oifkind "bridge" drop`, `oifname ${br} meta iifkind "bridge" drop`);
  if (p.isolate) rules.push(`iifname ${br} oifgroup ${SHOAL_BRIDGE_GROUP} drop`, `oifname ${br} iifgroup ${SHOAL_BRIDGE_GROUP} drop`);
  return rules.length > 1 ? rules : [];
}

/** Adds (rewrites) a network's isolation/internal chain and its dispatch entry. */
export function addNetworkPolicy(tx: NftTransaction, p: NetworkPolicy): boolean {
  const rules = networkPolicyRules(p);
  if (rules.length === 0) return false;
  const chain = bridgeChainName(p.bridge);
  tx.addTable(SHOAL_TABLE)
    .addChain(SHOAL_TABLE, FORWARD_CHAIN, { type: 'filter', hook: 'forward', priority: 'filter', policy: 'accept' })
    .addMap(SHOAL_TABLE, NETWORKS_MAP, { type: 'ifname', valueType: 'verdict' })
    .addChain(SHOAL_TABLE, chain)
    .flushChain(SHOAL_TABLE, chain);
  for (const rule of rules) tx.addRule(SHOAL_TABLE, chain, rule, p.network);
  tx.addElements(SHOAL_TABLE, NETWORKS_MAP, [[quoted(p.bridge), `jump ${chain}`]])
    .flushChain(SHOAL_TABLE, FORWARD_CHAIN)
    .addRule(SHOAL_TABLE, FORWARD_CHAIN, `iifname vmap @${NETWORKS_MAP}`, DISPATCH_OWNER)
    .addRule(SHOAL_TABLE, FORWARD_CHAIN, `oifname vmap @${NETWORKS_MAP}`, DISPATCH_OWNER);
  return true;
}

/** What ADD installs for one attachment. */
export interface AttachmentRules {
  owner: string;
  /** The container's addresses with their subnets' length. */
  masquerade: IpPrefix[];
  macspoof?: { hostVeth: string; mac: string };
}

export function addAttachmentRules(tx: NftTransaction, a: AttachmentRules): void {
  for (const address of a.masquerade) {
    const { table, expr } = masqueradeRule(address);
    tx.addTable(table).addChain(table, MASQ_CHAIN, { type: 'nat', hook: 'postrouting', priority: 'srcnat', policy: 'accept' }).addRule(table, MASQ_CHAIN, expr, a.owner);
  }
  if (a.macspoof) {
    tx.addTable(SHOAL_BRIDGE_TABLE)
      .addChain(SHOAL_BRIDGE_TABLE, MACSPOOF_CHAIN, { type: 'filter', hook: 'prerouting', priority: 'filter', policy: 'accept' })
      .addRule(SHOAL_BRIDGE_TABLE, MACSPOOF_CHAIN, macspoofRule(a.macspoof.hostVeth, a.macspoof.mac), a.owner);
  }
}

/** Shoal's tables as they are now (one `nft -j list ruleset`). */
export function readShoalTables(): NftTableInfo[] {
  return listShoalTables();
}

/** Rules in the attachment chains whose owner satisfies `match`. */
export function attachmentRules(tables: NftTableInfo[], match: (owner: string) => boolean): NftRuleInfo[] {
  const found: NftRuleInfo[] = [];
  for (const { table, chain } of ATTACHMENT_CHAINS) {
    const t = tables.find((x) => x.family === table.family && x.name === table.name);
    for (const r of t?.rules ?? []) if (r.chain === chain && r.comment !== undefined && match(r.comment)) found.push(r);
  }
  return found;
}

/**
 * Deletes the attachment rules whose owner satisfies `match` (DEL: one owner; GC: stale ones).
 * Reads the ruleset once; if a concurrent DEL removed a handle first, reads again and retries.
 * Returns the owners whose rules were deleted.
 */
export function deleteAttachmentRules(match: (owner: string) => boolean): string[] {
  for (let attempt = 1; ; attempt++) {
    const rules = attachmentRules(readShoalTables(), match);
    if (rules.length === 0) return [];
    const tx = new NftTransaction();
    for (const r of rules) tx.deleteRule({ family: r.family, name: r.table }, r.chain, r.handle);
    try {
      applyTransaction(tx);
      return [...new Set(rules.map((r) => r.comment ?? ''))];
    } catch (err) {
      if (attempt >= 2) throw err;
    }
  }
}

/**
 * Removes a bridge's network-level rules (its chain and dispatch entry): for the CLI's
 * `network rm` and for tests; ADD never calls it. Missing pieces are success.
 */
export function removeNetworkPolicy(bridge: string): void {
  const tables = readShoalTables();
  const shoal = tables.find((t) => t.family === SHOAL_TABLE.family && t.name === SHOAL_TABLE.name);
  const chain = bridgeChainName(bridge);
  if (!shoal?.chains.some((c) => c.name === chain)) return;
  const tx = new NftTransaction();
  const inMap = shoal.maps.find((m) => m.name === NETWORKS_MAP)?.elements.some((e) => JSON.stringify(e).includes(`"${bridge}"`));
  if (inMap) tx.deleteElements(SHOAL_TABLE, NETWORKS_MAP, [quoted(bridge)], { idempotent: false });
  tx.deleteChain(SHOAL_TABLE, chain);
  applyTransaction(tx);
}

/** The addresses among `addresses` whose masquerade rule is missing for `owner`. */
export function missingMasquerade(tables: NftTableInfo[], owner: string, addresses: readonly IpPrefix[]): IpPrefix[] {
  const mine = attachmentRules(tables, (o) => o === owner);
  const missing: IpPrefix[] = [];
  for (const address of addresses) {
    const { table } = masqueradeRule(address);
    // nft -j writes addresses as inet_ntop does, which is the one formatter's text too.
    const ip = `"${address.addr.toString()}"`;
    const hit = mine.some((r) => r.family === table.family && r.table === table.name && r.chain === MASQ_CHAIN && JSON.stringify(r.expr).includes(ip));
    if (!hit) missing.push(address);
  }
  return missing;
}
