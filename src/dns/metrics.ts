/**
 * The DNS server's metrics, declared on the registry the daemon injects (DESIGN §4.8), named
 * like CoreDNS's. Labelled children are memoized: prom-client's label hashing is measurable on
 * the hot path, a Map lookup by a joined key is not.
 */
import { Counter, Gauge, type Registry } from 'prom-client';

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
  private readonly series = new Map<string, { counts: Float64Array; sum: number; count: number }>();

  constructor(opts: { name: string; help: string; labelName: string; buckets: number[]; registry: Registry }) {
    this.name = opts.name;
    this.help = opts.help;
    this.labelName = opts.labelName;
    this.buckets = [...opts.buckets].sort((a, b) => a - b);
    opts.registry.registerMetric(this as never);
  }

  observe(label: string, value: number): void {
    let s = this.series.get(label);
    if (!s) this.series.set(label, (s = { counts: new Float64Array(this.buckets.length), sum: 0, count: 0 }));
    const b = this.buckets;
    for (let i = 0; i < b.length; i += 1) {
      if (value <= (b[i] as number)) {
        (s.counts[i] as number) += 1;
        break;
      }
    }
    s.sum += value;
    s.count += 1;
  }

  get(): { name: string; help: string; type: string; aggregator: string; values: { labels: Record<string, string | number>; value: number; metricName: string }[] } {
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

export class DnsMetrics {
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

  constructor(registry: Registry, sources: { cacheEntries?: () => number; forwardsInFlight?: () => number } = {}) {
    const registers = [registry];
    const pending = this.pendingRequests;
    this.requests = new Counter({
      name: 'shoal_dns_requests_total',
      help: 'DNS requests answered, by network of the asking client, query type and response code.',
      labelNames: ['network', 'qtype', 'rcode'],
      registers,
      collect() {
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
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registry,
    });
    this.forwardRequests = new Counter({
      name: 'shoal_dns_forward_requests_total',
      help: 'Requests sent to upstream resolvers, by upstream and outcome (an rcode, timeout or error).',
      labelNames: ['upstream', 'rcode'],
      registers,
    });
    this.cacheHits = new Counter({ name: 'shoal_dns_cache_hits_total', help: 'Forwarded queries answered from the cache.', registers });
    this.cacheMisses = new Counter({ name: 'shoal_dns_cache_misses_total', help: 'Forwarded queries not found in the cache.', registers });
    const entries = sources.cacheEntries;
    this.cacheEntries = new Gauge({
      name: 'shoal_dns_cache_entries',
      help: 'Responses held in the forward cache.',
      registers,
      collect() {
        if (entries) this.set(entries());
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
    });
    const inflight = sources.forwardsInFlight;
    this.forwardsInFlight = new Gauge({
      name: 'shoal_dns_forward_in_flight',
      help: 'Forwarded queries waiting for an upstream.',
      registers,
      collect() {
        if (inflight) this.set(inflight());
      },
    });
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
