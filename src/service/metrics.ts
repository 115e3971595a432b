/**
 * Service and balancer metrics (DESIGN §4.8), in the spirit of HAProxy's exporter, declared on
 * the daemon's one registry. Backend labels are `address:port`.
 */
import { Counter, Gauge, type Registry } from 'prom-client';

export class ServiceMetrics {
  readonly backendUp: Gauge<'service' | 'backend'>;
  readonly healthChecks: Counter<'service' | 'backend' | 'result'>;
  readonly replicas: Gauge<'service' | 'state'>;
  readonly connections: Counter<'service' | 'backend'>;
  readonly activeConnections: Gauge<'service'>;
  readonly connectErrors: Counter<'service' | 'backend'>;
  readonly bytes: Counter<'service' | 'direction'>;
  readonly queued: Gauge<'service'>;
  readonly refused: Counter<'service' | 'reason'>;
  /** Called when the registry is read: the proxies add the bytes they counted since. */
  private readonly byteSources = new Set<() => void>();
  /** Called when the registry is read: each gives its services' queue lengths. */
  private readonly queueSources = new Set<() => Iterable<[service: string, queued: number]>>();

  constructor(registry: Registry) {
    const registers = [registry];
    this.backendUp = new Gauge({ name: 'shoal_lb_backend_up', help: 'Whether a service backend is in rotation (1) or out (0)', labelNames: ['service', 'backend'], registers });
    this.healthChecks = new Counter({ name: 'shoal_lb_health_checks_total', help: 'Health checks run, by result (success, failure)', labelNames: ['service', 'backend', 'result'], registers });
    this.replicas = new Gauge({ name: 'shoal_service_replicas', help: 'Replicas of a service by health state (up, down, unknown)', labelNames: ['service', 'state'], registers });
    // The daemon's [::1] loopback proxies declare it first (their service label is "[::1]:port/proto").
    this.connections =
      (registry.getSingleMetric('shoal_lb_connections_total') as Counter<'service' | 'backend'> | undefined) ??
      new Counter({ name: 'shoal_lb_connections_total', help: 'Connections the proxy data path sent to a backend', labelNames: ['service', 'backend'], registers });
    this.activeConnections = new Gauge({ name: 'shoal_lb_active_connections', help: 'Connections open through the proxy data path', labelNames: ['service'], registers });
    this.connectErrors = new Counter({ name: 'shoal_lb_connect_errors_total', help: 'Failed connection attempts from the proxy data path to a backend', labelNames: ['service', 'backend'], registers });
    // HAProxy's backend queue (haproxy_backend_current_queue), read off the pools' queues at
    // scrape time, and the clients the proxy turned away.
    const queueSources = this.queueSources;
    this.queued = new Gauge({
      name: 'shoal_lb_queued_connections',
      help: 'Clients of the proxy data path waiting for a backend slot (--max-conn)',
      labelNames: ['service'],
      registers,
      collect() {
        this.reset();
        for (const source of queueSources) for (const [service, n] of source()) this.inc({ service }, n);
      },
    });
    this.refused = new Counter({
      name: 'shoal_lb_refused_connections_total',
      help: 'Clients the proxy data path reset: no backend (none in rotation, or every retry failed), queue_full, queue_timeout',
      labelNames: ['service', 'reason'],
      registers,
    });
    // Counted per chunk as plain numbers by each proxy, folded in here at scrape time: a labelled
    // inc() per chunk (a label-key string built each time) would cost the data path.
    const sources = this.byteSources;
    this.bytes = new Counter({
      name: 'shoal_lb_bytes_total',
      help: 'Bytes carried to and from a service (both data paths): in = from clients to backends, out = from backends to clients',
      labelNames: ['service', 'direction'],
      registers,
      collect() {
        for (const flush of sources) flush();
      },
    });
  }

  /** Registers a source of queue lengths (read on every scrape); the returned function unregisters it. */
  addQueueSource(source: () => Iterable<[service: string, queued: number]>): () => void {
    this.queueSources.add(source);
    return () => this.queueSources.delete(source);
  }

  /** Registers a flush (run on every scrape); the returned function unregisters it. */
  addByteSource(flush: () => void): () => void {
    this.byteSources.add(flush);
    return () => this.byteSources.delete(flush);
  }
}
