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
import { zoneHandler } from './handler-zone.js';
import { DnsMetrics } from './metrics.js';
import { ResolvConf } from './resolv-conf.js';
import { DnsServer, type ListenerAddress } from './server.js';
import { RecordSnapshot } from './snapshot.js';
import type { DnsRecordsInput } from './types.js';
import { socketTransport, type UpstreamTransport } from './upstream.js';

export interface ShoalDnsOptions {
  /** prom-client registry to declare the DNS metrics on (omit: no metrics). */
  registry?: Registry;
  logger?: Logger;
  /** TTL of local answers, seconds (default 5); a network's `ttl` overrides it. */
  localTtl?: number;
  /** Host resolver config, the upstreams of networks without their own (default /etc/resolv.conf). */
  resolvConfPath?: string;
  /** How often a query may trigger a resolv.conf change check, ms (default 2000). */
  resolvConfCheckMs?: number;
  /** Per-upstream attempt timeout, ms (default 2000). */
  forwardTimeoutMs?: number;
  /** Concurrent upstream queries at most; past it, REFUSED (default 1024). */
  maxConcurrentForwards?: number;
  /** Forward cache: entries (default 10000), TTL caps in seconds (3600 / 1800). */
  cacheSize?: number;
  cacheMaxTtl?: number;
  cacheMaxNegativeTtl?: number;
  /** Largest UDP answer sent whatever the client advertises (default 4096). */
  maxUdpSize?: number;
  tcpIdleMs?: number;
  maxTcpConnections?: number;
  maxTcpPipeline?: number;
  /**
   * Pure handlers asked before the built-in ones (services' SRV answers): whatever state they
   * read must change only together with a `setRecords` call (answers are memoized per snapshot).
   */
  preHandlers?: Handler[];
  /** Test seams. */
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
  private current: RecordSnapshot;
  private version = 0;
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
      metrics: this.metrics,
      logger: options.logger,
      now,
    });
    this.forwarder = forwarder;
    this.current = RecordSnapshot.build({ networks: [], endpoints: [] }, this.snapshotOptions());
    const handlers: Handler[] = [...(options.preHandlers ?? []), containersHandler(), hostsHandler(), zoneHandler(), forwardHandler(forwarder)];
    this.engine = new DnsEngine({
      chain: new HandlerChain(handlers),
      snapshot: () => this.current,
      metrics: this.metrics,
      logger: options.logger,
      maxUdpSize: options.maxUdpSize,
    });
    this.server = new DnsServer(this.engine, {
      logger: options.logger,
      tcpIdleMs: options.tcpIdleMs,
      maxTcpConnections: options.maxTcpConnections,
      maxTcpPipeline: options.maxTcpPipeline,
    });
  }

  private snapshotOptions(): { localTtl: number } {
    return { localTtl: this.opts.localTtl ?? 5 };
  }

  get snapshot(): RecordSnapshot {
    return this.current;
  }

  /** Builds a new snapshot from the full record set and swaps it in; the next query sees it. */
  setRecords(input: DnsRecordsInput): RecordSnapshot {
    this.version += 1;
    const next = RecordSnapshot.build(input, this.snapshotOptions(), this.version);
    this.current = next;
    this.metrics?.setRecords(new Map([...next.networks.values()].map((n) => [n.name, n.recordCount])));
    return next;
  }

  addListener(address: string, port = 53): Promise<ListenerAddress> {
    return this.server.addListener(address, port);
  }

  removeListener(address: string, port = 53): Promise<boolean> {
    return this.server.removeListener(address, port);
  }

  listeners(): ListenerAddress[] {
    return this.server.listeners();
  }

  /** Closes every listener. Forwards still pending finish and are dropped. */
  async close(): Promise<void> {
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
export { parseUpstream, socketTransport, type Upstream, type UpstreamTransport } from './upstream.js';
export type { DnsEndpoint, DnsNetworkConfig, DnsRecordsInput } from './types.js';
