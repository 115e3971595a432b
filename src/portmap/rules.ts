/**
 * The nftables layout of shoal-portmap, as transactions (DESIGN §4.4). Per family, in the
 * table Shoal owns for NAT (`ip shoal-nat`, `ip6 shoal-nat`), shared with shoal-bridge's
 * masquerade rules, so every object here is named `portmap-*` and only those are ever flushed:
 *
 *   portmap-prerouting  nat/prerouting  fib daddr type local jump portmap-dnat
 *   portmap-output      nat/output      fib daddr type local [ip6 daddr != ::1] jump portmap-dnat
 *   portmap-dnat        <addr> . l4proto . dport vmap @portmap-hostip
 *                       l4proto . dport vmap @portmap-anyip
 *   portmap-postrouting nat/postrouting ct status dnat <daddr> . l4proto . dport vmap @portmap-masq
 *
 *   map portmap-hostip  <addr> . inet_proto . inet_service : verdict   (hostIP mappings)
 *   map portmap-anyip   inet_proto . inet_service : verdict            (every local address)
 *   map portmap-masq    <container addr> . inet_proto . inet_service : verdict
 *   chain portmap-c-<h> one DNAT rule per mapping, comment = owner     (per attachment)
 *   chain portmap-s-<h> masquerade rules, comment = owner              (per attachment)
 *
 * So a packet costs one fib lookup and at most two map lookups however many ports are
 * published (the kube-proxy nftables model); only the attachment's own chain is linear, in its
 * own mappings. Map elements carry no comment (the kernel layer refuses element comments), but
 * each points at a chain named after the owner, so ownership is still read back from nft alone.
 *
 * The fixed chains are flushed and refilled in every ADD transaction: that makes their creation
 * idempotent and race-free (the kernel serialises transactions) without a lock.
 */
import { SHOAL_NAT4, SHOAL_NAT6, NftTransaction, type NftTableRef } from '../kernel/nftables.js';
import type { NftTableInfo } from '../kernel/nftables-reader.js';
import { canonicalIp, type Attachment, type ContainerAddress, type DnatEntry, type IpFamily, type Protocol } from './config.js';

export const INFRA_OWNER = 'portmap';
export const CHAIN = {
  prerouting: 'portmap-prerouting',
  output: 'portmap-output',
  postrouting: 'portmap-postrouting',
  dnat: 'portmap-dnat',
} as const;
export const MAP = { hostip: 'portmap-hostip', anyip: 'portmap-anyip', masq: 'portmap-masq' } as const;
type MapName = (typeof MAP)[keyof typeof MAP];

export const tableOf = (family: IpFamily): NftTableRef => (family === 4 ? SHOAL_NAT4 : SHOAL_NAT6);
const ipKw = (family: IpFamily) => (family === 4 ? 'ip' : 'ip6');
const addrType = (family: IpFamily) => (family === 4 ? 'ipv4_addr' : 'ipv6_addr');
const hostPort = (family: IpFamily, ip: string, port: number) => (family === 4 ? `${ip}:${port}` : `[${ip}]:${port}`);

/** The shared chains and maps of one family, (re)created with exactly their fixed rules. */
export function addInfra(tx: NftTransaction, family: IpFamily): NftTransaction {
  const t = tableOf(family);
  const ip = ipKw(family);
  const keyed = `${addrType(family)} . inet_proto . inet_service`;
  tx.addTable(t)
    .addMap(t, MAP.hostip, { type: keyed, valueType: 'verdict' })
    .addMap(t, MAP.anyip, { type: 'inet_proto . inet_service', valueType: 'verdict' })
    .addMap(t, MAP.masq, { type: keyed, valueType: 'verdict' })
    .addChain(t, CHAIN.dnat)
    .addChain(t, CHAIN.prerouting, { type: 'nat', hook: 'prerouting', priority: 'dstnat' })
    // nft 1.0.6 knows "dstnat" only for prerouting; -100 is its value.
    .addChain(t, CHAIN.output, { type: 'nat', hook: 'output', priority: -100 })
    .addChain(t, CHAIN.postrouting, { type: 'nat', hook: 'postrouting', priority: 'srcnat' });
  for (const c of Object.values(CHAIN)) tx.flushChain(t, c);
  // ::1 is excluded: a DNAT'ed reply to ::1 arriving on a bridge is dropped by the kernel's
  // strict loopback routing (IPv6 has no route_localnet), so the connection would hang instead
  // of being refused. See README ("IPv6 localhost").
  const outputMatch = family === 4 ? 'fib daddr type local' : 'fib daddr type local ip6 daddr != ::1';
  return tx
    .addRule(t, CHAIN.prerouting, `fib daddr type local jump ${CHAIN.dnat}`, INFRA_OWNER)
    .addRule(t, CHAIN.output, `${outputMatch} jump ${CHAIN.dnat}`, INFRA_OWNER)
    .addRule(t, CHAIN.dnat, `${ip} daddr . meta l4proto . th dport vmap @${MAP.hostip}`, INFRA_OWNER)
    .addRule(t, CHAIN.dnat, `meta l4proto . th dport vmap @${MAP.anyip}`, INFRA_OWNER)
    .addRule(t, CHAIN.postrouting, `ct status dnat ${ip} daddr . meta l4proto . th dport vmap @${MAP.masq}`, INFRA_OWNER);
}

export function portKey(e: Pick<DnatEntry, 'hostIP' | 'protocol' | 'hostPort'>): { map: MapName; key: string } {
  return e.hostIP === undefined
    ? { map: MAP.anyip, key: `${e.protocol} . ${e.hostPort}` }
    : { map: MAP.hostip, key: `${e.hostIP} . ${e.protocol} . ${e.hostPort}` };
}

const masqKey = (e: DnatEntry) => `${e.containerIP} . ${e.protocol} . ${e.containerPort}`;

export interface AddOptions {
  snat: boolean;
  masqAll: boolean;
  addresses: readonly ContainerAddress[];
}

/**
 * The attachment's chains, rules and map elements for one family. Callers first remove what a
 * previous ADD of the same attachment left (removeAttachment), so a repeated ADD converges.
 */
export function addAttachment(tx: NftTransaction, family: IpFamily, a: Attachment, entries: readonly DnatEntry[], o: AddOptions): NftTransaction {
  const mine = entries.filter((e) => e.family === family);
  if (mine.length === 0) return tx;
  const t = tableOf(family);
  const ip = ipKw(family);
  tx.addChain(t, a.dnatChain).flushChain(t, a.dnatChain);
  for (const e of mine) {
    const dst = e.hostIP === undefined ? '' : `${ip} daddr ${e.hostIP} `;
    tx.addRule(t, a.dnatChain, `${dst}${e.protocol} dport ${e.hostPort} dnat to ${hostPort(family, e.containerIP, e.containerPort)}`, a.owner);
  }
  for (const map of [MAP.hostip, MAP.anyip]) {
    const elements = mine.filter((e) => portKey(e).map === map).map((e) => [portKey(e).key, `jump ${a.dnatChain}`] as [string, string]);
    if (elements.length > 0) tx.addElements(t, map, elements);
  }
  const masq = snatRules(family, o);
  if (masq.length > 0) {
    tx.addChain(t, a.snatChain).flushChain(t, a.snatChain);
    for (const rule of masq) tx.addRule(t, a.snatChain, rule, a.owner);
    const keys = [...new Set(mine.map(masqKey))];
    tx.addElements(t, MAP.masq, keys.map((k) => [k, `jump ${a.snatChain}`] as [string, string]));
  }
  return tx;
}

/**
 * Who gets masqueraded on the way to a published port. Only where the reply would otherwise
 * not come back through the host's NAT: sources on the container's own subnet (hairpin, and
 * neighbours reaching it through the gateway answer directly over the bridge) and IPv4
 * loopback (127/8 may not leave the host; route_localnet lets it out, masquerade brings the
 * reply back). `masqAll` masquerades every source.
 */
export function snatRules(family: IpFamily, o: AddOptions): string[] {
  if (o.masqAll) return ['masquerade'];
  if (!o.snat) return [];
  const ip = ipKw(family);
  const rules = family === 4 ? [`${ip} saddr 127.0.0.0/8 masquerade`] : [];
  for (const a of o.addresses) if (a.family === family) rules.push(`${ip} saddr ${a.subnet} masquerade`);
  return rules;
}

// ---- reading back ----------------------------------------------------------------------------

export interface MapElement {
  map: MapName;
  /** The element key in nft syntax ("10.0.0.1 . tcp . 8080"), ready for `delete element`. */
  key: string;
  /** The chain the element jumps to. */
  target: string;
  hostIP?: string;
  protocol: string;
  port: number;
}

function keyParts(raw: unknown): unknown[] {
  if (typeof raw === 'object' && raw !== null && 'concat' in raw) return (raw as { concat: unknown[] }).concat;
  return [raw];
}

function targetOf(raw: unknown): string | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const v = raw as { jump?: { target?: unknown }; goto?: { target?: unknown } };
  const t = v.jump?.target ?? v.goto?.target;
  return typeof t === 'string' ? t : undefined;
}

/** The elements of Shoal's port maps in one table, decoded from `nft -j`. */
export function mapElements(table: NftTableInfo | undefined): MapElement[] {
  const out: MapElement[] = [];
  for (const m of table?.maps ?? []) {
    if (m.name !== MAP.hostip && m.name !== MAP.anyip && m.name !== MAP.masq) continue;
    for (const el of m.elements) {
      if (!Array.isArray(el) || el.length !== 2) continue;
      // An element with a comment or timeout comes wrapped as {"elem": {"val": key, ...}}.
      const rawKey = typeof el[0] === 'object' && el[0] !== null && 'elem' in el[0] ? (el[0] as { elem: { val: unknown } }).elem.val : el[0];
      const parts = keyParts(rawKey).map((p) => String(p));
      const target = targetOf(el[1]);
      if (target === undefined) continue;
      const withAddr = m.name !== MAP.anyip;
      const addr = withAddr ? canonicalIp(parts[0] ?? '') : undefined;
      const [protocol = '', port = '0'] = withAddr ? parts.slice(1) : parts;
      const key = withAddr ? `${addr} . ${protocol} . ${port}` : `${protocol} . ${port}`;
      const element: MapElement = { map: m.name, key, target, protocol, port: Number(port) };
      if (addr !== undefined) element.hostIP = addr;
      out.push(element);
    }
  }
  return out;
}

/** The owner comment on the rules of `chain` (undefined when it has none). */
export function chainOwner(table: NftTableInfo | undefined, chain: string): string | undefined {
  return table?.rules.find((r) => r.chain === chain && r.comment !== undefined)?.comment;
}

/**
 * Removes the attachment's elements, rules and chains from one family table (as read now).
 * Chains in `keep` stay (a repeated ADD flushes and refills them in the same transaction).
 */
export function removeAttachment(tx: NftTransaction, family: IpFamily, a: Attachment, table: NftTableInfo | undefined, keep?: ReadonlySet<string>): NftTransaction {
  if (!table) return tx;
  const t = tableOf(family);
  const targets = new Set([a.dnatChain, a.snatChain]);
  const byMap = new Map<MapName, string[]>();
  for (const el of mapElements(table)) {
    if (!targets.has(el.target)) continue;
    byMap.set(el.map, [...(byMap.get(el.map) ?? []), el.key]);
  }
  // Elements first: a chain that a map element still jumps to cannot be deleted.
  for (const [map, keys] of byMap) tx.deleteElements(t, map, keys, { idempotent: false });
  const chains = new Set(table.chains.map((c) => c.name));
  for (const c of [a.dnatChain, a.snatChain]) if (chains.has(c) && !keep?.has(c)) tx.deleteChain(t, c);
  return tx;
}

/** Ports the attachment publishes in a table (for conntrack cleanup and `shoal port`). */
export function publishedBy(table: NftTableInfo | undefined, a: Attachment): MapElement[] {
  return mapElements(table).filter((e) => e.target === a.dnatChain);
}

export function isProtocol(p: string): p is Protocol {
  return p === 'tcp' || p === 'udp' || p === 'sctp';
}
