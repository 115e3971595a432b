/**
 * nftables changes as data (DESIGN §4.4): record operations on an NftTransaction, render them
 * to `nft -f -` text, apply the whole text with one exec so the kernel commits all of it or none.
 *
 * Guard: every operation names its table, and a table whose name does not start with "shoal"
 * is refused when the operation is recorded and again when rendering. There is no operation
 * that flushes the ruleset. Shoal owns `inet shoal`, `ip shoal-nat` and `ip6 shoal-nat`.
 *
 * Every rule carries a comment naming its owner (network / container id / ifname), so DEL and
 * GC remove exactly their own rules: deleteRulesByOwner is resolved to rule handles by reading
 * the table right before applying.
 *
 * nft 1.0.x has no quoting for identifiers and no escapes inside quoted strings, so names are
 * restricted to plain identifiers (which also must not be nft keywords such as "fwd" or
 * "counter": nft reports those as a syntax error naming the token), and comments may not
 * contain a double quote or control characters. Rule expressions are nft syntax written by
 * Shoal code; they may not contain `;`, `#` or line breaks, so one call adds exactly one rule.
 */
import { NftablesError } from './errors.js';
import { runNft } from './nftables-exec.js';
import { readTable, rulesByOwner, type NftTableInfo, type NftTableRef } from './nftables-reader.js';

export type { NftFamily, NftTableRef } from './nftables-reader.js';

export const SHOAL_TABLE: NftTableRef = { family: 'inet', name: 'shoal' };
export const SHOAL_NAT4: NftTableRef = { family: 'ip', name: 'shoal-nat' };
export const SHOAL_NAT6: NftTableRef = { family: 'ip6', name: 'shoal-nat' };

export interface BaseChainSpec {
  type: 'filter' | 'nat' | 'route';
  hook: 'prerouting' | 'input' | 'forward' | 'output' | 'postrouting' | 'ingress' | 'egress';
  /** A number, or a standard name with optional offset: "dstnat", "srcnat + 10", "filter - 5". */
  priority: number | string;
  policy?: 'accept' | 'drop';
  /** netdev ingress/egress chains only. */
  device?: string;
}

export interface SetSpec {
  /** Element type: "ipv4_addr", "inet_service", "ipv4_addr . inet_proto . inet_service". */
  type: string;
  flags?: Array<'constant' | 'interval' | 'timeout' | 'dynamic'>;
  /** e.g. "30s", "1h" (requires the timeout flag). */
  timeout?: string;
  elements?: string[];
}

export interface MapSpec {
  type: string;
  /** Value type: "ipv4_addr", "verdict", "ipv4_addr . inet_service", ... */
  valueType: string;
  flags?: Array<'constant' | 'interval' | 'timeout' | 'dynamic'>;
  elements?: Array<[string, string]>;
}

export interface OwnerMatch {
  /** Restrict to one chain. */
  chain?: string;
  /** Match comments starting with owner (e.g. every rule of a network) instead of equal to it. */
  prefix?: boolean;
}

export type NftOp =
  | { op: 'addTable'; table: NftTableRef }
  | { op: 'deleteTable'; table: NftTableRef }
  | { op: 'flushTable'; table: NftTableRef }
  | { op: 'addChain'; table: NftTableRef; chain: string; spec?: BaseChainSpec }
  | { op: 'flushChain'; table: NftTableRef; chain: string }
  | { op: 'deleteChain'; table: NftTableRef; chain: string }
  | { op: 'addSet'; table: NftTableRef; set: string; spec: SetSpec }
  | { op: 'addMap'; table: NftTableRef; map: string; spec: MapSpec }
  | { op: 'deleteSet'; table: NftTableRef; set: string; kind: 'set' | 'map' }
  | { op: 'addCounter'; table: NftTableRef; counter: string }
  | { op: 'deleteCounter'; table: NftTableRef; counter: string }
  | { op: 'addElements'; table: NftTableRef; set: string; elements: Array<string | [string, string]> }
  | { op: 'deleteElements'; table: NftTableRef; set: string; elements: string[]; idempotent: boolean }
  | { op: 'addRule'; table: NftTableRef; chain: string; expr: string; owner: string; insert: boolean }
  | { op: 'deleteRule'; table: NftTableRef; chain: string; handle: number }
  | { op: 'deleteRulesByOwner'; table: NftTableRef; owner: string; match: OwnerMatch };

/** How render finds the current rules of a table (for deleteRulesByOwner). */
export type TableLookup = (table: NftTableRef) => NftTableInfo | undefined;

const FAMILIES = new Set<string>(['ip', 'ip6', 'inet', 'arp', 'bridge', 'netdev']);
const NAME_RE = /^[A-Za-z_][A-Za-z0-9_.-]{0,254}$/;
const TYPE_RE = /^[a-z0-9_]+( \. [a-z0-9_]+)*$/;
const PRIORITY_RE = /^(raw|mangle|dstnat|filter|security|srcnat|out)( [+-] \d{1,5})?$/;
const TIMEOUT_RE = /^(\d+(d|h|m|s|ms))+$/;
/** nft keeps at most 128 bytes of user data for a comment. */
const COMMENT_MAX_BYTES = 128;

function refuse(what: string, why: string): never {
  throw new NftablesError(`failed to build nftables transaction for ${what}: ${why}`);
}

function checkTable(t: NftTableRef): void {
  const what = `table "${t.family} ${t.name}"`;
  if (!FAMILIES.has(t.family)) refuse(what, `unknown family "${t.family}"`);
  if (!NAME_RE.test(t.name)) refuse(what, 'not a valid nft identifier');
  if (!t.name.startsWith('shoal')) refuse(what, 'Shoal only touches tables whose name starts with "shoal"');
}

function checkName(kind: string, name: string): void {
  if (!NAME_RE.test(name)) refuse(`${kind} "${name}"`, 'not a valid nft identifier');
}

/** Text spliced into a command: one command per line, no comments, no second command. */
function checkFragment(kind: string, text: string, allowBraces: boolean): void {
  if (text.trim() === '') refuse(kind, 'empty');
  if (/[;#\r\n\0]/.test(text)) refuse(`${kind} "${text}"`, 'may not contain ";", "#" or line breaks');
  if (!allowBraces && /[{}]/.test(text)) refuse(`${kind} "${text}"`, 'may not contain braces');
  if ((text.match(/"/g) ?? []).length % 2 !== 0) refuse(`${kind} "${text}"`, 'unbalanced double quote');
  if (/(^|\s)comment(\s|$)/.test(text)) refuse(`${kind} "${text}"`, 'the owner comment is added by the builder');
}

/** Owner comments are matched byte for byte on delete, so they are refused rather than mangled. */
export function checkComment(comment: string): void {
  const what = `comment "${comment}"`;
  if (comment === '') refuse('comment', 'empty');
  if (Buffer.byteLength(comment) > COMMENT_MAX_BYTES) refuse(what, `longer than ${COMMENT_MAX_BYTES} bytes`);
  // nft quoted strings end at the next double quote and know no escapes; control characters
  // (newline above all) would end the command.
  // eslint-disable-next-line no-control-regex
  if (/["\x00-\x1f\x7f]/.test(comment)) refuse(what, 'may not contain double quotes or control characters');
}

function checkPriority(p: number | string): void {
  if (typeof p === 'number' ? !Number.isInteger(p) : !PRIORITY_RE.test(p)) refuse(`priority "${p}"`, 'expected an integer or e.g. "dstnat - 5"');
}

function validate(op: NftOp): void {
  checkTable(op.table);
  switch (op.op) {
    case 'addChain':
      checkName('chain', op.chain);
      if (op.spec) {
        checkPriority(op.spec.priority);
        if (op.spec.device !== undefined && !/^[^\s"/]{1,15}$/.test(op.spec.device)) refuse(`device "${op.spec.device}"`, 'not an interface name');
      }
      break;
    case 'flushChain':
    case 'deleteChain':
    case 'deleteRule':
      checkName('chain', op.chain);
      if (op.op === 'deleteRule' && !(Number.isInteger(op.handle) && op.handle > 0)) refuse(`rule handle "${op.handle}"`, 'not a handle');
      break;
    case 'addSet':
    case 'addMap': {
      const name = op.op === 'addSet' ? op.set : op.map;
      checkName(op.op === 'addSet' ? 'set' : 'map', name);
      if (!TYPE_RE.test(op.spec.type)) refuse(`set type "${op.spec.type}"`, 'expected e.g. "ipv4_addr . inet_service"');
      if (op.op === 'addMap' && !TYPE_RE.test(op.spec.valueType)) refuse(`map value type "${op.spec.valueType}"`, 'expected e.g. "ipv4_addr"');
      if (op.op === 'addSet' && op.spec.timeout !== undefined && !TIMEOUT_RE.test(op.spec.timeout)) refuse(`timeout "${op.spec.timeout}"`, 'expected e.g. "30s"');
      for (const e of op.spec.elements ?? []) for (const part of typeof e === 'string' ? [e] : e) checkFragment('element', part, false);
      break;
    }
    case 'deleteSet':
      checkName(op.kind, op.set);
      break;
    case 'addCounter':
    case 'deleteCounter':
      checkName('counter', op.counter);
      break;
    case 'addElements':
    case 'deleteElements':
      checkName('set', op.set);
      if (op.elements.length === 0) refuse(`set "${op.set}"`, 'no elements');
      for (const e of op.elements) for (const part of typeof e === 'string' ? [e] : e) checkFragment('element', part, false);
      break;
    case 'addRule':
      checkName('chain', op.chain);
      checkFragment('rule', op.expr, true);
      checkComment(op.owner);
      break;
    case 'deleteRulesByOwner':
      if (op.match.chain !== undefined) checkName('chain', op.match.chain);
      checkComment(op.owner);
      break;
    default:
      break;
  }
}

const tableText = (t: NftTableRef) => `${t.family} ${t.name}`;
const elementText = (e: string | [string, string]) => (typeof e === 'string' ? e : `${e[0]} : ${e[1]}`);

function renderOp(op: NftOp, lookup: TableLookup): string[] {
  const t = tableText(op.table);
  switch (op.op) {
    case 'addTable':
      return [`add table ${t}`];
    case 'deleteTable':
      // nft 1.0.6 has no "destroy": adding first makes a delete of a missing table succeed.
      return [`add table ${t}`, `delete table ${t}`];
    case 'flushTable':
      return [`flush table ${t}`];
    case 'addChain': {
      if (!op.spec) return [`add chain ${t} ${op.chain}`];
      const s = op.spec;
      const device = s.device !== undefined ? ` device "${s.device}"` : '';
      const policy = s.policy ? ` policy ${s.policy} ;` : '';
      return [`add chain ${t} ${op.chain} { type ${s.type} hook ${s.hook}${device} priority ${s.priority} ;${policy} }`];
    }
    case 'flushChain':
      return [`flush chain ${t} ${op.chain}`];
    case 'deleteChain':
      return [`add chain ${t} ${op.chain}`, `flush chain ${t} ${op.chain}`, `delete chain ${t} ${op.chain}`];
    case 'addSet': {
      const s = op.spec;
      const flags = s.flags?.length ? ` flags ${s.flags.join(',')} ;` : '';
      const timeout = s.timeout ? ` timeout ${s.timeout} ;` : '';
      const lines = [`add set ${t} ${op.set} { type ${s.type} ;${flags}${timeout} }`];
      if (s.elements?.length) lines.push(`add element ${t} ${op.set} { ${s.elements.join(', ')} }`);
      return lines;
    }
    case 'addMap': {
      const s = op.spec;
      const flags = s.flags?.length ? ` flags ${s.flags.join(',')} ;` : '';
      const lines = [`add map ${t} ${op.map} { type ${s.type} : ${s.valueType} ;${flags} }`];
      if (s.elements?.length) lines.push(`add element ${t} ${op.map} { ${s.elements.map(elementText).join(', ')} }`);
      return lines;
    }
    case 'deleteSet':
      return [`delete ${op.kind} ${t} ${op.set}`];
    case 'addCounter':
      // An existing counter keeps its values (no NLM_F_EXCL, and counters have no update).
      return [`add counter ${t} ${op.counter}`];
    case 'deleteCounter':
      return [`delete counter ${t} ${op.counter}`];
    case 'addElements':
      return [`add element ${t} ${op.set} { ${op.elements.map(elementText).join(', ')} }`];
    case 'deleteElements': {
      const list = op.elements.join(', ');
      const del = `delete element ${t} ${op.set} { ${list} }`;
      return op.idempotent ? [`add element ${t} ${op.set} { ${list} }`, del] : [del];
    }
    case 'addRule':
      return [`${op.insert ? 'insert' : 'add'} rule ${t} ${op.chain} ${op.expr} comment "${op.owner}"`];
    case 'deleteRule':
      return [`delete rule ${t} ${op.chain} handle ${op.handle}`];
    case 'deleteRulesByOwner':
      return rulesByOwner(lookup(op.table), op.owner, op.match).map((r) => `delete rule ${t} ${r.chain} handle ${r.handle}`);
  }
}

/** A list of nftables operations on Shoal's tables, applied all-or-nothing. */
export class NftTransaction {
  private readonly list: NftOp[] = [];

  get ops(): readonly NftOp[] {
    return this.list;
  }

  get isEmpty(): boolean {
    return this.list.length === 0;
  }

  /** Record an operation (validated now, so a bad one fails where it was written). */
  push(op: NftOp): this {
    validate(op);
    this.list.push(op);
    return this;
  }

  addTable(table: NftTableRef): this {
    return this.push({ op: 'addTable', table });
  }
  /** Idempotent: a missing table is not an error. */
  deleteTable(table: NftTableRef): this {
    return this.push({ op: 'deleteTable', table });
  }
  flushTable(table: NftTableRef): this {
    return this.push({ op: 'flushTable', table });
  }
  /** A regular chain without spec, a base chain with one. Existing chains are kept. */
  addChain(table: NftTableRef, chain: string, spec?: BaseChainSpec): this {
    return this.push(spec ? { op: 'addChain', table, chain, spec } : { op: 'addChain', table, chain });
  }
  flushChain(table: NftTableRef, chain: string): this {
    return this.push({ op: 'flushChain', table, chain });
  }
  /** Idempotent; flushes the chain first. Fails while another rule still jumps to it. */
  deleteChain(table: NftTableRef, chain: string): this {
    return this.push({ op: 'deleteChain', table, chain });
  }
  addSet(table: NftTableRef, set: string, spec: SetSpec): this {
    return this.push({ op: 'addSet', table, set, spec });
  }
  addMap(table: NftTableRef, map: string, spec: MapSpec): this {
    return this.push({ op: 'addMap', table, map, spec });
  }
  /** A named counter object (a map of type `... : counter` can point rules at it). */
  addCounter(table: NftTableRef, counter: string): this {
    return this.push({ op: 'addCounter', table, counter });
  }
  deleteCounter(table: NftTableRef, counter: string): this {
    return this.push({ op: 'deleteCounter', table, counter });
  }
  /** Fails when missing (nft 1.0.6 cannot express "if it exists" for sets). */
  deleteSet(table: NftTableRef, set: string, kind: 'set' | 'map' = 'set'): this {
    return this.push({ op: 'deleteSet', table, set, kind });
  }
  /** Set elements ("10.0.0.0/24") or map entries (["10.0.0.2", "accept"]). */
  addElements(table: NftTableRef, set: string, elements: Array<string | [string, string]>): this {
    return this.push({ op: 'addElements', table, set, elements });
  }
  /**
   * Set elements are deleted idempotently (added first). For a map pass the keys and
   * `{ idempotent: false }`: re-adding a key needs its value, so a missing key fails.
   */
  deleteElements(table: NftTableRef, set: string, elements: string[], opts: { idempotent?: boolean } = {}): this {
    return this.push({ op: 'deleteElements', table, set, elements, idempotent: opts.idempotent ?? true });
  }
  /** Append (or with `insert`, prepend) a rule; `owner` becomes its comment. */
  addRule(table: NftTableRef, chain: string, expr: string, owner: string, opts: { insert?: boolean } = {}): this {
    return this.push({ op: 'addRule', table, chain, expr: expr.trim(), owner, insert: opts.insert ?? false });
  }
  deleteRule(table: NftTableRef, chain: string, handle: number): this {
    return this.push({ op: 'deleteRule', table, chain, handle });
  }
  /** Delete every rule whose comment is `owner`; none (or a missing table) is success. */
  deleteRulesByOwner(table: NftTableRef, owner: string, match: OwnerMatch = {}): this {
    return this.push({ op: 'deleteRulesByOwner', table, owner, match });
  }

  /** True when rendering needs the current ruleset (rule handles). */
  get needsLookup(): boolean {
    return this.list.some((o) => o.op === 'deleteRulesByOwner');
  }

  /** The `nft -f -` text. `lookup` supplies current tables for deleteRulesByOwner. */
  render(lookup: TableLookup = () => undefined): string {
    const lines: string[] = [];
    for (const op of this.list) {
      validate(op);
      lines.push(...renderOp(op, lookup));
    }
    return lines.length ? `${lines.join('\n')}\n` : '';
  }
}

/** Reads each table at most once per render. */
function cachedLookup(): TableLookup {
  const cache = new Map<string, NftTableInfo | undefined>();
  return (t) => {
    const key = tableText(t);
    if (!cache.has(key)) cache.set(key, readTable(t));
    return cache.get(key);
  };
}

function run(tx: NftTransaction, check: boolean): string {
  const text = tx.render(tx.needsLookup ? cachedLookup() : undefined);
  if (text === '') return text;
  const res = runNft(check ? ['-c', '-f', '-'] : ['-f', '-'], text);
  if (res.status !== 0) {
    const tables = [...new Set(tx.ops.map((o) => tableText(o.table)))].join(', ');
    throw new NftablesError(`failed to ${check ? 'check' : 'apply'} nftables transaction on "${tables}"`, res.stderr);
  }
  return text;
}

/**
 * Apply the transaction atomically with one `nft -f -`; returns the text applied. When it
 * deletes by owner and fails, it is re-read and retried once: a concurrent DEL of the same
 * owner may have removed a handle between our read and our apply.
 */
export function applyTransaction(tx: NftTransaction): string {
  try {
    return run(tx, false);
  } catch (err) {
    if (!tx.needsLookup) throw err;
    return run(tx, false);
  }
}

/** Dry run (`nft -c`): does the kernel accept it? Changes nothing. */
export function checkTransaction(tx: NftTransaction): string {
  return run(tx, true);
}
