/**
 * Containers of overlay networks, shared through etcd (DESIGN §7). Each daemon publishes its
 * node's endpoints under its node lease, so a node that dies takes them with it within the TTL,
 * and reads every other node's to program VXLAN peers (peers.ts) and answer their names.
 *
 *   endpoints/<network>/<node>/<containerId>/<ifname> -> ClusterEndpoint (JSON)
 *
 * The local truth is the node's store (what the plugins wrote: DNS registrations with the
 * container's MAC and addresses); publishing is a diff of that against what was published, so a
 * store change costs one etcd write per changed endpoint. Writes go through the lease, which
 * remembers them: after a lost lease is granted again, every endpoint is written again.
 */
import type { Lease } from './lease.js';
import { IpPrefix } from '../addr.js';
import type { RegistryEndpoint } from '../dns/registry.js';
import type { RemoteEndpoint } from '../overlay/peers.js';
import type { KeyValue } from '../store/store.js';
import { containerMac } from '../bridge/mac.js';

export const ENDPOINTS_PREFIX = 'endpoints/';

export interface ClusterEndpoint {
  network: string;
  node: string;
  /** The node's underlay address. */
  vtep: string;
  containerId: string;
  ifname: string;
  name: string;
  aliases?: string[];
  ipv4?: string[];
  ipv6?: string[];
  mac: string;
}

const enc = encodeURIComponent;

export function endpointKey(e: Pick<ClusterEndpoint, 'network' | 'node' | 'containerId' | 'ifname'>): string {
  return `${ENDPOINTS_PREFIX}${enc(e.network)}/${enc(e.node)}/${enc(e.containerId)}/${enc(e.ifname)}`;
}

/** The MAC a local endpoint is reached at: recorded by the ADD, else the one derived from its address (bridge/mac.ts). */
function macOf(e: RegistryEndpoint): string | undefined {
  if (e.mac) return e.mac;
  const addrs = [...(e.ipv4 ?? []), ...(e.ipv6 ?? [])].flatMap((t) => IpPrefix.tryParse(t, { bareAddress: true })?.addr ?? []);
  return containerMac(addrs);
}

/** The etcd records of this node's endpoints on `overlays` (key -> value). */
export function localClusterEndpoints(endpoints: readonly RegistryEndpoint[], overlays: ReadonlySet<string>, node: string, vtep: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of endpoints) {
    if (!overlays.has(e.network)) continue;
    const mac = macOf(e);
    if (!mac) continue;
    const record: ClusterEndpoint = { network: e.network, node, vtep, containerId: e.containerId, ifname: e.ifname, name: e.name, mac };
    if (e.aliases?.length) record.aliases = e.aliases;
    if (e.ipv4?.length) record.ipv4 = e.ipv4;
    if (e.ipv6?.length) record.ipv6 = e.ipv6;
    out.set(endpointKey(record), JSON.stringify(record));
  }
  return out;
}

/** One record under endpoints/, or undefined when it does not parse. */
export function parseClusterEndpoint(kv: Pick<KeyValue, 'value'>): ClusterEndpoint | undefined {
  try {
    const e = JSON.parse(kv.value) as ClusterEndpoint;
    if (typeof e.network === 'string' && typeof e.node === 'string' && typeof e.vtep === 'string' && typeof e.mac === 'string' && typeof e.name === 'string') return e;
  } catch {
    // not JSON
  }
  return undefined;
}

/** A remote container as the DNS registry holds one. */
export function asRegistryEndpoint(e: ClusterEndpoint): RegistryEndpoint {
  const r: RegistryEndpoint = { network: e.network, containerId: e.containerId, ifname: e.ifname, name: e.name, mac: e.mac, node: e.node };
  if (e.aliases) r.aliases = e.aliases;
  if (e.ipv4) r.ipv4 = e.ipv4;
  if (e.ipv6) r.ipv6 = e.ipv6;
  return r;
}

/** A remote container's addresses as VXLAN peers (one per address). */
export function asPeers(e: ClusterEndpoint): RemoteEndpoint[] {
  return [...(e.ipv4 ?? []), ...(e.ipv6 ?? [])].map((ip) => ({ vtep: e.vtep, mac: e.mac, ip }));
}

/**
 * Keeps this node's published endpoints equal to the desired set. One pass at a time (a put and
 * a remove of one key never overtake each other); a publish during a pass runs once more after
 * it with the latest set. A failed write is tried again by the next pass; keys the lease
 * remembers are written again by its re-grant anyway.
 */
export class EndpointPublisher {
  private readonly published = new Map<string, string>();
  private desired: ReadonlyMap<string, string> = new Map();
  private running: Promise<void> | undefined;
  private again = false;

  constructor(
    private readonly lease: Lease,
    private readonly onError: (err: Error) => void,
  ) {}

  get count(): number {
    return this.published.size;
  }

  publish(desired: ReadonlyMap<string, string>): Promise<void> {
    this.desired = desired;
    if (this.running) {
      this.again = true;
      return this.running;
    }
    const loop = async (): Promise<void> => {
      do {
        this.again = false;
        await this.pass(this.desired);
      } while (this.again);
    };
    this.running = loop().finally(() => (this.running = undefined));
    return this.running;
  }

  /**
   * Takes what etcd holds for this node as published, so the next pass removes what is no longer
   * wanted: keys of containers deleted while the daemon was down stay under a lease it took over.
   */
  seed(own: ReadonlyArray<{ key: string; value: string }>): void {
    for (const kv of own) if (!this.published.has(kv.key)) this.published.set(kv.key, kv.value);
  }

  /** Forgets what was published, so the next publish writes everything (after a lease re-grant). */
  reset(): void {
    this.published.clear();
  }

  private async pass(desired: ReadonlyMap<string, string>): Promise<void> {
    for (const [key, value] of desired) {
      if (this.published.get(key) === value) continue;
      try {
        await this.lease.put(key, value);
        this.published.set(key, value);
      } catch (err) {
        this.onError(err as Error);
      }
    }
    for (const key of [...this.published.keys()]) {
      if (desired.has(key)) continue;
      try {
        await this.lease.remove(key);
        this.published.delete(key);
      } catch (err) {
        // Forgotten by the lease: a re-grant will not write it, and the old lease goes with its keys.
        if (!this.lease.keys.has(key)) this.published.delete(key);
        this.onError(err as Error);
      }
    }
  }
}
