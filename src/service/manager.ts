/**
 * The daemon's service engine, composed: on every sync it reads the service records and the
 * DNS registry (the replicas), keeps one health check per replica, applies the data paths to
 * the healthy ones, and returns the DNS record input with the service names in it. A health
 * change asks the daemon for another sync, so DNS, kernel rules and proxies all follow the same
 * one path from store + health to effect.
 */
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { RegistryContents } from '../dns/registry.js';
import type { DnsRecordsInput } from '../dns/types.js';
import { getNetwork, type NetworkRecord } from '../network/model.js';
import type { Store } from '../store/store.js';
import { KernelDataPath, type ServiceState } from './datapath.js';
import type { LbSnats } from './nft-rules.js';
import { withServiceRecords } from './dns.js';
import { buildSrvTable } from './dns-srv.js';
import { HealthChecker, type HealthStatus, type HealthTarget, type Probe } from './health.js';
import { ServiceMetrics } from './metrics.js';
import { KernelByteCounters } from './kernel-bytes.js';
import type { ServiceRecord } from './model.js';
import { ProxyDataPath } from './proxy.js';
import { replicasOf, type Replica } from './replicas.js';
import { listServices } from './store.js';

export interface ReplicaView extends Replica {
  health: HealthStatus;
}

export interface ServiceView extends ServiceRecord {
  replicas: ReplicaView[];
}

export interface ServiceManagerOptions {
  store: Store;
  logger: Logger;
  registry?: Registry;
  /** Called when a replica's health changes: the daemon syncs again. */
  onChange: () => void;
  node?: string;
  /** In a cluster: the services of overlay networks (from etcd) and this node's SNAT address on each. */
  cluster?: ClusterServices;
  /** Test seam. */
  probe?: Probe;
}

export interface ClusterServices {
  services(): readonly ServiceRecord[];
  snat(network: string): LbSnats | undefined;
}

const healthKey = (service: string, r: Replica) => `${service}/${r.id}`;

export class ServiceManager {
  private readonly health: HealthChecker;
  private readonly kernel: KernelDataPath;
  private readonly proxy: ProxyDataPath;
  private readonly metrics: ServiceMetrics | undefined;
  private views: ServiceView[] = [];
  private readonly unregisterKernelBytes: (() => void) | undefined;

  constructor(private readonly opts: ServiceManagerOptions) {
    this.metrics = opts.registry ? new ServiceMetrics(opts.registry) : undefined;
    this.health = new HealthChecker(
      {
        onChange: (t, from, to) => {
          opts.logger.info({ event: 'service_backend_health', service: t.service, backend: t.backend, from, to }, `backend ${t.backend} of service "${t.service}" is ${to}`);
          opts.onChange();
        },
        onResult: (t, ok) => this.metrics?.healthChecks.inc({ service: t.service, backend: t.backend, result: ok ? 'success' : 'failure' }),
      },
      opts.probe,
    );
    this.kernel = new KernelDataPath(opts.logger);
    this.proxy = new ProxyDataPath(opts.logger, this.metrics);
    if (this.metrics) {
      const counters = new KernelByteCounters(this.metrics.bytes);
      this.unregisterKernelBytes = this.metrics.addByteSource(() => {
        try {
          counters.flush(this.kernel.countedFamilies());
        } catch (err) {
          // A scrape must not fail for it; the bytes are read again at the next one.
          opts.logger.warn({ event: 'lb_counters_unreadable', err }, `failed to read the kernel path's byte counters: ${(err as Error).message}`);
        }
      });
    }
  }

  /** Services with their replicas and health, as of the last sync (the API's answer). */
  list(): ServiceView[] {
    return this.views;
  }

  async sync(contents: RegistryContents): Promise<DnsRecordsInput> {
    const records = await this.records();
    const networks = new Map<string, NetworkRecord | undefined>();
    for (const r of records) if (!networks.has(r.network)) networks.set(r.network, await getNetwork(this.opts.store, r.network));
    const targets: HealthTarget[] = [];
    const replicas = new Map<string, Replica[]>();
    for (const r of records) {
      const mine = replicasOf(r, contents.endpoints, this.opts.node);
      replicas.set(r.name, mine);
      const port = r.ports[0]?.target ?? 0;
      const snat = this.opts.cluster?.snat(r.network);
      for (const rep of mine) {
        const address = rep.ipv4 ?? rep.ipv6!;
        const backend = address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
        const target: HealthTarget = { key: healthKey(r.name, rep), service: r.name, backend, address, port, check: r.health };
        // A replica on another node answers this node's own overlay address, not the gateway.
        const source = snat?.[address.includes(':') ? 6 : 4]?.address;
        if (!rep.local && source !== undefined) target.source = source;
        targets.push(target);
      }
    }
    this.health.setTargets(targets);
    this.views = records.map((r) => ({ ...r, replicas: (replicas.get(r.name) ?? []).map((rep) => ({ ...rep, health: this.health.status(healthKey(r.name, rep)) })) }));
    const states: ServiceState[] = this.views.map((v) => {
      const state: ServiceState = { record: v, network: networks.get(v.network), healthy: v.replicas.filter((rep) => rep.health === 'up') };
      const snat = this.opts.cluster?.snat(v.network);
      if (snat) state.snat = snat;
      return state;
    });
    try {
      this.kernel.apply(states);
    } catch (err) {
      this.opts.logger.error({ event: 'lb_apply_failed', err }, `failed to apply the service data path: ${(err as Error).message}`);
    }
    await this.proxy.apply(states);
    this.publishMetrics(targets);
    const withServices = withServiceRecords(
      contents,
      states.map((s) => ({ record: s.record, healthy: s.healthy })),
    );
    return { ...withServices, srv: buildSrvTable(records, contents.networks) };
  }

  /** This node's services, then the cluster's (a local service shadows a cluster one of its name). */
  private async records(): Promise<ServiceRecord[]> {
    const local = await listServices(this.opts.store);
    const names = new Set(local.map((r) => r.name));
    const cluster = this.opts.cluster?.services() ?? [];
    for (const r of cluster) {
      if (names.has(r.name)) this.opts.logger.warn({ event: 'service_name_conflict', service: r.name }, `cluster service "${r.name}" is not run on this node: a local service has that name`);
    }
    return [...local, ...cluster.filter((r) => !names.has(r.name))];
  }

  private publishMetrics(targets: readonly HealthTarget[]): void {
    const m = this.metrics;
    if (!m) return;
    m.backendUp.reset();
    m.replicas.reset();
    for (const t of targets) m.backendUp.set({ service: t.service, backend: t.backend }, this.health.isUp(t.key) ? 1 : 0);
    for (const v of this.views) {
      for (const state of ['up', 'down', 'unknown'] as const) m.replicas.set({ service: v.name, state }, v.replicas.filter((r) => r.health === state).length);
    }
  }

  async close(): Promise<void> {
    this.unregisterKernelBytes?.();
    this.health.close();
    await this.proxy.close();
    try {
      this.kernel.close();
    } catch (err) {
      this.opts.logger.error({ event: 'lb_cleanup_failed', err }, `failed to remove the service data path: ${(err as Error).message}`);
    }
  }
}
