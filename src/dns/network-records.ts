/**
 * One network's records (names, hosts, PTR) and the address -> networks membership, built from
 * endpoints one at a time, so a record change can add or remove exactly the endpoints that
 * changed (snapshot.ts `applyDelta`) instead of building everything again.
 *
 * Every table is a multiset: two endpoints may hold the same name and address (a dnsrr service
 * name on its replicas' addresses, a container registered twice), so an endpoint adds its
 * entries without looking for equal ones and its removal takes away one of each, leaving
 * whatever another endpoint contributed. Readers see duplicates, and answers drop them
 * (records.ts).
 */
import type { IpAddr, IpPrefix } from '../addr.js';
import { normalizeName, parseAddress, parseCidr, reverseName } from './ip.js';
import type { DnsEndpoint, DnsNetworkConfig } from './types.js';

export interface AddressSet {
  v4: Buffer[];
  v6: Buffer[];
}

/** A reverse name's target; a list (sorted) only while several endpoints hold the address (the least answers). */
export type PtrTarget = string | string[];

export interface NetworkRecords {
  readonly name: string;
  readonly domain: string | undefined;
  readonly ttl: number;
  readonly upstreams: readonly string[] | undefined;
  /** Container names and aliases: bare, `name.<network>`, `name.<domain>`. */
  readonly names: ReadonlyMap<string, AddressSet>;
  /** Custom hosts: as given, and `name.<domain>`. */
  readonly hosts: ReadonlyMap<string, AddressSet>;
  /** Reverse name -> target, for container addresses (and hosts in `hostPtr`). */
  readonly ptr: ReadonlyMap<string, PtrTarget>;
  readonly hostPtr: ReadonlyMap<string, PtrTarget>;
  readonly subnets: readonly IpPrefix[];
  /** Name -> address pairs (bare names, aliases and hosts): the `shoal_dns_records` gauge. */
  readonly recordCount: number;
}

/** The same record, as the builder and the delta code see it. */
export interface MutableNetworkRecords extends NetworkRecords {
  readonly names: Map<string, AddressSet>;
  readonly ptr: Map<string, PtrTarget>;
  recordCount: number;
}

/** Address (canonical text) -> the networks it belongs to, one entry per endpoint or gateway. */
export type Members = Map<string, string[]>;

/** The empty address list that sets without an address of a family share (never pushed to). */
const NONE: Buffer[] = [];

/** Where `x` goes in the sorted `list`: after every entry not greater than it. */
function sortedIndex<T>(list: readonly T[], x: T, compare: (a: T, b: T) => number): number {
  // Appending is the common case when a build meets addresses in ascending order.
  if (list.length === 0 || compare(list[list.length - 1] as T, x) <= 0) return list.length;
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compare(list[mid] as T, x) <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const byText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Address bytes in order (4 or 16 of them): in JS, as Buffer.compare's native call cost more. */
function byBytes(a: Buffer, b: Buffer): number {
  if (a.length !== b.length) return a.length - b.length;
  for (let i = 0; i < a.length; i += 1) if (a[i] !== b[i]) return (a[i] as number) - (b[i] as number);
  return 0;
}

/** Answers carry the address bytes: encoded once per address (toBytes), copied into every answer. */
function addAddress(map: Map<string, AddressSet>, name: string, family: 4 | 6, bytes: Buffer): void {
  let set = map.get(name);
  if (!set) {
    set = { v4: NONE, v6: NONE };
    map.set(name, set);
  }
  const list = family === 4 ? set.v4 : set.v6;
  if (list === NONE) {
    if (family === 4) set.v4 = [bytes];
    else set.v6 = [bytes];
  } else {
    list.splice(sortedIndex(list, bytes, byBytes), 0, bytes);
  }
}

function removeAddress(map: Map<string, AddressSet>, name: string, family: 4 | 6, bytes: Buffer): void {
  const set = map.get(name);
  if (!set) return;
  const list = family === 4 ? set.v4 : set.v6;
  const i = list.findIndex((b) => b.equals(bytes));
  if (i < 0) return;
  if (list.length > 1) list.splice(i, 1);
  else if (family === 4) set.v4 = NONE;
  else set.v6 = NONE;
  if (set.v4 === NONE && set.v6 === NONE) map.delete(name);
}

function addPtr(map: Map<string, PtrTarget>, rev: string, target: string): void {
  const t = map.get(rev);
  if (t === undefined) map.set(rev, target);
  else if (typeof t === 'string') map.set(rev, t <= target ? [t, target] : [target, t]);
  else t.splice(sortedIndex(t, target, byText), 0, target);
}

function removePtr(map: Map<string, PtrTarget>, rev: string, target: string): void {
  const t = map.get(rev);
  if (t === target) map.delete(rev);
  else if (Array.isArray(t)) {
    const i = t.indexOf(target);
    if (i >= 0) t.splice(i, 1);
    if (t.length === 1) map.set(rev, t[0] as string);
  }
}

/** The target a PTR query answers with: the least of the endpoints' that hold the address. */
export function ptrTarget(t: PtrTarget | undefined): string | undefined {
  return typeof t === 'string' ? t : t?.[0];
}

export function addMember(members: Members, addr: string, network: string): void {
  const list = members.get(addr);
  if (list) list.push(network);
  else members.set(addr, [network]);
}

function removeMember(members: Members, addr: string, network: string): void {
  const list = members.get(addr);
  const i = list ? list.indexOf(network) : -1;
  if (!list || i < 0) return;
  if (list.length === 1) members.delete(addr);
  else list.splice(i, 1);
}

/** Names a record answers to: bare, `.<network>`, `.<domain>` (all normalized). */
function spellings(name: string, network: string, domain: string | undefined): string[] {
  const bare = normalizeName(name);
  if (!bare) return [];
  const out = [bare, `${bare}.${normalizeName(network)}`];
  if (domain) out.push(`${bare}.${domain}`);
  return out;
}

export function endpointAddresses(e: DnsEndpoint): IpAddr[] {
  const out: IpAddr[] = [];
  for (const a of [...(e.ipv4 ?? []), ...(e.ipv6 ?? [])]) {
    const p = parseAddress(a);
    if (p) out.push(p);
  }
  return out;
}

/** The query names an endpoint's records answer (spellings of its names, its PTR names). */
export function endpointQueryNames(net: NetworkRecords, e: DnsEndpoint): string[] {
  const out = [e.name, ...(e.aliases ?? [])].flatMap((n) => spellings(n, net.name, net.domain));
  for (const a of endpointAddresses(e)) out.push(reverseName(a));
  return out;
}

/**
 * Adds (`sign` 1) or removes (-1) one endpoint's names, PTRs and memberships. Per address, the
 * bytes and reverse name are computed once however many names and spellings share it
 * (100,000 endpoints took ~2 s to build when each spelling re-encoded its addresses).
 */
export function editEndpoint(net: MutableNetworkRecords, members: Members, e: DnsEndpoint, sign: 1 | -1): void {
  const addrs = endpointAddresses(e);
  const bytes = addrs.map((a) => a.toBytes());
  const all = [e.name, ...(e.aliases ?? [])].filter((n) => n && normalizeName(n));
  const edit = sign > 0 ? addAddress : removeAddress;
  for (const n of all) {
    for (const s of spellings(n, net.name, net.domain)) addrs.forEach((a, i) => edit(net.names, s, a.family, bytes[i] as Buffer));
  }
  net.recordCount += sign * all.length * addrs.length;
  const target = `${normalizeName(e.name)}.${net.domain ?? normalizeName(net.name)}`;
  for (const a of addrs) {
    const key = a.toString();
    if (sign > 0) {
      addMember(members, key, net.name);
      addPtr(net.ptr, reverseName(a), target);
    } else {
      removeMember(members, key, net.name);
      removePtr(net.ptr, reverseName(a), target);
    }
  }
}

/** A network's records from its config and endpoints; its gateways and endpoints join `members`. */
export function buildNetwork(cfg: DnsNetworkConfig, endpoints: readonly DnsEndpoint[], localTtl: number, members: Members): MutableNetworkRecords {
  const domain = cfg.domain ? normalizeName(cfg.domain) : undefined;
  const hosts = new Map<string, AddressSet>();
  const hostPtr = new Map<string, PtrTarget>();
  let hostCount = 0;
  for (const [host, list] of Object.entries(cfg.hosts ?? {})) {
    const n = normalizeName(host);
    if (!n) continue;
    const keys = domain && !n.endsWith(`.${domain}`) ? [n, `${n}.${domain}`] : [n];
    for (const raw of list) {
      const a = parseAddress(raw);
      if (!a) continue;
      const bytes = a.toBytes();
      for (const k of keys) addAddress(hosts, k, a.family, bytes);
      if (!hostPtr.has(reverseName(a))) hostPtr.set(reverseName(a), n);
      hostCount += 1;
    }
  }
  for (const g of cfg.gateways ?? []) {
    const a = parseAddress(g);
    if (a) addMember(members, a.toString(), cfg.name);
  }
  const net: MutableNetworkRecords = {
    name: cfg.name,
    domain,
    ttl: cfg.ttl ?? localTtl,
    upstreams: cfg.upstreams && cfg.upstreams.length ? [...cfg.upstreams] : undefined,
    names: new Map(),
    hosts,
    ptr: new Map(),
    hostPtr,
    subnets: (cfg.subnets ?? []).map(parseCidr).filter((c): c is IpPrefix => c !== undefined),
    recordCount: hostCount,
  };
  for (const e of endpoints) editEndpoint(net, members, e, 1);
  return net;
}
