/**
 * The daemon's metrics registry (DESIGN §4.8: one registry, injected into every module; only
 * the daemon serves it) and the `/metrics` HTTP server.
 *
 * Process metrics: prom-client's default collectors, minus those whose names break Prometheus
 * naming rules (gauges ending in `_total`, e.g. `nodejs_heap_size_total_bytes`,
 * `nodejs_active_handles_total`): `promtool check metrics` must report nothing.
 */
import http from 'node:http';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { Logger } from 'pino';
import pkg from '../../package.json' with { type: 'json' };
import type { IpamNetworkStats } from '../ipam/stats.js';
import type { HostPort } from './options.js';

/** Default metrics whose type and name disagree (a gauge named like a counter). */
function lintClean(name: string, type: string): boolean {
  return !(type !== 'counter' && /_total(_|$)/.test(name));
}

export function createRegistry(opts: { ipamStats?: () => Promise<IpamNetworkStats[]> } = {}): Registry {
  const registry = new Registry();
  const defaults = new Registry();
  collectDefaultMetrics({ register: defaults });
  for (const { name, type } of defaults.getMetricsAsArray()) {
    const metric = defaults.getSingleMetric(name);
    if (metric && lintClean(name, String(type))) registry.registerMetric(metric);
  }
  new Gauge({
    name: 'shoal_build_info',
    help: 'Shoal build information; always 1',
    labelNames: ['version', 'node'],
    registers: [registry],
  }).set({ version: pkg.version, node: process.version }, 1);

  if (opts.ipamStats) {
    const read = opts.ipamStats;
    // Read at scrape time: the allocations are written by CNI processes, not by the daemon.
    let last: Promise<IpamNetworkStats[]> | undefined;
    const stats = (): Promise<IpamNetworkStats[]> => (last ??= read().finally(() => setTimeout(() => (last = undefined), 0)));
    const allocated = new Gauge({
      name: 'shoal_ipam_addresses_allocated',
      help: 'Addresses held by attachments, per network',
      labelNames: ['network'],
      registers: [registry],
      async collect() {
        allocated.reset();
        for (const s of await stats().catch(() => [])) allocated.set({ network: s.network }, s.allocated);
      },
    });
    const capacity = new Gauge({
      name: 'shoal_ipam_addresses_capacity',
      help: 'Addresses the network ranges can hand out, per network',
      labelNames: ['network'],
      registers: [registry],
      async collect() {
        capacity.reset();
        for (const s of await stats().catch(() => [])) capacity.set({ network: s.network }, s.capacity);
      },
    });
  }
  return registry;
}

/** GET /metrics only; everything else is 404 (405 for other methods on /metrics). */
export function startMetricsServer(registry: Registry, addr: HostPort, logger?: Logger): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (url !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(req.method === 'HEAD' ? undefined : text),
      (err: unknown) => {
        logger?.error({ event: 'metrics_error', err }, 'failed to collect metrics');
        res.writeHead(500, { 'content-type': 'text/plain' }).end('failed to collect metrics\n');
      },
    );
  });
  server.keepAliveTimeout = 5000;
  return new Promise((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`failed to listen on "${addr.host}:${addr.port}": ${err.message}`, { cause: err })));
    server.listen(addr.port, addr.host, () => resolve(server));
  });
}
