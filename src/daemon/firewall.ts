/**
 * The DNS accept rules: in Shoal's own `inet shoal` table, a `dns_input` base chain (hook input)
 * with one rule per (network, subnet -> gateway) pair accepting UDP and TCP to the DNS port.
 * Every rule's comment is `dns:<network>`, so a network's rules are replaced or removed exactly.
 *
 * The limit of this (tested in 680-daemon-firewall): nftables evaluates every base chain on a
 * hook, and `accept` ends only the chain it is in. A drop in another table's input chain (a host
 * firewall with `policy drop`, iptables-nft's `filter INPUT`) still drops the packet, whatever
 * our table accepts, at any priority. Nothing inside Shoal's tables can override it, and Shoal
 * does not write into other software's tables. What the daemon does instead: it detects input
 * base chains with policy drop in other tables and logs the exact rule the operator must add
 * there (`dns_firewall_conflict`). When it cannot look (nft fails or prints something
 * unreadable) it says so (`dns_firewall_check_failed`) and looks again on every later sync until
 * a look succeeds: "no warning" must mean "no conflicting chain", not "could not check".
 */
import type { Logger } from 'pino';
import { causeText } from '../errors.js';
import { NftablesError } from '../kernel/errors.js';
import { NftTransaction, SHOAL_TABLE, applyTransaction, checkComment } from '../kernel/nftables.js';
import { runNft, type NftResult } from '../kernel/nftables-exec.js';
import { parseAddress, parseCidr, stripAddress } from '../dns/ip.js';
import type { RegistryNetwork } from '../dns/registry.js';

export const DNS_CHAIN = 'dns_input';
/**
 * Per-client rate meters for --dns-client-rate (dynamic sets: one element per source address,
 * with its own token bucket, gone a minute after its last query). The excess of one client is
 * dropped in the kernel and never costs the server a read, a parse or an answer: it bounds the
 * share of the server one container can take. Only UDP: dropping TCP segments would stall
 * connections, which the server bounds itself. On by default (DEFAULT_DNS_CLIENT_RATE in
 * ./options.ts says why).
 */
export const RATE_SETS = { 4: 'dns_rate4', 6: 'dns_rate6' } as const;

export function ownerOf(network: string): string {
  return `dns:${network}`;
}

/**
 * Packets one client may send at once before its rate applies: a tenth of a second's worth (at
 * least 10). A client's bucket starts full, so this is what a flood gets through in its first
 * instant: with a whole second's worth (10,000 at the default rate), torture dns saw that
 * burst queue ahead of other clients' queries for ~250 ms, at up to 99 ms each.
 */
export function clientBurst(rate: number): number {
  return Math.max(10, Math.ceil(rate / 10));
}

/**
 * Pure: the rule expressions for one network (same-family subnet/gateway pairs): the
 * per-client limit (when `clientRate` > 0), then the accept.
 */
export function dnsAcceptRules(network: RegistryNetwork, port: number, clientRate = 0): string[] {
  const rules: string[] = [];
  for (const g of network.gateways ?? []) {
    const gw = parseAddress(g);
    if (!gw) continue;
    for (const s of network.subnets ?? []) {
      const c = parseCidr(s);
      if (!c || c.family !== gw.family || !s.includes('/')) continue;
      const fam = gw.family === 4 ? 'ip' : 'ip6';
      if (clientRate > 0) {
        rules.push(`${fam} saddr ${s} ${fam} daddr ${stripAddress(g)} udp dport ${port} update @${RATE_SETS[gw.family]} { ${fam} saddr limit rate over ${clientRate}/second burst ${clientBurst(clientRate)} packets } drop`);
      }
      rules.push(`${fam} saddr ${s} ${fam} daddr ${stripAddress(g)} meta l4proto { tcp, udp } th dport ${port} accept`);
    }
  }
  return rules;
}

/** Pure: the transaction that moves the applied state to `desired` (network -> rules); `rateSets`: the rules use the rate meters. */
export function firewallTransaction(applied: ReadonlyMap<string, string[]>, desired: ReadonlyMap<string, string[]>, rateSets = false): NftTransaction | undefined {
  const tx = new NftTransaction();
  let changes = 0;
  const same = (a: string[] | undefined, b: string[]) => a !== undefined && a.length === b.length && a.every((r, i) => r === b[i]);
  for (const [network, rules] of desired) {
    if (same(applied.get(network), rules)) continue;
    if (changes++ === 0) {
      tx.addTable(SHOAL_TABLE).addChain(SHOAL_TABLE, DNS_CHAIN, { type: 'filter', hook: 'input', priority: 'filter', policy: 'accept' });
      if (rateSets) {
        tx.addSet(SHOAL_TABLE, RATE_SETS[4], { type: 'ipv4_addr', flags: ['dynamic', 'timeout'], timeout: '1m' });
        tx.addSet(SHOAL_TABLE, RATE_SETS[6], { type: 'ipv6_addr', flags: ['dynamic', 'timeout'], timeout: '1m' });
      }
    }
    tx.deleteRulesByOwner(SHOAL_TABLE, ownerOf(network), { chain: DNS_CHAIN });
    for (const r of rules) tx.addRule(SHOAL_TABLE, DNS_CHAIN, r, ownerOf(network));
  }
  for (const network of applied.keys()) {
    if (desired.has(network)) continue;
    changes += 1;
    tx.deleteRulesByOwner(SHOAL_TABLE, ownerOf(network), { chain: DNS_CHAIN });
  }
  return changes ? tx : undefined;
}

export interface ForeignDropChain {
  family: string;
  table: string;
  chain: string;
}

export type NftRunner = (args: readonly string[]) => NftResult;

/**
 * Input base chains with policy drop in tables that are not Shoal's. Read-only, chain headers
 * only (`nft -j list chains`): the rules of other software's tables are never read or changed.
 * Throws NftablesError when nft fails or its output is not the JSON document expected.
 */
export function foreignInputDropChains(run: NftRunner = runNft): ForeignDropChain[] {
  const what = 'failed to list "nftables chains"';
  const res = run(['-j', 'list', 'chains']);
  if (res.status !== 0) throw new NftablesError(`${what}: nft exited with status ${res.status}`, res.stderr);
  let doc: { nftables?: unknown };
  try {
    doc = JSON.parse(res.stdout) as { nftables?: unknown };
  } catch (err) {
    throw new NftablesError(`${what}: nft printed no valid JSON: ${causeText(err)}`, '', { cause: err });
  }
  if (!Array.isArray(doc?.nftables)) throw new NftablesError(`${what}: nft printed JSON without an "nftables" array`);
  const out: ForeignDropChain[] = [];
  for (const item of doc.nftables as Array<{ chain?: Record<string, unknown> } | null>) {
    const c = item?.chain;
    if (!c || c.hook !== 'input' || c.policy !== 'drop' || String(c.table).startsWith('shoal')) continue;
    out.push({ family: String(c.family), table: String(c.table), chain: String(c.name) });
  }
  return out;
}

export class DnsFirewall {
  private applied = new Map<string, string[]>();
  private warned = new Set<string>();
  /** A conflict check was asked for and has not succeeded yet: every sync tries again. */
  private checkDue = false;

  private readonly apply: (tx: NftTransaction) => unknown;
  private readonly foreignDrops: () => ForeignDropChain[];
  /** --dns-client-rate (0: no limit, no meters). */
  private readonly clientRate: number;

  constructor(
    private readonly port: number,
    private readonly logger?: Logger,
    opts: { clientRate?: number; apply?: (tx: NftTransaction) => unknown; foreignDrops?: () => ForeignDropChain[] } = {},
  ) {
    this.clientRate = opts.clientRate ?? 0;
    this.apply = opts.apply ?? applyTransaction;
    this.foreignDrops = opts.foreignDrops ?? foreignInputDropChains;
  }

  /** Brings the rules to the networks given; failures are logged and retried on the next sync. */
  sync(networks: readonly RegistryNetwork[], opts: { force?: boolean; checkConflicts?: boolean } = {}): void {
    if (opts.force) this.applied = new Map([...this.applied.keys()].map((k) => [k, []]));
    const desired = new Map<string, string[]>();
    for (const n of networks) {
      // A name that cannot be an owner comment (the plugins refuse those; a store written some
      // other way may not) costs that network its rules, not every network's.
      try {
        checkComment(ownerOf(n.name));
      } catch (err) {
        if (!this.warned.has(`network ${n.name}`)) {
          this.warned.add(`network ${n.name}`);
          this.logger?.warn({ event: 'dns_firewall_network_skipped', network: n.name }, `DNS accept rules skipped for network ${JSON.stringify(n.name)}: ${(err as Error).message}`);
        }
        continue;
      }
      const rules = dnsAcceptRules(n, this.port, this.clientRate);
      if (rules.length) desired.set(n.name, rules);
    }
    let tx: NftTransaction | undefined;
    try {
      tx = firewallTransaction(this.applied, desired, this.clientRate > 0);
    } catch (err) {
      this.logger?.warn({ event: 'dns_firewall_failed', err }, `failed to build "${SHOAL_TABLE.family} ${SHOAL_TABLE.name}" DNS rules: ${(err as Error).message}`);
    }
    if (tx) {
      try {
        this.apply(tx);
        this.applied = desired;
        this.logger?.debug({ event: 'dns_firewall_synced', networks: [...desired.keys()] }, 'DNS accept rules synced');
      } catch (err) {
        this.logger?.warn({ event: 'dns_firewall_failed', err }, `failed to sync "${SHOAL_TABLE.family} ${SHOAL_TABLE.name}" DNS rules: ${(err as Error).message}`);
      }
    }
    if (opts.checkConflicts || this.checkDue) this.checkConflicts(networks);
  }

  private checkConflicts(networks: readonly RegistryNetwork[]): void {
    let chains: ForeignDropChain[];
    try {
      chains = this.foreignDrops();
    } catch (err) {
      this.checkDue = true;
      this.logger?.warn(
        { event: 'dns_firewall_check_failed', err },
        `failed to check "input chains of other tables" for policy drop (DNS from containers may be dropped unnoticed): ${causeText(err)}; retrying on the next sync`,
      );
      return;
    }
    this.checkDue = false;
    for (const c of chains) {
      const id = `${c.family} ${c.table} ${c.chain}`;
      if (this.warned.has(id)) continue;
      this.warned.add(id);
      const example = networks.flatMap((n) => dnsAcceptRules(n, this.port))[0] ?? `<subnet> daddr <gateway> meta l4proto { tcp, udp } th dport ${this.port} accept`;
      this.logger?.warn(
        { event: 'dns_firewall_conflict', family: c.family, table: c.table, chain: c.chain },
        `input chain "${id}" drops by default; Shoal's accept cannot override another table's drop, so DNS from containers needs a rule there, e.g.: nft insert rule ${id} ${example}`,
      );
    }
  }

  /** Removes every rule this daemon added, and the rate meters (graceful stop). */
  clear(): void {
    this.sync([]);
    if (this.clientRate === 0) return;
    for (const set of Object.values(RATE_SETS)) {
      try {
        this.apply(new NftTransaction().deleteSet(SHOAL_TABLE, set));
      } catch {
        // Not there (never made, or made by no sync of this daemon): nothing to remove.
      }
    }
  }

  get networks(): string[] {
    return [...this.applied.keys()];
  }
}
