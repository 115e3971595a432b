/**
 * One query in, one response out (or nothing, for packets not worth an answer). Parses with
 * the hand-written wire reader, scopes by the source address on the current snapshot, runs the
 * handler chain, and encodes. Local answers come back synchronously (no promise on the hot
 * path); forwarded ones as a promise. Never throws: a handler error becomes SERVFAIL and one
 * log event.
 */
import type { Logger } from 'pino';
import type { HandlerChain, QueryContext } from './chain.js';
import type { DnsMetricsSink } from './metrics-sink.js';
import type { RecordSnapshot, Scope } from './snapshot.js';
import { QTYPE, RCODE, type HandlerResult } from './types.js';
import { adaptRawResponse, buildHeaderOnly, lowerQuestion, buildResponse, isParseFailure, parseQuery, udpLimit, type ParsedQuery } from './wire.js';

export type Transport = 'udp' | 'tcp';

export interface EngineOptions {
  chain: HandlerChain;
  snapshot: () => RecordSnapshot;
  metrics?: DnsMetricsSink;
  logger?: Logger;
  /** Largest UDP answer regardless of what the client advertises (default 4096). */
  maxUdpSize?: number;
}

const TCP_LIMIT = 65535;

/** The handlers' view of one query; the lower-cased question bytes are built only if asked. */
class Context implements QueryContext {
  readonly question;
  readonly dnssecOk: boolean;
  private bytes: Buffer | undefined;

  constructor(
    private readonly parsed: ParsedQuery,
    private readonly msg: Buffer,
    readonly scope: Scope,
    readonly snapshot: RecordSnapshot,
  ) {
    this.question = parsed.question;
    this.dnssecOk = parsed.edns?.dnssecOk ?? false;
  }

  get questionBytes(): Buffer {
    this.bytes ??= lowerQuestion(this.msg, this.parsed.questionEnd);
    return this.bytes;
  }
}

export class DnsEngine {
  private readonly opts: EngineOptions;
  /** Where the next multi-address answer starts (rotated). */
  private rotation = 0;

  constructor(options: EngineOptions) {
    this.opts = options;
  }

  handle(msg: Buffer, source: string, transport: Transport): Buffer | Promise<Buffer | undefined> | undefined {
    const started = performance.now();
    const parsed = parseQuery(msg);
    if (isParseFailure(parsed)) {
      this.opts.metrics?.countMalformed(transport, parsed.fail);
      if (parsed.fail === 'drop') return undefined;
      return buildHeaderOnly(msg, parsed.fail === 'notimp' ? RCODE.NOTIMP : RCODE.FORMERR);
    }
    const snapshot = this.opts.snapshot();
    const scope = snapshot.scopeFor(source);
    // Only clients inside a Shoal network are served: anyone else who can route to a gateway
    // would otherwise have an open resolver (forwarding included). REFUSED, not silence, so a
    // misconfigured client learns why; the answer is no larger than the query (no amplification).
    // Counted in shoal_dns_requests_total{network="none",rcode="REFUSED"}.
    if (scope.networks.length === 0) {
      return this.finish(parsed, msg, { kind: 'rcode', rcode: RCODE.REFUSED, network: 'none' }, udpLimit(parsed, this.opts.maxUdpSize ?? 4096), transport, started);
    }
    const ctx = new Context(parsed, msg, scope, snapshot);
    const limit = transport === 'tcp' ? TCP_LIMIT : udpLimit(parsed, this.opts.maxUdpSize ?? 4096);
    let result;
    try {
      result = this.opts.chain.resolve(ctx);
    } catch (err) {
      return this.failure(parsed, msg, err, limit, transport, started);
    }
    if (result instanceof Promise) {
      // The caller may reuse msg's memory once handle returns (the batched UDP path does).
      const own = Buffer.from(msg);
      return result.then(
        (r) => this.finish(parsed, own, r, limit, transport, started),
        (err: unknown) => this.failure(parsed, own, err, limit, transport, started),
      );
    }
    return this.finish(parsed, msg, result, limit, transport, started);
  }

  private finish(q: ParsedQuery, msg: Buffer, r: HandlerResult, limit: number, transport: Transport, started: number): Buffer {
    let out: Buffer;
    if (r.kind === 'local') out = buildResponse(q, msg, r.rcode, this.rotated(q.question.type, r.records), limit, true);
    else if (r.kind === 'raw') out = adaptRawResponse(q, msg, r.message, r.optStart, limit);
    else out = buildResponse(q, msg, r.rcode, [], limit, false);
    const m = this.opts.metrics;
    if (m) {
      m.countRequest(r.network, q.question.type, out.readUInt16BE(2) & 0xf);
      m.observeDuration(transport, (performance.now() - started) / 1000);
    }
    return out;
  }

  /**
   * A name with several addresses answers them in a different order each time (cyclic, BIND's
   * `rrset-order cyclic`; Docker's resolver shuffles them). The records are kept in address
   * order and answers are memoized, so without this every client would take the same first
   * address: a dnsrr service's lowest replica would get the connections of every client that
   * uses the first answer (most do).
   */
  private rotated(qtype: number, records: Buffer[]): Buffer[] {
    if (records.length < 2 || (qtype !== QTYPE.A && qtype !== QTYPE.AAAA)) return records;
    // Each record starts with a 2-byte name pointer, then its type: a CNAME chain stays as is.
    if (!records.every((rr) => rr.length > 4 && rr.readUInt16BE(2) === qtype)) return records;
    const k = this.rotation++ % records.length;
    return k === 0 ? records : [...records.slice(k), ...records.slice(0, k)];
  }

  private failure(q: ParsedQuery, msg: Buffer, err: unknown, limit: number, transport: Transport, started: number): Buffer {
    this.opts.logger?.error({ event: 'dns_query_error', name: q.question.name, qtype: q.question.type, err }, 'DNS query failed');
    return this.finish(q, msg, { kind: 'rcode', rcode: RCODE.SERVFAIL, network: 'none' }, limit, transport, started);
  }
}
