/**
 * Forwarding to upstream resolvers (CoreDNS `forward`, reduced): a cache in front, identical
 * concurrent questions coalesced into one upstream query, a cap on concurrent upstream queries
 * (REFUSED past it), per-attempt timeout, failover to the next upstream on timeout, error,
 * SERVFAIL or REFUSED, and a TCP retry when a UDP answer comes back truncated. Upstreams that
 * just failed are tried last for a short while.
 */
import { randomInt } from 'node:crypto';
import type { Logger } from 'pino';
import type { ResponseCache } from './cache.js';
import type { DnsMetricsSink } from './metrics-sink.js';
import { LogInterval } from './log-interval.js';
import { rcodeName } from './metrics.js';
import { scanResponse } from './scan.js';
import { parseUpstream, type Upstream, type UpstreamTransport } from './upstream.js';
import { RCODE, type Question, type RawResult, type RcodeResult } from './types.js';
import { ADVERTISED_UDP_SIZE, FLAG_RD } from './wire.js';

export interface ForwarderOptions {
  transport: UpstreamTransport;
  cache: ResponseCache;
  /** Upstreams when the network has none of its own (the host's resolv.conf). */
  defaultUpstreams: () => readonly string[];
  /** Per attempt, milliseconds (default 2000). */
  timeoutMs?: number;
  /**
   * Upstream queries in flight at most; more are answered REFUSED (default 150, dnsmasq's
   * dns-forward-max). Each waits up to the timeout for an upstream that may never answer, and
   * all that time it is live memory the worker's GC copies: at 1024, a flood of foreign names
   * doubled the worker's GC time (torture dns).
   */
  maxConcurrent?: number;
  /** How long a failed upstream is tried last, milliseconds (default 5000). */
  failureHoldMs?: number;
  metrics?: DnsMetricsSink;
  logger?: Logger;
  now?: () => number;
}

export type ForwardResult = RawResult | RcodeResult;

export class Forwarder {
  private readonly opts: ForwarderOptions;
  private readonly pending = new Map<string, Promise<ForwardResult>>();
  private readonly downUntil = new Map<string, number>();
  private readonly parsed = new Map<string, Upstream | null>();
  private active = 0;

  constructor(options: ForwarderOptions) {
    this.opts = options;
  }

  get inFlight(): number {
    return this.active;
  }

  /**
   * Forgets cached upstream answers for these names (lower case, no trailing dot): they became
   * local records or stopped being ones, and an upstream's old NXDOMAIN has no say on them.
   */
  forget(names: ReadonlySet<string>): number {
    if (names.size === 0 || this.opts.cache.size === 0) return 0;
    return this.opts.cache.deleteWhere((key) => names.has(key.slice(0, key.indexOf('\x01'))));
  }

  private readonly logs = new LogInterval();

  /** A cached answer comes back synchronously (no promise on the warm-cache path), the rest as a promise. */
  forward(questionBytes: Buffer, q: Question, dnssecOk: boolean, own: readonly string[] | undefined, network: string): ForwardResult | Promise<ForwardResult> {
    const key = `${q.name}\x01${q.type}\x01${q.class}\x01${dnssecOk ? 1 : 0}\x01${questionBytes.toString('latin1')}`;
    const cached = this.opts.cache.get(key);
    if (cached) {
      this.opts.metrics?.countCache(true);
      return { kind: 'raw', rcode: cached.rcode, message: cached.message, optStart: cached.optStart, network };
    }
    this.opts.metrics?.countCache(false);
    const same = this.pending.get(key);
    if (same) return same.then((r) => ({ ...r, network }));
    const max = this.opts.maxConcurrent ?? 150;
    if (this.active >= max) {
      // Synchronous, so the REFUSED leaves in the batch's sendmmsg like a local answer.
      const refused = this.logs.due('refused');
      if (refused) this.opts.logger?.warn({ event: 'dns_forward_refused', name: q.name, limit: max, refused }, 'too many concurrent forwards, answering REFUSED');
      return { kind: 'rcode', rcode: RCODE.REFUSED, network };
    }
    const upstreams = this.upstreams(own);
    const run = this.exchange(buildUpstreamQuery(questionBytes, dnssecOk), upstreams, q).then((r) => {
      if (r.kind === 'raw') this.opts.cache.set(key, r.message);
      return { ...r, network };
    });
    this.active += 1;
    this.pending.set(key, run);
    const done = (): void => {
      this.active -= 1;
      this.pending.delete(key);
    };
    run.then(done, done);
    return run;
  }

  private upstreams(own: readonly string[] | undefined): Upstream[] {
    const list = own && own.length ? own : this.opts.defaultUpstreams();
    const out: Upstream[] = [];
    for (const text of list) {
      let u = this.parsed.get(text);
      if (u === undefined) {
        u = parseUpstream(text) ?? null;
        if (this.parsed.size > 1000) this.parsed.clear();
        this.parsed.set(text, u);
      }
      if (u) out.push(u);
    }
    const now = (this.opts.now ?? Date.now)();
    const healthy = out.filter((u) => (this.downUntil.get(u.label) ?? 0) <= now);
    return healthy.length === out.length ? out : [...healthy, ...out.filter((u) => !healthy.includes(u))];
  }

  private async exchange(query: Buffer, upstreams: Upstream[], q: Question): Promise<ForwardResult> {
    const timeout = this.opts.timeoutMs ?? 2000;
    let fallback: ForwardResult | undefined;
    for (const up of upstreams) {
      try {
        let reply = await this.opts.transport.exchange(up, query, 'udp', timeout);
        let scan = scanResponse(reply);
        if (scan?.truncated) {
          reply = await this.opts.transport.exchange(up, query, 'tcp', timeout);
          scan = scanResponse(reply);
        }
        if (!scan) throw new Error('unparseable answer');
        this.opts.metrics?.countForward(up.label, rcodeName(scan.rcode));
        const result: RawResult = { kind: 'raw', rcode: scan.rcode, message: reply, network: '' };
        if (scan.optStart !== undefined) result.optStart = scan.optStart;
        if (scan.rcode === RCODE.SERVFAIL || scan.rcode === RCODE.REFUSED) {
          this.markDown(up);
          const count = this.logs.due(`${up.label} ${scan.rcode}`);
          if (count) this.opts.logger?.warn({ event: 'dns_upstream_failure', upstream: up.label, name: q.name, rcode: rcodeName(scan.rcode), count }, 'upstream answered with an error');
          fallback ??= result;
          continue;
        }
        this.downUntil.delete(up.label);
        return result;
      } catch (err) {
        const timedOut = (err as { code?: string }).code === 'DNS_UPSTREAM_TIMEOUT';
        this.opts.metrics?.countForward(up.label, timedOut ? 'timeout' : 'error');
        const count = this.logs.due(`${up.label} ${timedOut ? 'timeout' : 'error'}`);
        if (count) this.opts.logger?.warn({ event: 'dns_upstream_failure', upstream: up.label, name: q.name, error: (err as Error).message, count }, 'upstream query failed');
        this.markDown(up);
      }
    }
    if (upstreams.length === 0) {
      const count = this.logs.due('no upstream');
      if (count) this.opts.logger?.warn({ event: 'dns_no_upstream', name: q.name, count }, 'no upstream resolver configured');
    }
    return fallback ?? { kind: 'rcode', rcode: RCODE.SERVFAIL, network: '' };
  }

  private markDown(up: Upstream): void {
    this.downUntil.set(up.label, (this.opts.now ?? Date.now)() + (this.opts.failureHoldMs ?? 5000));
  }
}

/** Header (random id, RD) + the lower-cased question + an OPT advertising 1232 bytes. */
export function buildUpstreamQuery(questionBytes: Buffer, dnssecOk: boolean): Buffer {
  const buf = Buffer.alloc(12 + questionBytes.length + 11);
  buf.writeUInt16BE(randomInt(0, 0x10000), 0);
  buf.writeUInt16BE(FLAG_RD, 2);
  buf.writeUInt16BE(1, 4);
  buf.writeUInt16BE(1, 10);
  questionBytes.copy(buf, 12);
  const o = 12 + questionBytes.length;
  buf.writeUInt16BE(41, o + 1);
  buf.writeUInt16BE(ADVERTISED_UDP_SIZE, o + 3);
  buf.writeUInt16BE(dnssecOk ? 0x8000 : 0, o + 7);
  return buf;
}
