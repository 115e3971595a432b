/**
 * The daemon, composed (DESIGN §3 "composition root"): store -> registry reads -> DNS records,
 * listeners and firewall rules; metrics and the control API around them. Each piece lives in
 * its own module; this file only wires them and owns the life cycle (start, sync, reload, stop).
 *
 * Sync model: the store's revision is polled every `watchIntervalMs` (25 ms by default, so a
 * CNI ADD is served well within 100 ms); any change (or SIGHUP, or a pending listener's retry
 * timer) requests a sync, and syncs never overlap: a request during one schedules exactly one
 * more.
 */
import { unlinkSync } from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import pkg from '../../package.json' with { type: 'json' };
import { ShoalDns } from '../dns/index.js';
import { dnsWorkerOptions } from '../dns/worker-options.js';
import type { RegistryContents } from '../dns/registry.js';
import { RegistryReader } from '../dns/registry-reader.js';
import { ShoalError } from '../errors.js';
import { ipamStats } from '../ipam/stats.js';
import { warmThreadpool } from '../kernel/netns.js';
import { closeStateStores, openStateStore, STORE_FILE_NAME } from '../store/open.js';
import type { Store } from '../store/store.js';
import type { ClusterSession, NodeInfo } from '../cluster/session.js';
import type { ClusterOverlay } from '../cluster/overlay.js';
import { clusterApiError } from './cluster-api.js';
import type { ServiceInput } from '../service/model.js';
import { serviceLoopbackTargets } from '../service/loopback6.js';
import { ServiceManager } from '../service/manager.js';
import { ApiError, startApiServer } from './api.js';
import { startCniFastPath, type CniServer } from './cni-server.js';
import { registryChanges } from './changes.js';
import { DnsFirewall } from './firewall.js';
import { desiredListenAddresses, ListenerReconciler } from './listeners.js';
import { LoopbackProxies } from './loopback-proxies.js';
import { createRegistry, startMetricsServer } from './metrics.js';
import type { DaemonOptions, StoreSpec } from './options.js';
import { acquirePidFile, releasePidFile } from './pidfile.js';

async function openStore(spec: StoreSpec): Promise<Store> {
  if (spec.kind === 'etcd') {
    // parseDaemonArgs turns --store etcd://... into the cluster session plus the local store.
    throw new ShoalError('EINVAL', `failed to open store "etcd://${spec.endpoints.join(',')}": etcd holds cluster state only; the local store is sqlite:<path>`);
  }
  // The default file goes through openStateStore, so every module of this process shares one
  // connection to it (two connections of one process would wait on each other's lock).
  if (path.basename(spec.file) === STORE_FILE_NAME) return openStateStore(path.dirname(spec.file));
  const { SqliteStore } = await import('../store/sqlite.js');
  return new SqliteStore(spec.file);
}

function closeServer(server: http.Server | undefined, graceMs: number): Promise<void> {
  if (!server) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => server.closeAllConnections(), graceMs);
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    server.closeIdleConnections();
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Daemon {
  private store: Store | undefined;
  private dns: ShoalDns | undefined;
  private listeners: ListenerReconciler | undefined;
  private firewall: DnsFirewall | undefined;
  private proxies: LoopbackProxies | undefined;
  private services: ServiceManager | undefined;
  private readonly registryReader = new RegistryReader();
  private proxyTimer: NodeJS.Timeout | undefined;
  private metricsServer: http.Server | undefined;
  private apiServer: http.Server | undefined;
  private cniServer: CniServer | undefined;
  private stopWatch: (() => void) | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private contents: RegistryContents | undefined;
  private syncing: Promise<void> | undefined;
  private again: { force: boolean; checkConflicts: boolean } | undefined;
  private lastSync: { at: string; revision: number; durationMs: number; reason: string } | undefined;
  private cluster: ClusterSession | undefined;
  private overlay: ClusterOverlay | undefined;
  private stopping = false;
  private pidFileHeld = false;
  private readonly startedAt = Date.now();
  registry: Registry | undefined;

  constructor(
    private readonly opts: DaemonOptions,
    private readonly logger: Logger,
  ) {}

  async start(): Promise<void> {
    // Startup marks, ms since the process began (performance's time origin), logged with
    // daemon_started: where a restart's time to the first DNS answer goes (torture daemon-kill).
    const marks: Record<string, number> = { nodeBootstrap: Math.round(performance.nodeTiming.bootstrapComplete) };
    const mark = (name: string) => (marks[name] = Math.round(performance.now()));
    mark('startEntered');
    try {
      // libuv's pool threads must be born in the host namespace (DESIGN §6).
      await warmThreadpool();
      acquirePidFile(this.opts.pidFile);
      this.pidFileHeld = true;
      const store = await openStore(this.opts.store);
      this.store = store;
      mark('storeOpen');
      this.registry = createRegistry({ ipamStats: () => ipamStats(store) });
      this.dns = new ShoalDns({
        registry: this.registry,
        logger: this.logger,
        localTtl: this.opts.localTtl,
        resolvConfPath: this.opts.resolvConf,
        maxConcurrentForwards: this.opts.maxConcurrentForwards,
        ...dnsWorkerOptions(this.opts.dnsWorkers),
      });
      const dns = this.dns;
      mark('dnsCreated');
      this.listeners = new ListenerReconciler(
        { add: (a, p) => dns.addListener(a, p), remove: (a, p) => dns.removeListener(a, p) },
        this.opts.dnsPort,
        this.logger,
      );
      if (this.opts.firewall) this.firewall = new DnsFirewall(this.opts.dnsPort, this.logger, { clientRate: this.opts.dnsClientRate });
      this.proxies = new LoopbackProxies(this.opts.stateDir, this.logger, this.registry, () => serviceLoopbackTargets(this.services?.list() ?? []));
      // Services (issue 16): a replica's health change syncs again, like a store change.
      this.services = new ServiceManager({
        store,
        logger: this.logger,
        registry: this.registry,
        onChange: () => void this.requestSync('health'),
        // Services of overlay networks come from etcd, through the overlay (made just below).
        ...(this.opts.cluster ? { cluster: { services: () => this.overlay?.mesh.services() ?? [], snat: (network: string) => this.overlay?.mesh.snat(network) } } : {}),
      });
      if (this.opts.cluster) {
        const c = this.opts.cluster;
        if (c.advertiseAddr === undefined) throw new ShoalError('EINVAL', 'failed to join the cluster: no advertise address (pass --advertise-addr IP)');
        // Loaded only in cluster mode: a daemon on the local store never loads the etcd client.
        const { ClusterSession } = await import('../cluster/session.js');
        this.cluster = await ClusterSession.join({
          endpoints: c.endpoints,
          node: c.node,
          advertiseAddr: c.advertiseAddr,
          nodeTtlSeconds: c.nodeTtlSeconds,
          version: pkg.version,
          registry: this.registry,
          logger: this.logger,
          leaseFile: path.join(this.opts.stateDir, 'cluster-lease.json'),
        });
        const { ClusterOverlay } = await import('../cluster/overlay.js');
        const { hostRoutes } = await import('../network/host-routes.js');
        const { cniConfDir } = await import('../network/manage.js');
        this.overlay = new ClusterOverlay({
          session: this.cluster,
          local: store,
          advertiseAddr: c.advertiseAddr,
          stateDir: this.opts.stateDir,
          confDir: cniConfDir(),
          daemonSocket: this.opts.socket,
          blockGraceSeconds: c.blockGraceSeconds,
          registry: this.registry,
          logger: this.logger,
          onChange: () => void this.requestSync('cluster'),
          hostRoutes,
        });
        await this.overlay.start();
      }
      await this.requestSync('start', { checkConflicts: true });
      mark('firstSync');
      if (this.opts.metrics) this.metricsServer = await startMetricsServer(this.registry, this.opts.metrics, this.logger);
      this.apiServer = await startApiServer(
        this.opts.socket,
        {
          status: () => this.status(),
          networks: () => this.networks(),
          endpoints: (network) => (this.contents?.endpoints ?? []).filter((e) => network === undefined || e.network === network),
          nodes: () => this.nodes(),
          services: (name) => (this.services?.list() ?? []).filter((s) => name === undefined || s.name === name),
          reload: async () => {
            await this.reload('api');
            return this.status();
          },
          createNetwork: (body) => this.withOverlay((o) => o.createNetwork(body as Parameters<ClusterOverlay['createNetwork']>[0])),
          removeNetwork: (name) => this.withOverlay(async (o) => (await o.removeNetwork(name), { removed: name })),
          putService: (body) =>
            this.withOverlay(async (o) => {
              const b = (body ?? {}) as { input?: unknown; update?: unknown };
              if (typeof b.input !== 'object' || b.input === null || typeof (b.input as { name?: unknown }).name !== 'string') throw new ApiError(400, 'body must be {"input": {"name": NAME, ...}, "update": BOOLEAN}');
              return o.putService(b.input as ServiceInput, b.update === true);
            }),
          removeService: (name) =>
            this.withOverlay(async (o) => {
              if (!(await o.removeService(name))) throw new ApiError(404, `no such service "${name}" in the cluster`);
              return { removed: name };
            }),
          claimBlock: (body) =>
            this.withOverlay(async (o) => {
              const b = (body ?? {}) as { network?: unknown; family?: unknown };
              if (typeof b.network !== 'string' || (b.family !== 4 && b.family !== 6)) throw new ApiError(400, 'body must be {"network": NAME, "family": 4 or 6}');
              return { cidr: await o.claimBlock(b.network, b.family) };
            }),
        },
        this.logger,
      );
      this.cniServer = await startCniFastPath(this.opts.runDir, this.logger);
      mark('apiAndCni');
      this.stopWatch = store.watch(() => void this.requestSync('store'), { intervalMs: this.opts.watchIntervalMs });
      // Gateways that were not on the host yet are retried on a timer too, not only on changes.
      // Published ports live in portmap record files, not the store: follow their directory.
      this.proxyTimer = setInterval(() => void this.proxies?.sync().catch((err: unknown) => this.logger.error({ event: 'lb_proxy_sync_failed', err }, 'failed to sync published port proxies')), this.opts.watchIntervalMs * 4);
      this.retryTimer = setInterval(() => {
        if (this.listeners?.pending.size) void this.requestSync('retry');
      }, this.opts.retryIntervalMs);
      this.logger.info(
        {
          event: 'daemon_started',
          version: pkg.version,
          pid: process.pid,
          metrics: this.opts.metrics ? `${this.opts.metrics.host}:${this.opts.metrics.port}` : 'off',
          socket: this.opts.socket,
          store: this.opts.store,
          cluster: this.cluster?.status() ?? null,
          dnsPort: this.opts.dnsPort,
          startupMs: marks,
        },
        'shoald started',
      );
    } catch (err) {
      await this.stop('start failed').catch(() => undefined);
      throw err;
    }
  }

  /** Runs a sync now, or once more after the one in progress. Never rejects. */
  requestSync(reason: string, o: { force?: boolean; checkConflicts?: boolean } = {}): Promise<void> {
    if (this.syncing) {
      this.again = { force: (this.again?.force ?? false) || !!o.force, checkConflicts: (this.again?.checkConflicts ?? false) || !!o.checkConflicts };
      // The loop of the sync in progress runs the coalesced one before it settles.
      return this.syncing;
    }
    const run = async (): Promise<void> => {
      let next: { reason: string; force: boolean; checkConflicts: boolean } | undefined = { reason, force: !!o.force, checkConflicts: !!o.checkConflicts };
      while (next && !this.stopping) {
        await this.sync(next.reason, next).catch((err: unknown) =>
          this.logger.error({ event: 'daemon_sync_failed', reason: next?.reason, err }, `failed to sync "dns registry": ${(err as Error).message}`),
        );
        next = this.again ? { reason: 'coalesced', ...this.again } : undefined;
        this.again = undefined;
      }
    };
    this.syncing = run().finally(() => (this.syncing = undefined));
    return this.syncing;
  }

  private async sync(reason: string, o: { force: boolean; checkConflicts: boolean }): Promise<void> {
    const store = this.store;
    const dns = this.dns;
    if (!store || !dns || !this.listeners) return;
    const t0 = performance.now();
    const revision = await store.revision();
    const local = await this.registryReader.read(store);
    // In a cluster: this node's overlay endpoints published, the other nodes' added.
    const contents = this.overlay ? await this.overlay.apply(local) : local;
    for (const c of registryChanges(this.contents, contents)) {
      const { record, ...fields } = c;
      this.logger.info({ ...fields, record }, c.event.replace(/_/g, ' '));
    }
    this.contents = contents;
    dns.setRecords(this.services ? await this.services.sync(contents) : contents);
    await this.listeners.reconcile(desiredListenAddresses(contents.networks));
    this.firewall?.sync(contents.networks, { force: o.force, checkConflicts: o.checkConflicts });
    await this.proxies?.sync(o.force);
    const durationMs = Math.round((performance.now() - t0) * 1000) / 1000;
    this.lastSync = { at: new Date().toISOString(), revision, durationMs, reason };
    this.logger.debug({ event: 'daemon_synced', reason, revision, durationMs }, 'synced');
  }

  /** SIGHUP / POST /v1/reload: re-read everything, re-apply firewall rules, retry listeners. */
  async reload(source: string): Promise<void> {
    this.logger.info({ event: 'daemon_reload', source }, 'reloading');
    this.contents = undefined; // every record is logged again: a reload shows the full state
    await this.requestSync(`reload (${source})`, { force: true, checkConflicts: true });
  }

  status(): Record<string, unknown> {
    return {
      version: pkg.version,
      node: process.version,
      pid: process.pid,
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      store: this.opts.store,
      cluster: this.cluster ? { ...this.cluster.status(), overlay: this.overlay?.status() ?? null } : null,
      dnsPort: this.opts.dnsPort,
      metrics: this.opts.metrics ? `${this.opts.metrics.host}:${this.opts.metrics.port}` : null,
      listeners: [...(this.listeners?.active ?? [])].sort(),
      loopbackProxies: (this.proxies?.active ?? []).map((t) => ({ service: `[::1]:${t.hostPort}/${t.protocol}`, backend: `${t.backend.host}:${t.backend.port}` })),
      pendingListeners: [...(this.listeners?.pending ?? [])].map(([address, code]) => ({ address, code })),
      networks: this.contents?.networks.length ?? 0,
      endpoints: this.contents?.endpoints.length ?? 0,
      firewall: this.firewall ? { enabled: true, networks: this.firewall.networks } : { enabled: false },
      lastSync: this.lastSync ?? null,
    };
  }

  /** Runs a cluster request, or answers 409 without a cluster; cluster errors become their API status. */
  private async withOverlay<T>(fn: (o: ClusterOverlay) => Promise<T>): Promise<T> {
    if (!this.overlay) throw new ApiError(409, 'this daemon has not joined a cluster (it was started without --store etcd://...): overlay networks need one');
    try {
      return await fn(this.overlay);
    } catch (err) {
      throw clusterApiError(err);
    }
  }

  /** GET /v1/nodes: the cluster's nodes, read from etcd now. */
  async nodes(): Promise<NodeInfo[]> {
    if (!this.cluster) {
      throw new ApiError(409, 'this daemon has not joined a cluster (it was started without --store etcd://...)');
    }
    return this.cluster.nodes();
  }

  networks(): unknown[] {
    const c = this.contents ?? { networks: [], endpoints: [] };
    return c.networks.map((n) => ({
      ...n,
      endpoints: c.endpoints.filter((e) => e.network === n.name).length,
      listeners: desiredListenAddresses([n]).map((address) => {
        const pending = this.listeners?.pending.get(address);
        return pending ? { address, state: 'pending', code: pending } : { address, state: this.listeners?.active.has(address) ? 'listening' : 'none' };
      }),
    }));
  }

  /**
   * Graceful stop: no new syncs, answer what is in flight (forwards get up to `graceMs`), then
   * close listeners and servers, remove our firewall rules, the socket and the pid file.
   */
  async stop(reason: string, graceMs = 2500): Promise<void> {
    this.stopping = true;
    this.logger.info({ event: 'daemon_stopping', reason }, 'stopping');
    this.stopWatch?.();
    if (this.retryTimer) clearInterval(this.retryTimer);
    if (this.proxyTimer) clearInterval(this.proxyTimer);
    await this.syncing;
    const deadline = Date.now() + graceMs;
    while (this.dns && this.dns.forwarder.inFlight > 0 && Date.now() < deadline) await sleep(20);
    await Promise.all([closeServer(this.apiServer, graceMs), closeServer(this.metricsServer, graceMs), this.cniServer?.close(graceMs)]);
    await this.listeners?.closeAll();
    await this.proxies?.closeAll();
    await this.services?.close();
    await this.dns?.close();
    this.firewall?.clear();
    this.overlay?.close();
    // The node lease is left to run out: a restart within its TTL takes it over (session.ts).
    await this.cluster?.close();
    if (this.store) {
      if (path.basename((this.opts.store as { file?: string }).file ?? '') === STORE_FILE_NAME) closeStateStores();
      else this.store.close();
    }
    if (this.apiServer) {
      try {
        unlinkSync(this.opts.socket);
      } catch {
        // Node already removed it
      }
    }
    if (this.pidFileHeld) releasePidFile(this.opts.pidFile);
    this.logger.info({ event: 'daemon_stopped', reason }, 'shoald stopped');
  }
}
