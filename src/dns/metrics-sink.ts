/**
 * What the engine and the forwarder count, as an interface with two implementations:
 * `DnsMetrics` (prom-client, on the thread that serves /metrics) and `CountsAccumulator` (plain
 * numbers in a worker thread). A worker hands its accumulated counts over as a `CountsDelta`
 * when the main thread asks (on every scrape), and the main thread adds them to its metrics, so
 * the exported counters are exact sums over all workers: nothing counted twice, nothing lost
 * except what a crashed worker had not yet handed over.
 */

export interface DnsMetricsSink {
  countRequest(network: string, qtype: number, rcode: number): void;
  observeDuration(transport: string, seconds: number): void;
  countMalformed(transport: string, reason: string): void;
  countCache(hit: boolean): void;
  countForward(upstream: string, rcode: string): void;
}

/** One histogram series: per-bucket (non-cumulative) counts, sum, count. */
export interface HistogramSeries {
  counts: number[];
  sum: number;
  count: number;
}

/** Counts since the last hand-over, plus the worker's gauges (absolute values). */
export interface CountsDelta {
  requests: [network: string, qtype: number, rcode: number, n: number][];
  durations: [transport: string, series: HistogramSeries][];
  malformed: [transport: string, reason: string, n: number][];
  cacheHits: number;
  cacheMisses: number;
  forwards: [upstream: string, rcode: string, n: number][];
  cacheEntries: number;
  forwardsInFlight: number;
  /** Requests answered since the last hand-over (all transports), for tests and logs. */
  answered: number;
}

export const DURATION_BUCKETS: readonly number[] = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** Adds one observation to a series over `buckets` (sorted ascending). */
export function observeInto(s: HistogramSeries, buckets: readonly number[], value: number): void {
  for (let i = 0; i < buckets.length; i += 1) {
    if (value <= (buckets[i] as number)) {
      (s.counts[i] as number) += 1;
      break;
    }
  }
  s.sum += value;
  s.count += 1;
}

export class CountsAccumulator implements DnsMetricsSink {
  private requests = new Map<string, [string, number, number, number]>();
  private durations = new Map<string, HistogramSeries>();
  private malformed = new Map<string, [string, string, number]>();
  private forwards = new Map<string, [string, string, number]>();
  private hits = 0;
  private misses = 0;
  private answered = 0;

  countRequest(network: string, qtype: number, rcode: number): void {
    const key = `${network}\0${qtype}\0${rcode}`;
    const e = this.requests.get(key);
    if (e) e[3] += 1;
    else this.requests.set(key, [network, qtype, rcode, 1]);
    this.answered += 1;
  }

  observeDuration(transport: string, seconds: number): void {
    let s = this.durations.get(transport);
    if (!s) this.durations.set(transport, (s = { counts: DURATION_BUCKETS.map(() => 0), sum: 0, count: 0 }));
    observeInto(s, DURATION_BUCKETS, seconds);
  }

  countMalformed(transport: string, reason: string): void {
    const key = `${transport}\0${reason}`;
    const e = this.malformed.get(key);
    if (e) e[2] += 1;
    else this.malformed.set(key, [transport, reason, 1]);
  }

  countCache(hit: boolean): void {
    if (hit) this.hits += 1;
    else this.misses += 1;
  }

  countForward(upstream: string, rcode: string): void {
    const key = `${upstream}\0${rcode}`;
    const e = this.forwards.get(key);
    if (e) e[2] += 1;
    else this.forwards.set(key, [upstream, rcode, 1]);
  }

  /** Everything counted since the last call; the accumulator starts again from zero. */
  take(gauges: { cacheEntries: number; forwardsInFlight: number }): CountsDelta {
    const delta: CountsDelta = {
      requests: [...this.requests.values()],
      durations: [...this.durations],
      malformed: [...this.malformed.values()],
      cacheHits: this.hits,
      cacheMisses: this.misses,
      forwards: [...this.forwards.values()],
      answered: this.answered,
      ...gauges,
    };
    this.requests = new Map();
    this.durations = new Map();
    this.malformed = new Map();
    this.forwards = new Map();
    this.hits = 0;
    this.misses = 0;
    this.answered = 0;
    return delta;
  }
}
