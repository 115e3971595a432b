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
import type { ServiceRecord } from './model.js';
import { desiredLb, diffLb, lbTable, serviceChain, type Family, type LbDesired, type LbServicePort, type LbSnat } from './nft-rules.js';
import type { Replica } from './replicas.js';
import { enableRouteLocalnet, ensureVipAddresses, removeVipAddresses } from './vip.js';

export interface ServiceState {
  record: ServiceRecord;
  network: NetworkRecord | undefined;
  healthy: readonly Replica[];
  /** On an overlay: this node's own address there (IPv4), the source for replicas on other nodes. */
  snat?: LbSnat;
}

const familyOf = (a: string): Family => (a.includes(':') ? 6 : 4);
const addressOf = (r: Replica, f: Family) => (f === 4 ? r.ipv4 : r.ipv6);

/** The service ports of one family the kernel path balances (pure). */
export function kernelPorts(family: Family, services: readonly ServiceState[]): LbServicePort[] {
  const out: LbServicePort[] = [];
  for (const s of services) {
    if (s.record.lbMode !== 'kernel') continue;
    // A replica on another node is reachable only with this node's own overlay address as the
    // source (lb-endpoint.ts); there is one for IPv4 only.
    const reachable = s.healthy.filter((r) => r.local || (family === 4 && s.snat !== undefined));
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

/** UDP flows tracked to a backend that left a port: they would keep going to it (moby#36878). */
export function staleUdpFilters(family: Family, prev: readonly LbServicePort[], next: readonly LbServicePort[]): ConntrackFilter[] {
  const now = new Map(next.map((p) => [serviceChain(p), p]));
  const filters: ConntrackFilter[] = [];
  for (const p of prev) {
    if (p.protocol !== 'udp') continue;
    const kept = new Set(now.get(serviceChain(p))?.backends ?? []);
    for (const b of p.backends) {
      if (kept.has(b)) continue;
      if (p.vip !== undefined) filters.push({ family, proto: IPPROTO.udp, origDst: p.vip, origDstPort: p.target, replySrc: b });
      if (p.published !== undefined) filters.push({ family, proto: IPPROTO.udp, origDstPort: p.published, replySrc: b });
    }
  }
  return filters;
}

export class KernelDataPath {
  private readonly applied = new Map<Family, { desired: LbDesired; ports: LbServicePort[] }>();
  private readonly dirty = new Set<Family>([4, 6]);
  /** service -> where its VIPs were put. */
  private readonly placed = new Map<string, { bridge: string; vips: string[] }>();

  constructor(private readonly logger?: Logger) {}

  apply(services: readonly ServiceState[]): void {
    this.placeVips(services);
    for (const family of [4, 6] as const) {
      const ports = kernelPorts(family, services);
      const snat = family === 4 ? services.flatMap((s) => (s.record.lbMode === 'kernel' && s.snat ? [s.snat] : [])) : [];
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

  /** Stop: the tables and VIP addresses go (a stopped daemon balances nothing). */
  close(): void {
    const tx = new NftTransaction().deleteTable(lbTable(4)).deleteTable(lbTable(6));
    applyTransaction(tx);
    for (const w of this.placed.values()) removeVipAddresses(w.bridge, w.vips);
    this.placed.clear();
    this.applied.clear();
  }
}
