import { Counter, Histogram, type Registry } from 'prom-client';

// ---- metrics ------------------------------------------------------------------------------------

export interface StoreMetrics {
  requests: Counter<'op' | 'result'>;
  watchLag: Histogram;
}

export function storeMetrics(registry: Registry | undefined): StoreMetrics {
  const registers = registry ? [registry] : [];
  const existing = (name: string) => registry?.getSingleMetric(name);
  const requests =
    (existing('shoal_store_requests_total') as Counter<'op' | 'result'> | undefined) ??
    new Counter({
      name: 'shoal_store_requests_total',
      help: 'Requests to the cluster store by operation and result (ok, error, unavailable; conflict: a transaction attempt that lost to another writer)',
      labelNames: ['op', 'result'],
      registers,
    });
  const watchLag =
    (existing('shoal_store_watch_lag_seconds') as Histogram | undefined) ??
    new Histogram({
      name: 'shoal_store_watch_lag_seconds',
      help: "Time from this process's own committed write to its delivery by this process's store watch",
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
  return { requests, watchLag };
}
