/**
 * The DNS server, composed: snapshot holder + handler chain (containers -> hosts -> zone ->
 * forward) + engine + listeners. The daemon builds one ShoalDns, feeds it records on every
 * store change (`setRecords`), and adds/removes a listener per network gateway.
 */
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { ResponseCache } from './cache.js';
import { HandlerChain, type Handler } from './chain.js';
import { DnsEngine } from './engine.js';
import { Forwarder } from './forwarder.js';
import { containersHandler } from './handler-containers.js';
import { forwardHandler } from './handler-forward.js';
import { hostsHandler } from './handler-hosts.js';
import { srvHandler, type SrvTable } from './handler-srv.js';
import { zoneHandler } from './handler-zone.js';
import { DnsMetrics } from './metrics.js';
import type { DnsMetricsSink } from './metrics-sink.js';
import { ResolvConf } from './resolv-conf.js';
import { DnsServer, type ListenerAddress } from './server.js';
import { RecordsDiffer } from './records-diff.js';
import { RecordSnapshot, type RecordsDelta } from './snapshot.js';
import type { DnsRecordsInput } from './types.js';
import { socketTransport, type UpstreamTransport } from './upstream.js';
import { DnsWorkerPool } from './worker-pool.js';
import type { WorkerDnsOptions } from './worker-protocol.js';

export interface ShoalDnsOptions extends WorkerDnsOptions {
  /** prom-client registry to declare the DNS metrics on (omit: no metrics). */
  registry?: Registry;
  logger?: Logger;
  /**
   * Answer in this many worker threads (worker-pool.ts), each with its own SO_REUSEPORT UDP and
   * TCP socket per listener; 0 (default): on this thread. Needs `workerScript`.
   */
  workers?: number;
  /** The worker bundle: dist/bin/dns-worker.js (built by scripts/build.mjs). */
  workerScript?: string | URL;
  /** Where a worker counts (worker-main.ts); without it, the registry's metrics. */
  metricsSink?: DnsMetricsSink;
  /** SO_REUSEPORT on this thread's sockets (what a worker sets). */
  reusePort?: boolean;
  /** Test seams (this thread only: workers use real sockets and clocks). */
  transport?: UpstreamTransport;
  now?: () => number;
}

export class ShoalDns {
  readonly server: DnsServer;
  readonly engine: DnsEngine;
  readonly forwarder: Forwarder;
  readonly cache: ResponseCache;
  readonly resolvConf: ResolvConf;
  readonly metrics: DnsMetrics | undefined;
  /** Set when answering in worker threads; then this thread holds no DNS socket and no snapshot. */
  readonly pool: DnsWorkerPool | undefined;
  private current: RecordSnapshot;
  /** The SRV table that came with the current records (read by the srv handler). */
  private srv: SrvTable | undefined;
  private version = 0;
  /** The last record set given to setRecords, to diff the next against. */
  private differ: RecordsDiffer | undefined;
  private readonly opts: ShoalDnsOptions;

  constructor(options: ShoalDnsOptions = {}) {
    this.opts = options;
    const now = options.now ?? Date.now;
    this.cache = new ResponseCache({ maxEntries: options.cacheSize, maxTtl: options.cacheMaxTtl, maxNegativeTtl: options.cacheMaxNegativeTtl, now });
    this.resolvConf = new ResolvConf({
      path: options.resolvConfPath,
      checkIntervalMs: options.resolvConfCheckMs,
      now,
      onChange: (ns) => options.logger?.info({ event: 'dns_resolv_conf_changed', nameservers: ns }, 'host resolv.conf changed'),
    });
    this.metrics = options.registry
      ? new DnsMetrics(options.registry, { cacheEntries: () => this.cache.size, forwardsInFlight: () => this.forwarder.inFlight })
      : undefined;
    const forwarder = new Forwarder({
      transport: options.transport ?? socketTransport,
      cache: this.cache,
      defaultUpstreams: () => this.resolvConf.nameservers(),
      timeoutMs: options.forwardTimeoutMs,
      maxConcurrent: options.maxConcurrentForwards,
      metrics: this.metrics ?? options.metricsSink,
      logger: options.logger,
      now,
    });
    this.forwarder = forwarder;
    this.current = RecordSnapshot.build({ networks: [], endpoints: [] }, this.snapshotOptions());
    const handlers: Handler[] = [srvHandler(() => this.srv), containersHandler(), hostsHandler(), zoneHandler(), forwardHandler(forwarder)];
    this.engine = new DnsEngine({
      chain: new HandlerChain(handlers),
      snapshot: () => this.current,
      metrics: this.metrics ?? options.metricsSink,
      logger: options.logger,
      maxUdpSize: options.maxUdpSize,
    });
    this.server = new DnsServer(this.engine, {
      logger: options.logger,
      tcpIdleMs: options.tcpIdleMs,
      maxTcpConnections: options.maxTcpConnections,
      maxTcpPipeline: options.maxTcpPipeline,
      udp: options.udp,
      reusePort: options.reusePort,
    });
    if (options.workers && options.workers > 0) {
      if (!options.workerScript) throw new Error('ShoalDns: workers need a workerScript (dist/bin/dns-worker.js)');
      const { registry: _r, logger: _l, transport: _t, now: _n, metricsSink: _m, workers: _w, workerScript: _s, reusePort: _p, ...serializable } = options;
      this.pool = new DnsWorkerPool({ size: options.workers, script: options.workerScript, options: serializable, logger: options.logger, metrics: this.metrics });
      const pool = this.pool;
      if (this.metrics) this.metrics.refresh = () => pool.collectCounts().then(() => undefined);
    }
  }

  private snapshotOptions(): { localTtl: number } {
    return { localTtl: this.opts.localTtl ?? 5 };
  }

  get snapshot(): RecordSnapshot {
    return this.current;
  }

  /**
   * Makes `input` the record set (the whole of it; do not mutate it afterwards: the next call
   * diffs against it). What changed since the last call is applied to the snapshot in place
   * (records-diff.ts, snapshot.ts `applyDelta`); a first set, or a change a delta cannot carry,
   * builds a new snapshot. The next query sees the change. With workers, each worker applies it
   * to its own snapshot (pool.whenApplied() says when all did).
   */
  setRecords(input: DnsRecordsInput): RecordSnapshot {
    const change = (this.differ ??= new RecordsDiffer()).change(input);
    if (this.pool) {
      if (change.kind === 'full') this.pool.setRecords(input);
      else if (change.added.length + change.removed.length > 0) this.pool.applyDelta(change, input);
      return this.current;
    }
    if (change.kind === 'full') return this.loadRecords(input);
    return change.added.length + change.removed.length > 0 ? this.applyDelta(change) : this.current;
  }

  /** Builds a new snapshot from the whole record set and swaps it in (no diff: what a worker is sent). */
  loadRecords(input: DnsRecordsInput): RecordSnapshot {
    this.version += 1;
    const next = RecordSnapshot.build(input, this.snapshotOptions(), this.version);
    this.srv = input.srv;
    this.current = next;
    this.publishRecordCounts();
    return next;
  }

  /** Applies a delta to the current snapshot, and drops cached upstream answers for the names it touched. */
  applyDelta(delta: RecordsDelta): RecordSnapshot {
    this.forwarder.forget(this.current.applyDelta(delta));
    this.publishRecordCounts();
    return this.current;
  }

  private publishRecordCounts(): void {
    this.metrics?.setRecords(new Map([...this.current.networks.values()].map((n) => [n.name, n.recordCount])));
  }

  addListener(address: string, port = 53): Promise<ListenerAddress> {
    return this.pool ? this.pool.addListener(address, port) : this.server.addListener(address, port);
  }

  removeListener(address: string, port = 53): Promise<boolean> {
    return this.pool ? this.pool.removeListener(address, port) : this.server.removeListener(address, port);
  }

  listeners(): ListenerAddress[] {
    return this.pool ? this.pool.listeners() : this.server.listeners();
  }

  /** Closes every listener. Forwards still pending finish and are dropped (workers: finish within graceMs). */
  async close(graceMs?: number): Promise<void> {
    await this.pool?.close(graceMs);
    await this.server.close();
  }
}

export { RecordSnapshot } from './snapshot.js';
export { DnsServer, type ListenerAddress, type ServerOptions } from './server.js';
export { DnsEngine } from './engine.js';
export { HandlerChain, type Handler, type QueryContext } from './chain.js';
export { Forwarder } from './forwarder.js';
export { ResponseCache } from './cache.js';
export { ResolvConf, parseResolvConf } from './resolv-conf.js';
export { DnsMetrics } from './metrics.js';
export { DnsWorkerPool } from './worker-pool.js';
export { parseUpstream, socketTransport, type Upstream, type UpstreamTransport } from './upstream.js';
export type { DnsEndpoint, DnsNetworkConfig, DnsRecordsInput } from './types.js';
