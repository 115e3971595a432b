/**
 * The kernel data path as data (DESIGN §4.4, §4.13), after kube-proxy's nftables proxier. Per
 * family, in the table Shoal owns for it (`ip shoal-lb`, `ip6 shoal-lb`):
 *
 *   prerouting   nat/prerouting dstnat     jump services
 *   output       nat/output -100           jump services
 *   services     ip daddr . l4proto . dport vmap @lb-vips
 *                fib daddr type local l4proto . dport vmap @lb-published
 *   svc-<name>-<proto>-<port>     [affinity: ip saddr @aff-<ep> goto ep-..., per replica]
 *                                 numgen inc|random / jhash saddr  mod N vmap { i : goto ep-... }
 *   ep-<name>-<proto>-<port>-<n>  [affinity: update @aff-<ep> { ip saddr }]
 *                                 ip saddr @lb-masq-src mark for masquerade (a replica on
 *                                 another node: always); dnat to replica
 *   postrouting  nat/postrouting srcnat    jump masquerading
 *   masquerading marked packets: clear the mark, jump lb-snat, masquerade
 *   lb-snat      per overlay network: oifname <bridge> snat to this node's own address on it
 *                (src/cluster/lb-endpoint.ts; the gateway is the same on every node)
 *   input        filter/input filter - 1    VIP or published port of a service with no healthy
 *                                           replica: reject (refused at once, never a host socket);
 *                                           DNATed packets: jump lb-bytes-in|out
 *   count-forward, count-output  filter/forward, filter/output: DNATed packets jump
 *                lb-bytes-in (ct direction original) or lb-bytes-out (reply)
 *   lb-bytes-in|out  per protocol: the packet's bytes go
 *                to the counter its connection's original destination names in
 *                lb-bytes-vip-<proto>-<dir> (VIP . port), else lb-bytes-pub-<proto>-<dir>
 *                (published port); other DNATed flows (portmap) match neither
 *
 *   map lb-vips        addr . inet_proto . inet_service : verdict
 *   map lb-published   inet_proto . inet_service : verdict
 *   set lb-masq-src    addresses whose replies would not come back through the host's NAT
 *                      (127.0.0.0/8 and the services' own subnets: hairpin and neighbours)
 *   set lb-no-endpoints            addr . inet_proto . inet_service of VIP ports with no replica
 *   set lb-no-endpoints-published  inet_proto . inet_service of such published ports
 *   set aff-<ep>-<timeout>  (client affinity) client addresses sent to that replica, each kept
 *                      for the timeout after its last new connection (dynamic, timeout), as
 *                      kube-proxy's sessionAffinity ClientIP sets; the timeout is in the name,
 *                      so a changed timeout is a new set (a set's timeout cannot be altered)
 *   counter bytes-<service>-in|out  the kernel path's shoal_lb_bytes_total, read at scrape time
 *
 * A DNATed packet passes exactly one of forward, input and output, so it is counted once.
 *
 * A packet costs two map lookups however many services exist; only a service's own chain is
 * linear (one vmap rule). Only healthy replicas are in a service chain. Updates are diffs of two
 * desired states: new chains added, changed ones flushed and refilled, stale map elements and
 * chains deleted, all in one transaction; nothing else is touched. Flows already DNATed keep
 * their conntrack entry, so an established TCP connection to a replica taken out keeps working
 * (draining); UDP entries to it are flushed by the caller.
 */
import { createHash } from 'node:crypto';
import type { NftTableRef } from '../kernel/nftables.js';
import { NftTransaction } from '../kernel/nftables.js';
import type { LbPolicy, PortProtocol } from './model.js';

export type Family = 4 | 6;

export const LB_TABLE4: NftTableRef = { family: 'ip', name: 'shoal-lb' };
export const LB_TABLE6: NftTableRef = { family: 'ip6', name: 'shoal-lb' };
export const lbTable = (f: Family) => (f === 4 ? LB_TABLE4 : LB_TABLE6);

export const INFRA_OWNER = 'shoal-lb';
export const SNAT_CHAIN = 'lb-snat';
export const VIPS_MAP = 'lb-vips';
export const PUBLISHED_MAP = 'lb-published';
export const MASQ_SET = 'lb-masq-src';
export const NO_ENDPOINTS_SET = 'lb-no-endpoints';
export const NO_ENDPOINTS_PUBLISHED_SET = 'lb-no-endpoints-published';
const DIRECTIONS = [['original', 'in'], ['reply', 'out']] as const;
const PROTOCOLS = ['tcp', 'udp'] as const;
export const bytesCounter = (service: string, direction: 'in' | 'out') => `bytes-${service}-${direction}`;
/** The service and direction a byte counter's name carries (bytesCounter's inverse); undefined for other names. */
export function bytesCounterOf(name: string): { service: string; direction: 'in' | 'out' } | undefined {
  const m = /^bytes-(.+)-(in|out)$/.exec(name);
  return m ? { service: m[1]!, direction: m[2] as 'in' | 'out' } : undefined;
}
const vipBytesMap = (protocol: PortProtocol, direction: 'in' | 'out') => `lb-bytes-vip-${protocol}-${direction}`;
const publishedBytesMap = (protocol: PortProtocol, direction: 'in' | 'out') => `lb-bytes-pub-${protocol}-${direction}`;

/** The packet-mark bit that asks postrouting to masquerade (kube-proxy uses 0x4000 the same way). */
export const MASQ_MARK = '0x00080000';

export const serviceOwner = (name: string) => `service:${name}`;

/** One service port of one family, as the data path needs it. */
export interface LbServicePort {
  service: string;
  protocol: PortProtocol;
  target: number;
  /** Host port (every local address); undefined: VIP only. */
  published?: number;
  vip?: string;
  policy: LbPolicy;
  /** Healthy replica addresses of this family, in a stable order. */
  backends: string[];
  /**
   * Those of `backends` on other nodes: their replies go back over the overlay to the source,
   * so every connection to them is SNATed to this node's own address on the network.
   */
  remote?: string[];
  /** Client affinity timeout in seconds; undefined: none. */
  affinityS?: number;
}

/** Packets to overlay replicas leave through `bridge` with source `address` (this node's). */
export interface LbSnat {
  bridge: string;
  address: string;
}

/** This node's SNAT on one overlay network, by family (a family it holds no address of: none). */
export type LbSnats = { 4?: LbSnat; 6?: LbSnat };

export interface LbDesired {
  family: Family;
  /** Regular chains: name -> rule expressions, each with its owner comment. */
  chains: Map<string, Array<{ expr: string; owner: string }>>;
  vips: Map<string, string>;
  published: Map<string, string>;
  masqSources: Set<string>;
  /** Keys of `vips` / `published` whose service has no healthy replica (rejected). */
  noEndpoints: Set<string>;
  noEndpointsPublished: Set<string>;
  /** Affinity sets: name -> timeout ("10800s"). */
  affinitySets: Map<string, string>;
  /** Byte counters (one per service and direction), and the maps naming them: map -> key -> counter. */
  counters: Set<string>;
  byteMaps: Map<string, Map<string, string>>;
}

const ipKw = (f: Family) => (f === 4 ? 'ip' : 'ip6');
const addrType = (f: Family) => (f === 4 ? 'ipv4_addr' : 'ipv6_addr');
const hostPort = (f: Family, ip: string, port: number) => (f === 4 ? `${ip}:${port}` : `[${ip}]:${port}`);

export const serviceChain = (p: Pick<LbServicePort, 'service' | 'protocol' | 'target'>) => `svc-${p.service}-${p.protocol}-${p.target}`;
/** Short and stable per address (a v6 address has colons, which nft names may not). */
export const endpointChain = (p: Pick<LbServicePort, 'service' | 'protocol' | 'target'>, address: string) =>
  `ep-${p.service}-${p.protocol}-${p.target}-${createHash('sha256').update(address).digest('hex').slice(0, 10)}`;

/** The affinity set of one endpoint chain (the same hash, its timeout appended). */
export const affinitySet = (endpoint: string, timeoutS: number) => `aff-${endpoint.slice(3)}-${timeoutS}`;

function pick(f: Family, policy: LbPolicy, n: number): string {
  // leastconn is refused for the kernel path by the model; rr stands in should one get here.
  if (policy === 'random') return `numgen random mod ${n}`;
  if (policy === 'source-hash') return `jhash ${ipKw(f)} saddr mod ${n} seed 0x5348`;
  return `numgen inc mod ${n}`;
}

/** The desired ruleset of one family (pure). */
export function desiredLb(family: Family, ports: readonly LbServicePort[], masqSources: readonly string[], snat: readonly LbSnat[] = []): LbDesired {
  const d = emptyDesired(family);
  for (const s of masqSources) d.masqSources.add(s);
  if (ports.length > 0) {
    d.masqSources.add(family === 4 ? '127.0.0.0/8' : '::1');
    const rules = [...new Map(snat.map((s) => [s.bridge, s])).values()].sort((a, b) => (a.bridge < b.bridge ? -1 : 1));
    d.chains.set(SNAT_CHAIN, rules.map((s) => ({ expr: `oifname ${JSON.stringify(s.bridge)} snat ${ipKw(family)} to ${s.address}`, owner: INFRA_OWNER })));
  }
  for (const p of ports) {
    const owner = serviceOwner(p.service);
    const svc = serviceChain(p);
    const backends = [...new Set(p.backends)];
    const rules: Array<{ expr: string; owner: string }> = [];
    const affinity = (b: string) => (p.affinityS !== undefined ? affinitySet(endpointChain(p, b), p.affinityS) : undefined);
    if (backends.length > 0) {
      // A client seen recently goes back to its replica (only while that replica is healthy:
      // its set is gone with its chain); a new one is balanced and remembered there.
      for (const b of backends) {
        const set = affinity(b);
        if (set !== undefined) rules.push({ expr: `${ipKw(family)} saddr @${set} goto ${endpointChain(p, b)}`, owner });
      }
      const arms = backends.map((b, i) => `${i} : goto ${endpointChain(p, b)}`).join(', ');
      rules.push({ expr: `${pick(family, p.policy, backends.length)} vmap { ${arms} }`, owner });
    }
    d.chains.set(svc, rules);
    const remote = new Set(p.remote ?? []);
    for (const b of backends) {
      const set = affinity(b);
      const ep: Array<{ expr: string; owner: string }> = [];
      if (set !== undefined) {
        d.affinitySets.set(set, `${p.affinityS}s`);
        ep.push({ expr: `update @${set} { ${ipKw(family)} saddr }`, owner });
      }
      ep.push(
        { expr: `${remote.has(b) ? '' : `${ipKw(family)} saddr @${MASQ_SET} `}meta mark set meta mark or ${MASQ_MARK}`, owner },
        { expr: `meta l4proto ${p.protocol} dnat to ${hostPort(family, b, p.target)}`, owner },
      );
      d.chains.set(endpointChain(p, b), ep);
    }
    const vipKey = `${p.vip} . ${p.protocol} . ${p.target}`;
    const publishedKey = `${p.protocol} . ${p.published}`;
    if (p.vip !== undefined) d.vips.set(vipKey, `goto ${svc}`);
    if (p.published !== undefined) d.published.set(publishedKey, `goto ${svc}`);
    for (const [, dir] of DIRECTIONS) {
      const counter = bytesCounter(p.service, dir);
      d.counters.add(counter);
      if (p.vip !== undefined) byteMap(d, vipBytesMap(p.protocol, dir)).set(`${p.vip} . ${p.target}`, JSON.stringify(counter));
      if (p.published !== undefined) byteMap(d, publishedBytesMap(p.protocol, dir)).set(String(p.published), JSON.stringify(counter));
    }
    if (backends.length === 0) {
      if (p.vip !== undefined) d.noEndpoints.add(vipKey);
      if (p.published !== undefined) d.noEndpointsPublished.add(publishedKey);
    }
  }
  return d;
}

function byteMap(d: LbDesired, name: string): Map<string, string> {
  let m = d.byteMaps.get(name);
  if (!m) d.byteMaps.set(name, (m = new Map()));
  return m;
}

const emptyDesired = (family: Family): LbDesired => ({
  family, chains: new Map(), vips: new Map(), published: new Map(), masqSources: new Set(), noEndpoints: new Set(), noEndpointsPublished: new Set(), affinitySets: new Map(), counters: new Set(), byteMaps: new Map(),
});

export const isEmpty = (d: LbDesired) => d.chains.size === 0 && d.vips.size === 0 && d.published.size === 0;

/** The fixed part of one family's table. */
export function addInfra(tx: NftTransaction, family: Family): NftTransaction {
  const t = lbTable(family);
  const ip = ipKw(family);
  tx.addTable(t)
    .addMap(t, VIPS_MAP, { type: `${addrType(family)} . inet_proto . inet_service`, valueType: 'verdict' })
    .addMap(t, PUBLISHED_MAP, { type: 'inet_proto . inet_service', valueType: 'verdict' })
    .addSet(t, MASQ_SET, { type: addrType(family), flags: ['interval'] })
    .addSet(t, NO_ENDPOINTS_SET, { type: `${addrType(family)} . inet_proto . inet_service` })
    .addSet(t, NO_ENDPOINTS_PUBLISHED_SET, { type: 'inet_proto . inet_service' })
    .addChain(t, 'services')
    .addChain(t, 'masquerading')
    .addChain(t, SNAT_CHAIN)
    .addChain(t, 'prerouting', { type: 'nat', hook: 'prerouting', priority: 'dstnat' })
    // nft 1.0.6 knows "dstnat" only for prerouting; -100 is its value.
    .addChain(t, 'output', { type: 'nat', hook: 'output', priority: -100 })
    .addChain(t, 'postrouting', { type: 'nat', hook: 'postrouting', priority: 'srcnat' })
    .addChain(t, 'input', { type: 'filter', hook: 'input', priority: 'filter - 1' })
    .addChain(t, 'count-forward', { type: 'filter', hook: 'forward', priority: 'filter' })
    .addChain(t, 'count-output', { type: 'filter', hook: 'output', priority: 'filter' })
    .addChain(t, 'lb-bytes-in')
    .addChain(t, 'lb-bytes-out');
  for (const proto of PROTOCOLS) {
    for (const [, dir] of DIRECTIONS) {
      tx.addMap(t, vipBytesMap(proto, dir), { type: `${addrType(family)} . inet_service`, valueType: 'counter' });
      tx.addMap(t, publishedBytesMap(proto, dir), { type: 'inet_service', valueType: 'counter' });
    }
  }
  for (const c of ['services', 'masquerading', SNAT_CHAIN, 'prerouting', 'output', 'postrouting', 'input', 'count-forward', 'count-output', 'lb-bytes-in', 'lb-bytes-out']) tx.flushChain(t, c);
  // One verdict-map lookup per DNATed packet picks its direction's chain; there, TCP first.
  for (const c of ['count-forward', 'count-output', 'input']) tx.addRule(t, c, 'ct status dnat ct direction vmap { original : jump lb-bytes-in, reply : jump lb-bytes-out }', INFRA_OWNER);
  // The protocol in the rule gives `ct original proto-dst` its type (nft cannot concatenate it otherwise).
  for (const [, dir] of DIRECTIONS) {
    for (const proto of PROTOCOLS) {
      const match = `meta l4proto ${proto} counter name`;
      tx.addRule(t, `lb-bytes-${dir}`, `${match} ct original ${ip} daddr . ct original proto-dst map @${vipBytesMap(proto, dir)} return`, INFRA_OWNER);
      tx.addRule(t, `lb-bytes-${dir}`, `${match} ct original proto-dst map @${publishedBytesMap(proto, dir)} return`, INFRA_OWNER);
    }
  }
  // ::1 is left alone: a DNATed reply to ::1 from a bridge is dropped (no route_localnet in v6).
  const local = family === 4 ? 'fib daddr type local' : 'fib daddr type local ip6 daddr != ::1';
  return tx
    .addRule(t, 'prerouting', 'jump services', INFRA_OWNER)
    .addRule(t, 'output', 'jump services', INFRA_OWNER)
    .addRule(t, 'services', `${ip} daddr . meta l4proto . th dport vmap @${VIPS_MAP}`, INFRA_OWNER)
    .addRule(t, 'services', `${local} meta l4proto . th dport vmap @${PUBLISHED_MAP}`, INFRA_OWNER)
    .addRule(t, 'postrouting', 'jump masquerading', INFRA_OWNER)
    .addRule(t, 'masquerading', `meta mark & ${MASQ_MARK} == 0 return`, INFRA_OWNER)
    .addRule(t, 'masquerading', `meta mark set meta mark xor ${MASQ_MARK}`, INFRA_OWNER)
    // An overlay's own SNAT (a terminal verdict) before the generic masquerade.
    .addRule(t, 'masquerading', `jump ${SNAT_CHAIN}`, INFRA_OWNER)
    .addRule(t, 'masquerading', 'masquerade', INFRA_OWNER)
    // Not DNATed because no replica is up: refuse here, so such a connection is refused at once
    // (not left to a timeout, nor handed to a host process on the same port), as kube-proxy does.
    .addRule(t, 'input', `${ip} daddr . meta l4proto . th dport @${NO_ENDPOINTS_SET} reject`, INFRA_OWNER)
    .addRule(t, 'input', `${local} meta l4proto . th dport @${NO_ENDPOINTS_PUBLISHED_SET} reject`, INFRA_OWNER);
}

const sameRules = (a: ReadonlyArray<{ expr: string; owner: string }>, b: ReadonlyArray<{ expr: string; owner: string }>) =>
  a.length === b.length && a.every((r, i) => r.expr === b[i]!.expr && r.owner === b[i]!.owner);

function mapDiff(tx: NftTransaction, t: NftTableRef, map: string, prev: ReadonlyMap<string, string>, next: ReadonlyMap<string, string>): void {
  const gone = [...prev].filter(([k, v]) => next.get(k) !== v).map(([k]) => k);
  if (gone.length) tx.deleteElements(t, map, gone, { idempotent: false });
  const added = [...next].filter(([k, v]) => prev.get(k) !== v);
  if (added.length) tx.addElements(t, map, added);
}

function setDiff(tx: NftTransaction, t: NftTableRef, set: string, prev: ReadonlySet<string>, next: ReadonlySet<string>): void {
  const gone = [...prev].filter((k) => !next.has(k));
  const added = [...next].filter((k) => !prev.has(k));
  if (gone.length) tx.deleteElements(t, set, gone);
  if (added.length) tx.addElements(t, set, added);
}

/**
 * The transaction that takes the kernel from `prev` (what was applied; undefined: no table) to
 * `next`. Empty when nothing changed. With no service left the table goes.
 */
export function diffLb(prev: LbDesired | undefined, next: LbDesired): NftTransaction {
  const tx = new NftTransaction();
  const t = lbTable(next.family);
  if (isEmpty(next)) {
    // Only when there is a table to remove: a sync with no service must not run nft at all.
    if (prev !== undefined && !isEmpty(prev)) tx.deleteTable(t);
    return tx;
  }
  // After an empty state there is no table (it was deleted, or never made): start from nothing.
  // Diffing against the empty state instead sent rules into a table that did not exist, so the
  // first service after a sync without any failed to apply once (seen in 819's daemon logs).
  const fromNothing = prev === undefined || isEmpty(prev);
  const base: LbDesired = fromNothing ? emptyDesired(next.family) : prev;
  if (fromNothing) addInfra(tx, next.family);
  // Counters before the map elements naming them; stale ones after those elements are gone.
  for (const c of next.counters) if (!base.counters.has(c)) tx.addCounter(t, c);
  for (const name of new Set([...base.byteMaps.keys(), ...next.byteMaps.keys()])) mapDiff(tx, t, name, base.byteMaps.get(name) ?? new Map(), next.byteMaps.get(name) ?? new Map());
  // Affinity sets before the rules that use them; stale ones after the rules that used them.
  for (const [name, timeout] of next.affinitySets) {
    if (!base.affinitySets.has(name)) tx.addSet(t, name, { type: addrType(next.family), flags: ['dynamic', 'timeout'], timeout });
  }
  // Chains first (so map elements and vmaps can point at them), endpoint chains before the
  // service chains that jump to them.
  const order = [...next.chains.keys()].sort((a, b) => Number(a.startsWith('svc-')) - Number(b.startsWith('svc-')));
  for (const name of order) {
    const rules = next.chains.get(name)!;
    const before = base.chains.get(name);
    if (before && sameRules(before, rules)) continue;
    if (!before) tx.addChain(t, name);
    else tx.flushChain(t, name);
    for (const r of rules) tx.addRule(t, name, r.expr, r.owner);
  }
  const goneSrc = [...base.masqSources].filter((s) => !next.masqSources.has(s));
  const newSrc = [...next.masqSources].filter((s) => !base.masqSources.has(s));
  if (newSrc.length) tx.addElements(t, MASQ_SET, newSrc);
  mapDiff(tx, t, VIPS_MAP, base.vips, next.vips);
  mapDiff(tx, t, PUBLISHED_MAP, base.published, next.published);
  // Stale chains last, service chains (which jump to endpoint chains) before endpoint chains.
  const stale = [...base.chains.keys()].filter((c) => !next.chains.has(c)).sort((a, b) => Number(b.startsWith('svc-')) - Number(a.startsWith('svc-')));
  for (const c of stale) tx.deleteChain(t, c);
  if (goneSrc.length) tx.deleteElements(t, MASQ_SET, goneSrc);
  setDiff(tx, t, NO_ENDPOINTS_SET, base.noEndpoints, next.noEndpoints);
  setDiff(tx, t, NO_ENDPOINTS_PUBLISHED_SET, base.noEndpointsPublished, next.noEndpointsPublished);
  for (const name of base.affinitySets.keys()) if (!next.affinitySets.has(name)) tx.deleteSet(t, name);
  for (const c of base.counters) if (!next.counters.has(c)) tx.deleteCounter(t, c);
  return tx;
}
