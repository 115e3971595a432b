/**
 * Reads nftables state through `nft -j list` (libnftables JSON schema) into typed objects: the
 * transaction builder needs rule handles to delete rules by owner comment, and GC needs to see
 * which owners still have rules. Only tables whose name starts with "shoal" are returned by
 * listShoalTables; other software's tables are never interpreted.
 */
import { NftablesError } from './errors.js';
import { runNft } from './nftables-exec.js';

export type NftFamily = 'ip' | 'ip6' | 'inet' | 'arp' | 'bridge' | 'netdev';

export interface NftTableRef {
  family: NftFamily;
  name: string;
}

export interface NftChainInfo {
  family: NftFamily;
  table: string;
  name: string;
  handle: number;
  /** Base chains only. */
  type?: string;
  hook?: string;
  priority?: number;
  policy?: string;
}

export interface NftRuleInfo {
  family: NftFamily;
  table: string;
  chain: string;
  handle: number;
  comment?: string;
  /** The rule's statements in libnftables JSON form, uninterpreted. */
  expr: unknown[];
}

export interface NftSetInfo {
  family: NftFamily;
  table: string;
  name: string;
  handle: number;
  /** e.g. "ipv4_addr", or ["ipv4_addr", "inet_service"] for a concatenation. */
  type: string | string[];
  /** Maps only: the value type ("ipv4_addr", "verdict", ...). */
  valueType?: string | string[];
  flags: string[];
  /** Elements in libnftables JSON form (strings, {prefix}, [key, value] pairs for maps). */
  elements: unknown[];
}

export interface NftTableInfo {
  family: NftFamily;
  name: string;
  handle: number;
  chains: NftChainInfo[];
  sets: NftSetInfo[];
  maps: NftSetInfo[];
  rules: NftRuleInfo[];
}

type JsonObj = Record<string, unknown>;

function asObj(v: unknown): JsonObj {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as JsonObj) : {};
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : String(v ?? '');
}

function num(v: unknown): number {
  return typeof v === 'number' ? v : Number(v);
}

function setInfo(o: JsonObj, isMap: boolean): NftSetInfo {
  const info: NftSetInfo = {
    family: str(o.family) as NftFamily,
    table: str(o.table),
    name: str(o.name),
    handle: num(o.handle),
    type: o.type as string | string[],
    flags: Array.isArray(o.flags) ? o.flags.map(str) : typeof o.flags === 'string' ? [o.flags] : [],
    elements: Array.isArray(o.elem) ? o.elem : [],
  };
  if (isMap) info.valueType = o.map as string | string[];
  return info;
}

/** Groups the flat `nftables` array of `nft -j list ...` into tables. */
export function parseNftJson(json: string, what: string): NftTableInfo[] {
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch (err) {
    throw new NftablesError(`failed to parse "nft -j ${what}" output: ${(err as Error).message}`, '', { cause: err });
  }
  const items = asObj(doc).nftables;
  if (!Array.isArray(items)) throw new NftablesError(`failed to parse "nft -j ${what}" output: no "nftables" array`);
  const tables = new Map<string, NftTableInfo>();
  const tableOf = (family: unknown, name: unknown): NftTableInfo | undefined => tables.get(`${str(family)} ${str(name)}`);
  for (const item of items) {
    const o = asObj(item);
    if (o.table) {
      const t = asObj(o.table);
      const info: NftTableInfo = { family: str(t.family) as NftFamily, name: str(t.name), handle: num(t.handle), chains: [], sets: [], maps: [], rules: [] };
      tables.set(`${info.family} ${info.name}`, info);
    } else if (o.chain) {
      const c = asObj(o.chain);
      const chain: NftChainInfo = { family: str(c.family) as NftFamily, table: str(c.table), name: str(c.name), handle: num(c.handle) };
      if (c.type !== undefined) chain.type = str(c.type);
      if (c.hook !== undefined) chain.hook = str(c.hook);
      if (c.prio !== undefined) chain.priority = num(c.prio);
      if (c.policy !== undefined) chain.policy = str(c.policy);
      tableOf(c.family, c.table)?.chains.push(chain);
    } else if (o.rule) {
      const r = asObj(o.rule);
      const rule: NftRuleInfo = {
        family: str(r.family) as NftFamily,
        table: str(r.table),
        chain: str(r.chain),
        handle: num(r.handle),
        expr: Array.isArray(r.expr) ? r.expr : [],
      };
      if (typeof r.comment === 'string') rule.comment = r.comment;
      tableOf(r.family, r.table)?.rules.push(rule);
    } else if (o.set) {
      const s = asObj(o.set);
      tableOf(s.family, s.table)?.sets.push(setInfo(s, false));
    } else if (o.map) {
      const m = asObj(o.map);
      tableOf(m.family, m.table)?.maps.push(setInfo(m, true));
    }
  }
  return [...tables.values()];
}

/** One table, or undefined when it does not exist. */
export function readTable(ref: NftTableRef): NftTableInfo | undefined {
  const args = ['-j', 'list', 'table', ref.family, ref.name];
  const res = runNft(args);
  if (res.status !== 0) {
    if (/No such file or directory/.test(res.stderr)) return undefined;
    throw new NftablesError(`failed to list nftables table "${ref.family} ${ref.name}"`, res.stderr);
  }
  return parseNftJson(res.stdout, `list table ${ref.family} ${ref.name}`).find((t) => t.family === ref.family && t.name === ref.name);
}

/** Every table whose name starts with `prefix` (default "shoal"): Shoal's own, never others'. */
export function listShoalTables(prefix = 'shoal'): NftTableInfo[] {
  if (!prefix.startsWith('shoal')) throw new NftablesError(`refusing to read tables with prefix "${prefix}": Shoal reads only its own tables`);
  const res = runNft(['-j', 'list', 'ruleset']);
  if (res.status !== 0) throw new NftablesError('failed to list the nftables ruleset', res.stderr);
  return parseNftJson(res.stdout, 'list ruleset').filter((t) => t.name.startsWith(prefix));
}

/** The named counters of a table: name -> bytes and packets; empty when the table does not exist. */
export function readCounters(ref: NftTableRef): Map<string, { bytes: number; packets: number }> {
  const res = runNft(['-j', 'list', 'counters', 'table', ref.family, ref.name]);
  const counters = new Map<string, { bytes: number; packets: number }>();
  if (res.status !== 0) {
    if (/No such file or directory/.test(res.stderr)) return counters;
    throw new NftablesError(`failed to list the counters of nftables table "${ref.family} ${ref.name}"`, res.stderr);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(res.stdout);
  } catch {
    throw new NftablesError(`nft printed no JSON for the counters of "${ref.family} ${ref.name}"`, res.stdout.slice(0, 200));
  }
  for (const item of (asObj(doc).nftables as unknown[] | undefined) ?? []) {
    const c = asObj(item).counter;
    if (c === undefined) continue;
    const o = asObj(c);
    counters.set(str(o.name), { bytes: num(o.bytes), packets: num(o.packets) });
  }
  return counters;
}

/** Rules of a table (optionally one chain) whose comment is `owner` (or starts with it). */
export function rulesByOwner(table: NftTableInfo | undefined, owner: string, opts: { chain?: string; prefix?: boolean } = {}): NftRuleInfo[] {
  if (!table) return [];
  return table.rules.filter(
    (r) =>
      r.comment !== undefined &&
      (opts.chain === undefined || r.chain === opts.chain) &&
      (opts.prefix ? r.comment.startsWith(owner) : r.comment === owner),
  );
}
