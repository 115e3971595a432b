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
  }
}
