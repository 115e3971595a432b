/**
 * The record snapshot: an immutable view of every network's names, built once per change and
 * swapped atomically (aardvark-dns keeps its backend the same way). Queries in flight keep the
 * snapshot they started with; the next query sees the new one.
 *
 * Scope: a client sees the networks its source address belongs to (one of its endpoint
 * addresses, a gateway, or inside a subnet), and nothing else.
 */
import type { IpAddr, IpPrefix } from '../addr.js';
import { normalizeName, parseAddress, parseCidr, reverseName } from './ip.js';
import type { DnsEndpoint, DnsNetworkConfig, DnsRecordsInput, HandlerResult } from './types.js';

export interface AddressSet {
  v4: Buffer[];
  v6: Buffer[];
}

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
  readonly ptr: ReadonlyMap<string, string>;
  readonly hostPtr: ReadonlyMap<string, string>;
  readonly subnets: readonly IpPrefix[];
  /** Name -> address pairs (bare names, aliases and hosts): the `shoal_dns_records` gauge. */
  readonly recordCount: number;
}

export interface Scope {
  /** Stable key of the network set (sorted names joined). */
  readonly key: string;
  readonly networks: readonly NetworkRecords[];
  /** Memo of local outcomes for this snapshot and network set: qtype -> name -> result. */
  readonly answers: Map<number, Map<string, HandlerResult | null>>;
}

export interface SnapshotOptions {
  /** Default TTL of local answers, seconds. */
  localTtl?: number;
  /** Bound on the per-snapshot caches (source -> scope, encoded answers). */
  cacheSize?: number;
}


export class RecordSnapshot {
  readonly networks: ReadonlyMap<string, NetworkRecords>;
  readonly version: number;
  private readonly memberOf: Members;
  private readonly scopes = new Map<string, Scope>();
  private readonly scopesByKey = new Map<string, Scope>();
  private answerCount = 0;
  private readonly cacheSize: number;

  private constructor(networks: Map<string, NetworkRecords>, members: Members, version: number, cacheSize: number) {
    this.networks = networks;
    this.memberOf = members;
    this.version = version;
    this.cacheSize = cacheSize;
  }

  static empty(): RecordSnapshot {
    return RecordSnapshot.build({ networks: [], endpoints: [] });
  }

  static build(input: DnsRecordsInput, options: SnapshotOptions = {}, version = 0): RecordSnapshot {
    const localTtl = options.localTtl ?? 5;
    const configs = new Map<string, DnsNetworkConfig>();
    for (const n of input.networks) configs.set(n.name, n);
    for (const e of input.endpoints) if (!configs.has(e.network)) configs.set(e.network, { name: e.network });
    const members: Members = new Map();
    const networks = new Map<string, NetworkRecords>();
    for (const cfg of configs.values()) {
      const eps = input.endpoints.filter((e) => e.network === cfg.name);
      networks.set(cfg.name, buildNetwork(cfg, eps, localTtl, members));
    }
    shareContainerScopes(input.endpoints, members);
    return new RecordSnapshot(networks, members, version, options.cacheSize ?? 10_000);
  }

  /** The networks a client at `source` may see. Cached per source address. */
  scopeFor(source: string): Scope {
    const cached = this.scopes.get(source);
    if (cached) return cached;
    const addr = parseAddress(source);
    const scope = this.scopeOf(addr ? this.networksOf(addr) : []);
    if (this.scopes.size >= this.cacheSize) this.scopes.clear();
    this.scopes.set(source, scope);
    return scope;
  }

  private networksOf(addr: IpAddr): string[] {
    const names = new Set<string>(this.memberOf.get(addr.toString()) ?? []);
    for (const net of this.networks.values()) {
      if (net.subnets.some((c) => c.contains(addr))) names.add(net.name);
    }
    return [...names].sort();
  }

  /** One Scope object per network set, so every client of the same networks shares its memo. */
  private scopeOf(sorted: string[]): Scope {
    const key = sorted.join('\0');
    let scope = this.scopesByKey.get(key);
    if (!scope) {
      scope = { key, networks: sorted.map((n) => this.networks.get(n) as NetworkRecords), answers: new Map() };
      this.scopesByKey.set(key, scope);
    }
    return scope;
  }

  /** Memoized local outcome (undefined: not computed yet; null: local handlers passed). */
  cachedAnswer(scope: Scope, type: number, name: string): HandlerResult | null | undefined {
    return scope.answers.get(type)?.get(name);
  }

  rememberAnswer(scope: Scope, type: number, name: string, result: HandlerResult | null): void {
    if (this.answerCount >= this.cacheSize) {
      for (const s of this.scopesByKey.values()) s.answers.clear();
      this.answerCount = 0;
    }
    let byName = scope.answers.get(type);
    if (!byName) scope.answers.set(type, (byName = new Map()));
    byName.set(name, result);
    this.answerCount += 1;
  }
}

/** Address (canonical text) -> the networks it belongs to. Arrays, not Sets: one per address adds up. */
type Members = Map<string, string[]>;

/** The empty address list that sets without an address of a family share (never pushed to). */
const NONE: Buffer[] = [];

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
  } else if (!list.some((b) => b.equals(bytes))) {
    list.push(bytes);
  }
}

/** Names a record answers to: bare, `.<network>`, `.<domain>` (all normalized). */
function spellings(name: string, network: string, domain: string | undefined): string[] {
  const bare = normalizeName(name);
  if (!bare) return [];
  const out = [bare, `${bare}.${normalizeName(network)}`];
  if (domain) out.push(`${bare}.${domain}`);
  return out;
}

function endpointAddresses(e: DnsEndpoint): IpAddr[] {
  const out: IpAddr[] = [];
  for (const a of [...(e.ipv4 ?? []), ...(e.ipv6 ?? [])]) {
    const p = parseAddress(a);
    if (p) out.push(p);
  }
  return out;
}

/**
 * A container attached to several networks resolves names on all of them from any of its
 * addresses, as with docker's embedded DNS: its resolv.conf names one network's gateway (the
 * first it was attached to), and `network connect` adds a network without rewriting it.
 */
function shareContainerScopes(endpoints: DnsEndpoint[], members: Members): void {
  // Most containers are on one network: find the few on several before grouping anything.
  const firstNetwork = new Map<string, string>();
  const several = new Set<string>();
  for (const e of endpoints) {
    const first = firstNetwork.get(e.containerId);
    if (first === undefined) firstNetwork.set(e.containerId, e.network);
    else if (first !== e.network) several.add(e.containerId);
  }
  const byContainer = new Map<string, DnsEndpoint[]>();
  for (const e of endpoints) {
    if (!several.has(e.containerId)) continue;
    const mine = byContainer.get(e.containerId);
    if (mine) mine.push(e);
    else byContainer.set(e.containerId, [e]);
  }
  for (const eps of byContainer.values()) {
    const keys = eps.flatMap((e) => endpointAddresses(e)).map((a) => a.toString());
    const union = [...new Set(keys.flatMap((k) => members.get(k) ?? []))];
    for (const k of keys) members.set(k, [...union]);
  }
}

function buildNetwork(cfg: DnsNetworkConfig, endpoints: DnsEndpoint[], localTtl: number, members: Members): NetworkRecords {
  const domain = cfg.domain ? normalizeName(cfg.domain) : undefined;
  const names = new Map<string, AddressSet>();
  const hosts = new Map<string, AddressSet>();
  const ptr = new Map<string, string>();
  const hostPtr = new Map<string, string>();
  let recordCount = 0;
  const member = (addr: IpAddr): void => {
    const key = addr.toString();
    const list = members.get(key);
    if (!list) members.set(key, [cfg.name]);
    else if (!list.includes(cfg.name)) list.push(cfg.name);
  };
  // Per address, computed once however many names and spellings share it (100,000 endpoints
  // took ~2 s to build when each spelling re-encoded its addresses).
  for (const e of endpoints) {
    const addrs = endpointAddresses(e);
    const bytes = addrs.map((a) => a.toBytes());
    const all = [e.name, ...(e.aliases ?? [])].filter((n) => n && normalizeName(n));
    for (const n of all) {
      for (const s of spellings(n, cfg.name, domain)) addrs.forEach((a, i) => addAddress(names, s, a.family, bytes[i] as Buffer));
    }
    recordCount += all.length * addrs.length;
    const target = `${normalizeName(e.name)}.${domain ?? normalizeName(cfg.name)}`;
    for (const a of addrs) {
      member(a);
      const rev = reverseName(a);
      if (!ptr.has(rev)) ptr.set(rev, target);
    }
  }
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
      recordCount += 1;
    }
  }
  for (const g of cfg.gateways ?? []) {
    const a = parseAddress(g);
    if (a) member(a);
  }
  const subnets = (cfg.subnets ?? []).map(parseCidr).filter((c): c is IpPrefix => c !== undefined);
  return {
    name: cfg.name,
    domain,
    ttl: cfg.ttl ?? localTtl,
    upstreams: cfg.upstreams && cfg.upstreams.length ? [...cfg.upstreams] : undefined,
    names,
    hosts,
    ptr,
    hostPtr,
    subnets,
    recordCount,
  };
}
