/**
 * The DNS server's metrics, declared on the registry the daemon injects (DESIGN §4.8), named
 * like CoreDNS's. Labelled children are memoized: prom-client's label hashing is measurable on
 * the hot path, a Map lookup by a joined key is not.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { DURATION_BUCKETS, observeInto, type CountsDelta, type DnsMetricsSink, type HistogramSeries } from './metrics-sink.js';

export const RCODE_NAMES: Record<number, string> = {
  0: 'NOERROR', 1: 'FORMERR', 2: 'SERVFAIL', 3: 'NXDOMAIN', 4: 'NOTIMP', 5: 'REFUSED', 16: 'BADVERS',
};

const QTYPE_NAMES: Record<number, string> = {
  1: 'A', 2: 'NS', 5: 'CNAME', 6: 'SOA', 12: 'PTR', 15: 'MX', 16: 'TXT', 28: 'AAAA', 33: 'SRV', 35: 'NAPTR',
  43: 'DS', 48: 'DNSKEY', 64: 'SVCB', 65: 'HTTPS', 255: 'ANY', 257: 'CAA',
};

/** Bounded label values: unknown types collapse into `other`. */
export function qtypeName(type: number): string {
  return QTYPE_NAMES[type] ?? 'other';
}

export function rcodeName(rcode: number): string {
  return RCODE_NAMES[rcode] ?? `RCODE${rcode}`;
}

/**
 * A label-light histogram that prom-client's registry can serialize: observe() is a bucket
 * search and three increments (prom-client's own observe hashes labels on every call, which
 * showed in the DNS hot path's profile).
 */
export class FastHistogram {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly buckets: readonly number[];
  private readonly labelName: string;
  private readonly series = new Map<string, HistogramSeries>();
  private readonly beforeGet: (() => Promise<void>) | undefined;

  constructor(opts: { name: string; help: string; labelName: string; buckets: readonly number[]; registry: Registry; beforeGet?: () => Promise<void> }) {
    this.name = opts.name;
    this.help = opts.help;
    this.labelName = opts.labelName;
    this.buckets = [...opts.buckets].sort((a, b) => a - b);
    this.beforeGet = opts.beforeGet;
    opts.registry.registerMetric(this as never);
  }

  private seriesOf(label: string): HistogramSeries {
    let s = this.series.get(label);
    if (!s) this.series.set(label, (s = { counts: this.buckets.map(() => 0), sum: 0, count: 0 }));
    return s;
  }

  observe(label: string, value: number): void {
    observeInto(this.seriesOf(label), this.buckets, value);
  }

  /** Adds another thread's series (same buckets) to this one. */
  merge(label: string, other: HistogramSeries): void {
    const s = this.seriesOf(label);
    other.counts.forEach((n, i) => ((s.counts[i] as number) += n));
    s.sum += other.sum;
    s.count += other.count;
  }

  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: { labels: Record<string, string | number>; value: number; metricName: string }[] }> {
    await this.beforeGet?.();
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    for (const [label, s] of this.series) {
      let cumulative = 0;
      this.buckets.forEach((le, i) => {
        cumulative += s.counts[i] as number;
        values.push({ labels: { [this.labelName]: label, le }, value: cumulative, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { [this.labelName]: label, le: '+Inf' }, value: s.count, metricName: `${this.name}_bucket` });
      values.push({ labels: { [this.labelName]: label }, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { [this.labelName]: label }, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    this.series.clear();
  }
}

export class DnsMetrics implements DnsMetricsSink {
  readonly requests: Counter<'network' | 'qtype' | 'rcode'>;
  readonly duration: FastHistogram;
  readonly forwardRequests: Counter<'upstream' | 'rcode'>;
  readonly cacheHits: Counter;
  readonly cacheMisses: Counter;
  readonly cacheEntries: Gauge;
  readonly records: Gauge<'network'>;
  readonly malformed: Counter<'transport' | 'reason'>;
  readonly forwardsInFlight: Gauge;
  /** Request counts accumulated in plain numbers; published to the Counter on scrape. */
  private readonly pendingRequests = new Map<string, { network: string; qtype: number; rcode: number; n: number }>();
  /** Worker threads' gauge values, by worker, as last handed over. */
  private readonly workerGauges = new Map<number, { cacheEntries: number; forwardsInFlight: number }>();
  /** Set by the worker pool: fetches the workers' counts (merge()) before a scrape reads any DNS metric. */
  refresh: (() => Promise<void>) | undefined;
  private refreshing: Promise<void> | undefined;

  constructor(registry: Registry, sources: { cacheEntries?: () => number; forwardsInFlight?: () => number } = {}) {
    const registers = [registry];
    const pending = this.pendingRequests;
    // One refresh serves every DNS metric of one scrape (the registry collects them concurrently).
    const beforeCollect = (): Promise<void> => {
      if (!this.refresh) return Promise.resolve();
      this.refreshing ??= this.refresh().finally(() => setImmediate(() => (this.refreshing = undefined)));
      return this.refreshing;
    };
    const workerSum = (k: 'cacheEntries' | 'forwardsInFlight'): number => [...this.workerGauges.values()].reduce((a, g) => a + g[k], 0);
    this.requests = new Counter({
      name: 'shoal_dns_requests_total',
      help: 'DNS requests answered, by network of the asking client, query type and response code.',
      labelNames: ['network', 'qtype', 'rcode'],
      registers,
      async collect() {
        await beforeCollect();
        for (const e of pending.values()) {
          if (e.n > 0) this.inc({ network: e.network, qtype: qtypeName(e.qtype), rcode: rcodeName(e.rcode) }, e.n);
          e.n = 0;
        }
      },
    });
    this.duration = new FastHistogram({
      name: 'shoal_dns_request_duration_seconds',
      help: 'Time from receiving a DNS request to sending its response.',
      labelName: 'transport',
      buckets: DURATION_BUCKETS,
      registry,
      beforeGet: beforeCollect,
    });
    this.forwardRequests = new Counter({
      name: 'shoal_dns_forward_requests_total',
      help: 'Requests sent to upstream resolvers, by upstream and outcome (an rcode, timeout or error).',
      labelNames: ['upstream', 'rcode'],
      registers,
      collect: beforeCollect,
    });
    this.cacheHits = new Counter({ name: 'shoal_dns_cache_hits_total', help: 'Forwarded queries answered from the cache.', registers, collect: beforeCollect });
    this.cacheMisses = new Counter({ name: 'shoal_dns_cache_misses_total', help: 'Forwarded queries not found in the cache.', registers, collect: beforeCollect });
    const entries = sources.cacheEntries;
    this.cacheEntries = new Gauge({
      name: 'shoal_dns_cache_entries',
      help: 'Responses held in the forward cache (all threads).',
      registers,
      async collect() {
        await beforeCollect();
        this.set((entries?.() ?? 0) + workerSum('cacheEntries'));
      },
    });
    this.records = new Gauge({
      name: 'shoal_dns_records',
      help: 'Name-to-address records served, by network (names and aliases, and custom hosts).',
      labelNames: ['network'],
      registers,
    });
    this.malformed = new Counter({
      name: 'shoal_dns_malformed_requests_total',
      help: 'Packets dropped or answered FORMERR/NOTIMP because they were not a well-formed query.',
      labelNames: ['transport', 'reason'],
      registers,
      collect: beforeCollect,
    });
    const inflight = sources.forwardsInFlight;
    this.forwardsInFlight = new Gauge({
      name: 'shoal_dns_forward_in_flight',
      help: 'Forwarded queries waiting for an upstream (all threads).',
      registers,
      async collect() {
        await beforeCollect();
        this.set((inflight?.() ?? 0) + workerSum('forwardsInFlight'));
      },
    });
  }

  countMalformed(transport: string, reason: string): void {
    this.malformed.inc({ transport, reason });
  }

  countCache(hit: boolean): void {
    (hit ? this.cacheHits : this.cacheMisses).inc();
  }

  countForward(upstream: string, rcode: string): void {
    this.forwardRequests.inc({ upstream, rcode });
  }

  /** Adds a worker's counts; its gauges replace what that worker reported before. */
  merge(worker: number, d: CountsDelta): void {
    for (const [network, qtype, rcode, n] of d.requests) {
      const key = `${network}\0${qtypeName(qtype)}\0${rcode}`;
      const e = this.pendingRequests.get(key);
      if (e) e.n += n;
      else this.pendingRequests.set(key, { network, qtype, rcode, n });
    }
    for (const [transport, series] of d.durations) this.duration.merge(transport, series);
    for (const [transport, reason, n] of d.malformed) this.malformed.inc({ transport, reason }, n);
    for (const [upstream, rcode, n] of d.forwards) this.forwardRequests.inc({ upstream, rcode }, n);
    if (d.cacheHits) this.cacheHits.inc(d.cacheHits);
    if (d.cacheMisses) this.cacheMisses.inc(d.cacheMisses);
    this.workerGauges.set(worker, { cacheEntries: d.cacheEntries, forwardsInFlight: d.forwardsInFlight });
  }

  /** A worker that is gone holds no cache and no forwards. */
  forgetWorker(worker: number): void {
    this.workerGauges.delete(worker);
  }

  countRequest(network: string, qtype: number, rcode: number): void {
    const key = `${network}\0${qtypeName(qtype)}\0${rcode}`; // bounded: unknown types share 'other'
    const e = this.pendingRequests.get(key);
    if (e) e.n += 1;
    else this.pendingRequests.set(key, { network, qtype, rcode, n: 1 });
  }

  observeDuration(transport: string, seconds: number): void {
    this.duration.observe(transport, seconds);
  }

  /** Replaces the per-network record gauge (networks that went away are removed). */
  setRecords(counts: ReadonlyMap<string, number>): void {
    this.records.reset();
    for (const [network, n] of counts) this.records.set({ network }, n);
  }
}
