/**
 * The record snapshot: every network's names, built whole from a record set (aardvark-dns keeps
 * its backend the same way) and then kept current by deltas: `applyDelta` adds and removes the
 * endpoints that changed and forgets the memoized answers of exactly the names they touch, so a
 * change costs what changed, not the size of the record set. Each thread holds its own and
 * answers synchronously between changes, so a query sees the records before a change or after
 * it, never half of it.
 *
 * Scope: a client sees the networks its source address belongs to (one of its endpoint
 * addresses, a gateway, or inside a subnet), and nothing else.
 */
import type { IpAddr } from '../addr.js';
import { parseAddress } from './ip.js';
import { ContainerScopes, type ContainerEndpoints } from './container-scopes.js';
import { buildNetwork, editEndpoint, endpointQueryNames, type Members, type MutableNetworkRecords, type NetworkRecords } from './network-records.js';
import type { DnsEndpoint, DnsNetworkConfig, DnsRecordsInput, HandlerResult } from './types.js';

export type { AddressSet, NetworkRecords } from './network-records.js';

/** Endpoints that left and came since the last record set (records-diff.ts computes it). */
export interface RecordsDelta {
  added: DnsEndpoint[];
  removed: DnsEndpoint[];
  /**
   * Every container with an endpoint in `added` or `removed`, with all its endpoints after the
   * change (its other networks' too): whether it is on several networks, and on which, is a
   * fact about the whole record set that the snapshot does not index by container.
   */
  containers: ContainerEndpoints[];
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
  private readonly editable: Map<string, MutableNetworkRecords>;
  /** Direct memberships: an endpoint's address or a gateway in its network. */
  private readonly memberOf: Members;
  /** Addresses of containers on several networks -> those networks (container-scopes.ts). */
  private readonly shared: ContainerScopes;
  private readonly scopes = new Map<string, Scope>();
  private readonly scopesByKey = new Map<string, Scope>();
  private answerCount = 0;
  private readonly cacheSize: number;
  private readonly doorkeeper: Doorkeeper;

  private constructor(networks: Map<string, MutableNetworkRecords>, members: Members, shared: ContainerScopes, version: number, cacheSize: number) {
    this.networks = networks;
    this.editable = networks;
    this.memberOf = members;
    this.shared = shared;
    this.version = version;
    this.cacheSize = cacheSize;
    this.doorkeeper = new Doorkeeper(cacheSize);
  }

  static empty(): RecordSnapshot {
    return RecordSnapshot.build({ networks: [], endpoints: [] });
  }

  static build(input: DnsRecordsInput, options: SnapshotOptions = {}, version = 0): RecordSnapshot {
    const localTtl = options.localTtl ?? 5;
    const configs = new Map<string, DnsNetworkConfig>();
    for (const n of input.networks) configs.set(n.name, n);
    const byNetwork = new Map<string, DnsEndpoint[]>();
    for (const e of input.endpoints) {
      if (!configs.has(e.network)) configs.set(e.network, { name: e.network });
      const list = byNetwork.get(e.network);
      if (list) list.push(e);
      else byNetwork.set(e.network, [e]);
    }
    const members: Members = new Map();
    const networks = new Map<string, MutableNetworkRecords>();
    for (const cfg of configs.values()) networks.set(cfg.name, buildNetwork(cfg, byNetwork.get(cfg.name) ?? [], localTtl, members));
    return new RecordSnapshot(networks, members, ContainerScopes.build(input.endpoints), version, options.cacheSize ?? 10_000);
  }

  /**
   * Applies a delta in place: removed endpoints first, then added ones, then the memo of every
   * name they answer (A, AAAA, PTR, and NXDOMAIN or "not local" outcomes alike) is dropped in
   * every scope, and the source -> scope cache with it (an endpoint address is a membership,
   * and a container's addresses share its networks' scope). The delta's endpoints must be on
   * networks this snapshot has: records-diff.ts sends a full record set otherwise. Memoized
   * answers stay valid when an address changes scope: they are kept per network set, and a
   * network set's answers change only by the names touched. Returns the query names it touched.
   */
  applyDelta(delta: RecordsDelta): ReadonlySet<string> {
    const touched = new Set<string>();
    for (const [list, sign] of [[delta.removed, -1], [delta.added, 1]] as const) {
      for (const e of list) {
        const net = this.editable.get(e.network);
        if (!net) throw new Error(`record delta: no network "${e.network}"`);
        editEndpoint(net, this.memberOf, e, sign);
        for (const n of endpointQueryNames(net, e)) touched.add(n);
      }
    }
    for (const [id, endpoints] of delta.containers) this.shared.set(id, endpoints);
    for (const scope of this.scopesByKey.values()) {
      for (const byName of scope.answers.values()) {
        for (const n of touched) if (byName.delete(n)) this.answerCount -= 1;
      }
    }
    this.scopes.clear();
    return touched;
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
    const key = addr.toString();
    const names = new Set<string>(this.memberOf.get(key));
    for (const n of this.shared.networksAt(key) ?? []) names.add(n);
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

  /** Outcomes memoized now, over all scopes. */
  get memoSize(): number {
    return this.answerCount;
  }

  /** Memoized local outcome (undefined: not computed yet; null: local handlers passed). */
  cachedAnswer(scope: Scope, type: number, name: string): HandlerResult | null | undefined {
    return scope.answers.get(type)?.get(name);
  }

  /**
   * Memoizes an outcome the second time its question is asked (since the doorkeeper's last
   * reset), not the first. A question asked once, as when clients walk 100,000 names in turn,
   * would only sit in the memo until it is cleared: every young-generation GC copied it, then
   * promoted it, and the old generation grew into major GCs. At 100,000 names that took a
   * worker's scavenges from ~1 ms to 14-19 ms and made them the p99 tail.
   */
  rememberAnswer(scope: Scope, type: number, name: string, result: HandlerResult | null): void {
    if (!this.doorkeeper.admit(type, name)) return;
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

/**
 * Which questions were asked before, as bits by a hash of (type, name): no allocation, nothing
 * kept alive. Reset after `resetAfter` questions seen for the first time, so a name asked twice
 * far apart (walking more names than the memo holds) stays out. A hash collision only admits a
 * question early.
 */
class Doorkeeper {
  private readonly bits = new Uint8Array(1 << 17);
  private seen = 0;

  constructor(private readonly resetAfter: number) {}

  /** True when (type, name) was seen before; marks it seen otherwise. */
  admit(type: number, name: string): boolean {
    let h = 0x811c9dc5 ^ type;
    for (let i = 0; i < name.length; i += 1) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
    const slot = (h >>> 0) & (this.bits.length - 1);
    if (this.bits[slot]) return true;
    this.bits[slot] = 1;
    this.seen += 1;
    if (this.seen >= this.resetAfter) {
      this.bits.fill(0);
      this.seen = 0;
    }
    return false;
  }
}
