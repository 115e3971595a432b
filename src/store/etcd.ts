/**
 * The cluster store: `Store` over etcd 3 (DESIGN.md §4.5, §7). Used by the daemon only (§4.12:
 * plugins read the local store; the daemon holds the etcd session), so nothing on a CNI plugin's
 * path may import this file (scripts/build.mjs fails the build if one does).
 *
 * - Keys live under a prefix (`/shoal/v1/` by default); callers see them without it.
 * - Revisions are etcd's: the cluster-wide revision, and each key's create/mod revision.
 * - `transaction` is optimistic: reads come from one snapshot (the revision of the attempt's
 *   first read), writes are buffered, and the commit is a single etcd Txn that compares every
 *   key read (its mod revision, 0 for "absent") and every range listed (no key in it modified
 *   after the snapshot). A failed compare means another writer got in between: the attempt is
 *   thrown away and `fn` runs again, at most `maxTxnAttempts` times, then `StoreConflictError`.
 *   Within one process transactions are queued (as SqliteStore does), so conflicts come only
 *   from other processes. etcd's `--max-txn-ops` (128) bounds one commit: see `commitRequest`.
 * - Every request is bounded by `requestTimeoutMs` (etcd3's retries across endpoints included);
 *   past it the caller gets `StoreUnavailableError` naming the endpoints, never a hang.
 * - `watch` is an etcd watch on the prefix (no polling); etcd3 resumes it after a reconnect
 *   from the last revision seen.
 * - Leases (`LeaseBackend`, for src/cluster/lease.ts): grant, one keep-alive, time-to-live,
 *   revoke, and puts attached to a lease.
 */
import { ConsecutiveBreaker, ExponentialBackoff, circuitBreaker, handleWhen, isBrokenCircuitError, retry, type IBackoff } from 'cockatiel';
import {
  CompareResult,
  CompareTarget,
  Etcd3,
  EtcdLeaseInvalidError,
  GRPCUnavailableError,
  isRecoverableError,
  type ICompare,
  type IRangeRequest,
  type IRangeResponse,
  type IRequestOp,
  type IWatchResponse,
  type Watcher,
} from 'etcd3';
import type { Registry } from 'prom-client';
import { ShoalError, causeText } from '../errors.js';
import { StoreConflictError, StoreError, StoreLeaseNotFoundError, StoreUnavailableError } from './errors.js';
import type { CasExpectation, KeyValue, ListOptions, Store, Txn } from './store.js';
import { storeMetrics, type StoreMetrics } from './etcd-metrics.js';
import { listRange, prefixRangeEnd, tooManyWrites, toKeyValue, TxnAttempt } from './etcd-txn.js';


export const ETCD_KEY_PREFIX = '/shoal/v1/';
const DEFAULT_REQUEST_TIMEOUT_MS = 5000;
const DEFAULT_MAX_TXN_ATTEMPTS = 16;
/** etcd's default `--max-txn-ops`: compares (and ops) per Txn level. */
const DEFAULT_MAX_TXN_OPS = 128;

export interface EtcdStoreOptions {
  /** `host:port` (or `http://host:port`) of the members; `parseEtcdUrl` makes them from `etcd://...`. */
  endpoints: readonly string[];
  /** Key prefix; default `/shoal/v1/`. */
  prefix?: string;
  /** Upper bound for any one request, retries included (default 5000 ms). */
  requestTimeoutMs?: number;
  /** How often `transaction` runs `fn` before giving up with StoreConflictError (default 16). */
  maxTxnAttempts?: number;
  /** The cluster's `--max-txn-ops` (default 128, etcd's default): the most writes (and compares) one commit holds. */
  maxTxnOps?: number;
  /** Registry for shoal_store_requests_total and shoal_store_watch_lag_seconds. */
  registry?: Registry;
}

export interface EtcdWatchOptions {
  /** Ignored (etcd pushes changes); accepted so EtcdStore fits `Store.watch`. */
  intervalMs?: number;
  /** Deliver changes from this revision on (default: the revision after the current one). */
  startRevision?: number;
  /** Called when the watch cannot be (re)established; it keeps retrying until stopped. */
  onError?: (err: Error) => void;
}

/** What `watch` returns: the stop function, and `ready`, resolved once etcd has created the watch. */
export type WatchHandle = (() => void) & { ready: Promise<number> };

/** The lease primitives src/cluster/lease.ts builds on (EtcdStore implements them; tests fake them). */
export interface LeaseBackend {
  /** A name for messages (the endpoints). */
  readonly name: string;
  leaseGrant(ttlSeconds: number): Promise<{ id: string; ttlSeconds: number }>;
  /** One keep-alive; resolves to the TTL etcd granted again (0: the lease is gone). */
  leaseKeepAlive(id: string, timeoutMs: number): Promise<number>;
  /** The lease's remaining TTL as etcd reports it (-1: the lease is gone). */
  leaseTimeToLive(id: string, timeoutMs: number): Promise<number>;
  /** Revokes the lease (its keys go); a lease already gone is not an error. */
  leaseRevoke(id: string): Promise<void>;
  /** Puts every entry attached to the lease, in one commit; StoreLeaseNotFoundError if it is gone. */
  putLeased(entries: ReadonlyArray<readonly [string, string]>, id: string): Promise<void>;
  delete(key: string): Promise<boolean>;
}

// ---- the store ----------------------------------------------------------------------------------

type Result = 'ok' | 'error' | 'unavailable' | 'conflict';


/**
 * Errors that prove a request never reached etcd, or was refused before it was proposed: no
 * connection to that member, an open circuit, or a member without a leader. Safe to send again.
 */
export function neverSent(err: Error): boolean {
  if (isBrokenCircuitError(err)) return true;
  return err instanceof GRPCUnavailableError && /No connection established|ECONNREFUSED|etcdserver: no leader/.test(err.message);
}


const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class EtcdStore implements Store, LeaseBackend {
  readonly endpoints: readonly string[];
  readonly prefix: string;
  /** `etcd://a:2379,b:2379` — how messages name this store. */
  readonly name: string;
  readonly requestTimeoutMs: number;
  private readonly maxTxnAttempts: number;
  private readonly maxTxnOps: number;
  private readonly client: Etcd3;
  private readonly commitClient: Etcd3;
  private readonly metrics: StoreMetrics;
  private txnQueue: Promise<unknown> = Promise.resolve();
  private closed = false;
  private readonly watchers = new Set<() => void>();
  /** Revisions of this process's own commits not yet seen by a watch, with their commit time. */
  private readonly ownWrites = new Map<number, number>();

  constructor(options: EtcdStoreOptions) {
    if (options.endpoints.length === 0) throw new StoreError('open', 'etcd://', 'no endpoints');
    this.endpoints = options.endpoints.map((e) => e.replace(/^https?:\/\//, ''));
    this.name = `etcd://${this.endpoints.join(',')}`;
    this.prefix = options.prefix ?? ETCD_KEY_PREFIX;
    this.requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.maxTxnAttempts = options.maxTxnAttempts ?? DEFAULT_MAX_TXN_ATTEMPTS;
    this.maxTxnOps = options.maxTxnOps ?? DEFAULT_MAX_TXN_OPS;
    this.metrics = storeMetrics(options.registry);
    // One attempt may take part of the budget, so a member that swallows packets leaves time to
    // retry on another; the overall bound is `request` below.
    const attemptMs = Math.max(250, Math.floor(this.requestTimeoutMs / 2));
    const connect = (resend: (err: Error) => boolean): Etcd3 =>
      new Etcd3({
        hosts: this.endpoints.map((e) => `http://${e}`),
        dialTimeout: this.requestTimeoutMs,
        defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + attemptMs }),
        grpcOptions: {
          // Notice a dead connection (a cut that drops packets keeps TCP ESTABLISHED) within ~13 s
          // even on a stream that is only waiting; etcd refuses pings more often than every 5 s.
          'grpc.keepalive_time_ms': 10_000,
          'grpc.keepalive_timeout_ms': 3000,
          'grpc.initial_reconnect_backoff_ms': 200,
          'grpc.max_reconnect_backoff_ms': 2000,
        },
        faultHandling: {
          // A member that failed 3 times in a row is skipped for a second, then tried again.
          host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 1000, breaker: new ConsecutiveBreaker(3) }),
          // Each retry picks another member.
          global: retry(handleWhen(resend), { maxAttempts: Math.max(2, this.endpoints.length) }),
          // etcd3 calls next() on this itself (its own default is an ExponentialBackoff too); its
          // type names the product of next() instead.
          watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 2000 }) as unknown as IBackoff<unknown>,
        },
      });
    this.client = connect(isRecoverableError);
    // Commits (Txn, compare-and-swap) are not idempotent: one that timed out may have been applied,
    // and sent again it would fail its compares and look like a conflict (and a re-run transaction
    // would apply twice). They go again only when they were never sent.
    this.commitClient = connect(neverSent);
  }

  /** Opens a store and checks that the cluster answers (StoreUnavailableError otherwise). */
  static async connect(options: EtcdStoreOptions): Promise<EtcdStore> {
    const store = new EtcdStore(options);
    try {
      await store.revision();
      return store;
    } catch (err) {
      store.close();
      throw err;
    }
  }

  private full(key: string): Buffer {
    return Buffer.from(this.prefix + key);
  }

  private tally(op: string, result: Result): void {
    this.metrics.requests.inc({ op, result });
  }

  /** Maps what etcd3 / gRPC threw onto Shoal's store errors. */
  private mapError(verb: string, err: unknown): Error {
    if (err instanceof ShoalError) return err;
    if (err instanceof EtcdLeaseInvalidError) return new StoreLeaseNotFoundError(this.name, err);
    if (err instanceof Error && (isRecoverableError(err) || isBrokenCircuitError(err) || err.name === 'GRPCConnectFailedError')) {
      // gRPC appends an empty "Resolution note: " to connection errors.
      return new StoreUnavailableError(verb, this.endpoints, causeText(err).replace(/\s*Resolution note:\s*$/, ''), err);
    }
    return new StoreError(verb, this.name, err);
  }

  /**
   * Runs one etcd request under the overall deadline: whatever etcd3's retries do, the caller
   * hears back within `timeoutMs`.
   */
  private async request<T>(op: string, verb: string, fn: () => Promise<T>, timeoutMs = this.requestTimeoutMs): Promise<T> {
    if (this.closed) throw new StoreError(verb, this.name, 'the store is closed');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new StoreUnavailableError(verb, this.endpoints, `no answer within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      const result = await Promise.race([fn(), timeout]);
      this.tally(op, 'ok');
      return result;
    } catch (err) {
      const mapped = this.mapError(verb, err);
      this.tally(op, mapped instanceof StoreUnavailableError ? 'unavailable' : 'error');
      throw mapped;
    } finally {
      clearTimeout(timer);
    }
  }

  /** `request` for a commit: a failure that may have come after etcd applied it says so. */
  private async commit<T>(op: string, verb: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await this.request(op, verb, fn);
    } catch (err) {
      const cause = (err as { cause?: unknown }).cause;
      if (err instanceof StoreUnavailableError && !(cause instanceof Error && neverSent(cause))) {
        throw new StoreUnavailableError(verb, this.endpoints, `${err.detail}; the outcome is unknown (it may have been applied)`, cause ?? err);
      }
      throw err;
    }
  }

  private range(op: string, req: IRangeRequest): Promise<IRangeResponse> {
    return this.request(op, 'read from', () => this.client.kv.range(req));
  }

  // ---- Store ---------------------------------------------------------------------------------

  async get(key: string): Promise<KeyValue | undefined> {
    const res = await this.range('get', { key: this.full(key) });
    const kv = res.kvs[0];
    return kv && toKeyValue(kv, this.prefix);
  }

  async list(prefix: string, options: ListOptions = {}): Promise<KeyValue[]> {
    const r = listRange(this.prefix, prefix, options);
    if (!r) return [];
    const res = await this.range('list', { key: r.start, range_end: r.end, limit: options.limit ?? 0, min_mod_revision: options.minModRevision ?? 0, keys_only: options.keysOnly ?? false });
    return res.kvs.map((kv) => toKeyValue(kv, this.prefix));
  }

  async count(prefix: string, options: Omit<ListOptions, 'limit'> = {}): Promise<number> {
    const r = listRange(this.prefix, prefix, options);
    if (!r) return 0;
    const res = await this.range('count', { key: r.start, range_end: r.end, count_only: true });
    return Number(res.count);
  }

  async put(key: string, value: string): Promise<void> {
    const res = await this.request('put', 'write to', () => this.client.kv.put({ key: this.full(key), value: Buffer.from(value) }));
    this.noteOwnWrite(Number(res.header.revision));
  }

  async delete(key: string): Promise<boolean> {
    const res = await this.request('delete', 'delete from', () => this.client.kv.deleteRange({ key: this.full(key) }));
    const deleted = Number(res.deleted) > 0;
    if (deleted) this.noteOwnWrite(Number(res.header.revision));
    return deleted;
  }

  async compareAndSwap(key: string, expect: CasExpectation, value: string): Promise<boolean> {
    // etcd revisions start at 1: no key has mod revision 0 or less (and a missing key compares as 0).
    if ('modRevision' in expect && expect.modRevision <= 0) return false;
    const k = this.full(key);
    const compare: ICompare =
      'absent' in expect
        ? { key: k, target: CompareTarget.Create, result: CompareResult.Equal, create_revision: 0 }
        : 'modRevision' in expect
          ? { key: k, target: CompareTarget.Mod, result: CompareResult.Equal, mod_revision: expect.modRevision }
          : { key: k, target: CompareTarget.Value, result: CompareResult.Equal, value: Buffer.from(expect.value) };
    const res = await this.commit('cas', 'write to', () =>
      this.commitClient.kv.txn({ compare: [compare], success: [{ request_put: { key: k, value: Buffer.from(value) } }], failure: [] }),
    );
    if (res.succeeded) this.noteOwnWrite(Number(res.header.revision));
    return res.succeeded;
  }

  async revision(): Promise<number> {
    const res = await this.range('revision', { key: Buffer.from(this.prefix), count_only: true });
    return Number(res.header.revision);
  }

  transaction<T>(fn: (txn: Txn) => Promise<T>): Promise<T> {
    const run = this.txnQueue.then(
      () => this.runTransaction(fn),
      () => this.runTransaction(fn),
    );
    this.txnQueue = run.catch(() => undefined);
    return run;
  }

  private async runTransaction<T>(fn: (txn: Txn) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const txn = new TxnAttempt(this.prefix, (req) => this.range('txn_read', req));
      const result = await fn(txn);
      const commit = txn.commitRequest(this.maxTxnOps, this.name);
      if (!commit) {
        this.tally('txn', 'ok');
        return result;
      }
      const res = await this.commit('txn_commit', 'commit a transaction on', () => this.commitClient.kv.txn(commit));
      if (res.succeeded) {
        this.tally('txn', 'ok');
        this.noteOwnWrite(Number(res.header.revision));
        return result;
      }
      this.tally('txn', 'conflict');
      if (attempt >= this.maxTxnAttempts) {
        this.tally('txn', 'error');
        throw new StoreConflictError(this.name, attempt);
      }
      // Jittered backoff, growing: 1-2 ms, 2-4 ms, ... capped at 50-100 ms.
      const base = Math.min(50, 2 ** (attempt - 1));
      await sleep(base + Math.random() * base);
    }
  }

  watch(onChange: (revision: number) => void, options: EtcdWatchOptions = {}): WatchHandle {
    let stopped = false;
    let watcher: Watcher | undefined;
    let resolveReady!: (revision: number) => void;
    const ready = new Promise<number>((resolve) => (resolveReady = resolve));
    const range = { start: Buffer.from(this.prefix), end: prefixRangeEnd(Buffer.from(this.prefix)) };

    const deliver = (res: IWatchResponse): void => {
      if (res.events.length === 0) return; // progress notification
      let revision = 0;
      for (const e of res.events) revision = Math.max(revision, Number(e.kv.mod_revision));
      this.sawRevision(revision);
      onChange(revision);
    };

    const establish = async (from: number | undefined): Promise<void> => {
      for (let delay = 100; !stopped; delay = Math.min(delay * 2, 2000)) {
        try {
          const start = from ?? (await this.revision()) + 1;
          const w = await this.client.watch().inRange(range).startRevision(String(start)).create();
          if (stopped) {
            await w.cancel().catch(() => undefined);
            return;
          }
          watcher = w;
          w.on('data', deliver);
          // Canceled by etcd (e.g. its start revision was compacted): start over from now, and
          // report the new revision, since changes in between may be lost: the caller reloads.
          w.on('error', (err) => {
            options.onError?.(err);
            if (stopped || watcher !== w) return;
            watcher = undefined;
            void w.cancel().catch(() => undefined);
            void establish(undefined).then(() => this.revision().then(onChange, () => undefined));
          });
          resolveReady(start);
          return;
        } catch (err) {
          options.onError?.(err instanceof Error ? err : new Error(String(err)));
          await sleep(delay);
        }
      }
    };
    void establish(options.startRevision);

    const stop = (): void => {
      if (stopped) return;
      stopped = true;
      this.watchers.delete(stop);
      void watcher?.cancel().catch(() => undefined);
      watcher = undefined;
    };
    this.watchers.add(stop);
    return Object.assign(stop, { ready });
  }

  private noteOwnWrite(revision: number): void {
    if (this.watchers.size === 0) return;
    if (this.ownWrites.size >= 1000) this.ownWrites.clear();
    this.ownWrites.set(revision, performance.now());
  }

  private sawRevision(revision: number): void {
    const now = performance.now();
    for (const [rev, at] of this.ownWrites) {
      if (rev > revision) continue;
      this.metrics.watchLag.observe((now - at) / 1000);
      this.ownWrites.delete(rev);
    }
  }

  // ---- LeaseBackend --------------------------------------------------------------------------

  async leaseGrant(ttlSeconds: number): Promise<{ id: string; ttlSeconds: number }> {
    const res = await this.request('lease_grant', 'grant a lease on', () => this.client.leaseClient.leaseGrant({ TTL: ttlSeconds, ID: 0 }));
    if (res.error) throw new StoreError('grant a lease on', this.name, res.error);
    return { id: String(res.ID), ttlSeconds: Number(res.TTL) };
  }

  /**
   * One keep-alive on a stream of its own, closed after the answer: no long-lived stream can go
   * quiet while looking open (etcd3#110). Bounded by `timeoutMs`; a stream that ran out of time
   * makes etcd3 drop that member's connection, so the next attempt connects afresh.
   */
  leaseKeepAlive(id: string, timeoutMs: number): Promise<number> {
    return this.request(
      'lease_keepalive',
      'keep a lease alive on',
      async () => {
        const stream = await this.client.leaseClient.leaseKeepAlive({ deadline: Date.now() + timeoutMs });
        try {
          return await new Promise<number>((resolve, reject) => {
            stream.on('data', (res: { TTL: string }) => resolve(Number(res.TTL)));
            stream.on('error', reject);
            stream.on('end', () => reject(new Error('keep-alive stream ended without an answer')));
            stream.write({ ID: id });
          });
        } finally {
          stream.end();
        }
      },
      timeoutMs,
    );
  }

  async leaseTimeToLive(id: string, timeoutMs: number): Promise<number> {
    const res = await this.request(
      'lease_ttl',
      'read a lease from',
      () => this.client.leaseClient.leaseTimeToLive({ ID: id, keys: false }, { deadline: Date.now() + timeoutMs }),
      timeoutMs,
    );
    return Number(res.TTL);
  }

  async leaseRevoke(id: string): Promise<void> {
    try {
      await this.request('lease_revoke', 'revoke a lease on', () => this.client.leaseClient.leaseRevoke({ ID: id }));
    } catch (err) {
      if (!(err instanceof StoreLeaseNotFoundError)) throw err;
    }
  }

  async putLeased(entries: ReadonlyArray<readonly [string, string]>, id: string): Promise<void> {
    if (entries.length === 0) return;
    if (entries.length > this.maxTxnOps) throw tooManyWrites(this.name, entries.length, this.maxTxnOps);
    const ops: IRequestOp[] = entries.map(([key, value]) => ({ request_put: { key: this.full(key), value: Buffer.from(value), lease: id } }));
    const res = await this.request('lease_put', 'write to', () => this.client.kv.txn({ compare: [], success: ops, failure: [] }));
    this.noteOwnWrite(Number(res.header.revision));
  }

  close(): void {
    if (this.closed) return;
    for (const stop of [...this.watchers]) stop();
    this.closed = true;
    this.client.close();
    this.commitClient.close();
  }

  get isOpen(): boolean {
    return !this.closed;
  }
}
