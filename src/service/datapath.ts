/**
 * The kernel data path, applied: desired state (nft-rules.ts) diffed against what this daemon
 * applied last, VIP addresses on bridges (vip.ts), and the UDP conntrack entries of replicas
 * that left a service. A daemon starts from a clean slate (its tables are deleted and rebuilt
 * on the first apply), and a failed apply marks the family dirty so the next one rebuilds it.
 */
import type { Logger } from 'pino';
import { deleteConntrack, IPPROTO, type ConntrackFilter } from '../kernel/conntrack.js';
import { applyTransaction, NftTransaction } from '../kernel/nftables.js';
import type { NetworkRecord } from '../network/model.js';
import { DRAIN_TIMEOUT_DEFAULT_MS, drainTimeoutOf, type ServiceRecord } from './model.js';
import { desiredLb, diffLb, lbTable, serviceChain, type Family, type LbDesired, type LbServicePort, type LbSnats } from './nft-rules.js';
import type { Replica } from './replicas.js';
import { enableRouteLocalnet, ensureVipAddresses, removeVipAddresses } from './vip.js';

export interface ServiceState {
  record: ServiceRecord;
  network: NetworkRecord | undefined;
  healthy: readonly Replica[];
  /** On an overlay: this node's own addresses there, by family, the source for replicas on other nodes. */
  snat?: LbSnats;
}

const familyOf = (a: string): Family => (a.includes(':') ? 6 : 4);
const addressOf = (r: Replica, f: Family) => (f === 4 ? r.ipv4 : r.ipv6);

/** The service ports of one family the kernel path balances (pure). */
export function kernelPorts(family: Family, services: readonly ServiceState[]): LbServicePort[] {
  const out: LbServicePort[] = [];
  for (const s of services) {
    if (s.record.lbMode !== 'kernel') continue;
    // A replica on another node is reachable only with this node's own overlay address of the
    // family as the source (lb-endpoint.ts).
    const reachable = s.healthy.filter((r) => r.local || s.snat?.[family] !== undefined);
    const addresses = (rs: readonly Replica[]) => rs.map((r) => addressOf(r, family)).filter((a): a is string => a !== undefined);
    const all = addresses(reachable);
    const local = addresses(reachable.filter((r) => r.local));
    const remote = addresses(reachable.filter((r) => !r.local));
    const vip = s.record.endpointMode === 'vip' ? s.record.vips.find((v) => familyOf(v) === family) : undefined;
    for (const p of s.record.ports) {
      // mode=host publishes only where a replica runs, to the local replicas (its VIP port,
      // which shares the chain, too); ingress (the routing mesh) answers on every node, to any
      // replica.
      const host = p.mode === 'host';
      const backends = host ? local : all;
      const port: LbServicePort = { service: s.record.name, protocol: p.protocol, target: p.target, policy: s.record.lbPolicy, backends };
      if (!host && remote.length > 0) port.remote = remote;
      if (vip !== undefined) port.vip = vip;
      if (s.record.affinity) port.affinityS = s.record.affinity.timeoutS;
      if (!host || backends.length > 0) port.published = p.published;
      if (port.vip !== undefined || port.published !== undefined) out.push(port);
    }
  }
  return out;
}

function masqSources(family: Family, services: readonly ServiceState[]): string[] {
  const out = new Set<string>();
  for (const s of services) {
    if (s.record.lbMode !== 'kernel' || s.record.ports.length === 0) continue;
    for (const sub of s.network?.subnets ?? []) if (familyOf(sub.subnet) === family) out.add(sub.subnet);
  }
  return [...out];
}

/** The conntrack filters of flows DNATed to backend `b` of port `p` (on the VIP and the published port). */
export function flowsTo(family: Family, p: LbServicePort, b: string): ConntrackFilter[] {
  const proto = IPPROTO[p.protocol];
  const filters: ConntrackFilter[] = [];
  if (p.vip !== undefined) filters.push({ family, proto, origDst: p.vip, origDstPort: p.target, replySrc: b });
  if (p.published !== undefined) filters.push({ family, proto, origDstPort: p.published, replySrc: b });
  return filters;
}

/** Backends of `protocol` ports in `prev` that are not in the same port of `next`. */
export function leftBackends(protocol: 'tcp' | 'udp', prev: readonly LbServicePort[], next: readonly LbServicePort[]): Array<{ port: LbServicePort; backend: string }> {
  const now = new Map(next.map((p) => [serviceChain(p), p]));
  const out: Array<{ port: LbServicePort; backend: string }> = [];
  for (const p of prev) {
    if (p.protocol !== protocol) continue;
    const kept = new Set(now.get(serviceChain(p))?.backends ?? []);
    for (const backend of p.backends) if (!kept.has(backend)) out.push({ port: p, backend });
  }
  return out;
}

/** UDP flows tracked to a backend that left a port: they would keep going to it (moby#36878). */
export function staleUdpFilters(family: Family, prev: readonly LbServicePort[], next: readonly LbServicePort[]): ConntrackFilter[] {
  return leftBackends('udp', prev, next).flatMap(({ port, backend }) => flowsTo(family, port, backend));
}

/** A TCP backend out of rotation whose established connections end when `timer` fires. */
interface Drain {
  timer: NodeJS.Timeout;
  family: Family;
  chain: string;
  backend: string;
}

export class KernelDataPath {
  private readonly applied = new Map<Family, { desired: LbDesired; ports: LbServicePort[] }>();
  private readonly dirty = new Set<Family>([4, 6]);
  /** service -> where its VIPs were put. */
  private readonly placed = new Map<string, { bridge: string; vips: string[] }>();
  /** "family|chain|backend" -> its pending drain timeout. */
  private readonly drains = new Map<string, Drain>();

  constructor(private readonly logger?: Logger) {}

  apply(services: readonly ServiceState[]): void {
    this.placeVips(services);
    for (const family of [4, 6] as const) {
      const ports = kernelPorts(family, services);
      const snat = services.flatMap((s) => {
        const own = s.snat?.[family];
        return s.record.lbMode === 'kernel' && own ? [own] : [];
      });
      const next = desiredLb(family, ports, masqSources(family, services), snat);
      const prev = this.applied.get(family);
      let tx = diffLb(this.dirty.has(family) ? undefined : prev?.desired, next);
      if (this.dirty.has(family)) {
        // Clean slate: whatever a previous daemon (or a failed apply) left goes first.
        const fresh = new NftTransaction().deleteTable(lbTable(family));
        for (const op of tx.ops) fresh.push(op);
        tx = fresh;
      }
      if (!tx.isEmpty) {
        try {
          applyTransaction(tx);
        } catch (err) {
          this.dirty.add(family);
          this.applied.delete(family);
          throw err;
        }
      }
      this.dirty.delete(family);
      this.applied.set(family, { desired: next, ports });
      const filters = staleUdpFilters(family, prev?.ports ?? [], ports);
      if (filters.length > 0) {
        const n = deleteConntrack(filters);
        if (n > 0) this.logger?.info({ event: 'lb_conntrack_flushed', family, entries: n }, 'flushed UDP flows to removed backends');
      }
      this.scheduleDrains(family, prev?.ports ?? [], ports, services);
    }
  }

  /**
   * TCP connections to a backend that left a port keep their conntrack DNAT (they drain) until
   * the service's drain timeout; then their entries are deleted, so the connection's next packet
   * is balanced as new and the backend it lands on answers with a reset. A backend back in
   * rotation before then keeps its connections.
   */
  private scheduleDrains(family: Family, prev: readonly LbServicePort[], ports: readonly LbServicePort[], services: readonly ServiceState[]): void {
    const now = new Map(ports.map((p) => [serviceChain(p), p]));
    for (const [key, d] of this.drains) {
      if (d.family === family && now.get(d.chain)?.backends.includes(d.backend)) {
        clearTimeout(d.timer);
        this.drains.delete(key);
      }
    }
    const drainMs = new Map(services.map((s) => [s.record.name, drainTimeoutOf(s.record)]));
    for (const { port, backend } of leftBackends('tcp', prev, ports)) {
      const chain = serviceChain(port);
      const key = `${family}|${chain}|${backend}`;
      if (this.drains.has(key)) continue;
      const filters = flowsTo(family, port, backend);
      const timer = setTimeout(() => {
        this.drains.delete(key);
        try {
          const n = deleteConntrack(filters);
          if (n > 0) this.logger?.info({ event: 'lb_drain_timeout', service: port.service, backend, family, entries: n }, `ended ${n} connection(s) to ${backend} of service "${port.service}" after the drain timeout`);
        } catch (err) {
          this.logger?.warn({ event: 'lb_drain_failed', service: port.service, backend, err }, `failed to end connections to ${backend}: ${(err as Error).message}`);
        }
      }, drainMs.get(port.service) ?? DRAIN_TIMEOUT_DEFAULT_MS);
      // A pending drain does not keep a stopping daemon alive.
      timer.unref();
      this.drains.set(key, { timer, family, chain, backend });
    }
  }

  private placeVips(services: readonly ServiceState[]): void {
    const wanted = new Map<string, { bridge: string; vips: string[] }>();
    for (const s of services) {
      const bridge = s.network?.bridge;
      if (!bridge) continue;
      if (s.record.vips.length > 0) wanted.set(s.record.name, { bridge, vips: s.record.vips });
      if (s.record.lbMode === 'kernel' && s.record.ports.length > 0) {
        try {
          enableRouteLocalnet(bridge);
        } catch {
          // no bridge yet: the next sync after the first ADD sets it
        }
      }
    }
    for (const [name, was] of this.placed) {
      const now = wanted.get(name);
      if (now && now.bridge === was.bridge && now.vips.join() === was.vips.join()) continue;
      removeVipAddresses(was.bridge, was.vips);
      this.placed.delete(name);
    }
    for (const [name, w] of wanted) {
      // Re-checked every sync: a bridge deleted and made again comes back without them.
      if (ensureVipAddresses(w.bridge, w.vips)) this.placed.set(name, w);
    }
  }

  /** Families whose table holds byte counters now (kernel-bytes.ts reads only those). */
  countedFamilies(): Family[] {
    return [...this.applied].filter(([, a]) => a.desired.counters.size > 0).map(([f]) => f);
  }

  /** Stop: the tables and VIP addresses go (a stopped daemon balances nothing). */
  close(): void {
    for (const d of this.drains.values()) clearTimeout(d.timer);
    this.drains.clear();
    const tx = new NftTransaction().deleteTable(lbTable(4)).deleteTable(lbTable(6));
    applyTransaction(tx);
    for (const w of this.placed.values()) removeVipAddresses(w.bridge, w.vips);
    this.placed.clear();
    this.applied.clear();
  }
}
