/**
 * N DNS worker threads (worker-main.ts), each answering on its own SO_REUSEPORT sockets (UDP
 * and TCP) for every listener address; the kernel spreads clients over them by 4-tuple hash.
 * The main thread holds no DNS socket: it shares each record set with every worker, adds and
 * removes listeners on all of them, collects their counts on every scrape (so the metrics stay
 * exact sums), relays their log events, and replaces a worker that dies: the others keep
 * answering meanwhile (the kernel hands the dead one's share to the sockets left), and the
 * replacement gets the current records and every listener before it joins. A record change
 * reaches the workers as a delta (the endpoints that changed, and the changed containers' endpoints on all their networks) when ShoalDns could compute
 * one, else as the whole set; messages to a worker arrive in order, so each delta applies on
 * top of the version before it.
 */
import { serialize } from 'node:v8';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { ShoalError } from '../errors.js';
import type { CountsDelta } from './metrics-sink.js';
import type { DnsMetrics } from './metrics.js';
import type { ListenerAddress } from './server.js';
import type { RecordsDelta } from './snapshot.js';
import type { DnsRecordsInput } from './types.js';
import type { FromWorker, ToWorker, WorkerData, WorkerDnsOptions } from './worker-protocol.js';

export interface WorkerPoolOptions {
  size: number;
  /** The worker bundle (dist/bin/dns-worker.js next to the CLI; tests and benches build their own). */
  script: string | URL;
  options: WorkerDnsOptions;
  logger?: Logger;
  metrics?: DnsMetrics;
  /** How long to wait for a worker's answer to a request before giving up on it (default 5 s). */
  requestTimeoutMs?: number;
}

type Reply = Extract<FromWorker, { type: 'reply' }>;

/**
 * A worker's young generation at most, MB. Left to itself, V8 grows it under a flood (tens of
 * thousands of queries a second make garbage fast) to ~100 MB: the daemon's RSS rose by that
 * much, and the larger generation made scavenges of up to 30 ms, the pauses another client's
 * queries queue behind. Measured with torture dns (one worker, the probe sharing it with the
 * flood): 16 MB kept RSS growth to 2-4 MiB and p99 at 8-12 ms; 4 and 8 MB scavenged so often
 * that the total pause grew.
 */
const YOUNG_GENERATION_MB = 16;

interface Shared {
  buffer: SharedArrayBuffer;
  length: number;
}

/** The record set v8-serialized once into memory every worker reads. */
function shareable(input: DnsRecordsInput): Shared {
  const bytes = serialize(input);
  const buffer = new SharedArrayBuffer(bytes.length);
  new Uint8Array(buffer).set(bytes);
  return { buffer, length: bytes.length };
}

interface Slot {
  index: number;
  worker: Worker;
  startedAt: number;
  applied: number;
  pending: Map<number, (r: Reply) => void>;
}

export class DnsWorkerPool {
  private readonly opts: WorkerPoolOptions;
  private readonly slots: (Slot | undefined)[];
  private readonly listening = new Map<string, ListenerAddress>();
  /** The latest record set; serialized for workers when one needs it whole (`shared`). */
  private records: { version: number; input: DnsRecordsInput; shared: Shared | undefined } | undefined;
  private nextId = 1;
  private closing = false;
  private readonly restarts: number[];
  private readonly waiters = new Set<() => void>();

  constructor(opts: WorkerPoolOptions) {
    this.opts = opts;
    this.slots = Array.from({ length: opts.size }, () => undefined);
    this.restarts = this.slots.map(() => 0);
    for (let i = 0; i < opts.size; i += 1) this.slots[i] = this.spawn(i);
  }

  get size(): number {
    return this.slots.length;
  }

  /** Thread ids of the live workers, by index (undefined while one is being replaced). */
  threadIds(): (number | undefined)[] {
    return this.slots.map((s) => s?.worker.threadId);
  }

  /** Shares the full record set with every worker; each builds its snapshot and swaps it in. */
  setRecords(input: DnsRecordsInput): number {
    this.records = { version: (this.records?.version ?? 0) + 1, input, shared: shareable(input) };
    for (const s of this.slots) if (s) this.sendRecords(s);
    return this.records.version;
  }

  /**
   * Sends every worker the endpoints that changed (and the changed multi-network containers' endpoints); `input` is the record set they make (what a
   * worker started later gets whole). A few objects cross the thread boundary, not the set.
   */
  applyDelta(delta: RecordsDelta, input: DnsRecordsInput): number {
    const version = (this.records?.version ?? 0) + 1;
    this.records = { version, input, shared: undefined };
    for (const s of this.slots) s?.worker.postMessage({ type: 'delta', version, delta } satisfies ToWorker);
    return version;
  }

  /** Resolves once every live worker answers with the latest record set (or `timeoutMs` passes: false). */
  whenApplied(timeoutMs = 10_000): Promise<boolean> {
    const done = (): boolean => this.slots.every((s) => !s || s.applied === (this.records?.version ?? 0));
    if (done()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish(false), timeoutMs);
      const check = (): void => {
        if (done()) finish(true);
      };
      const finish = (ok: boolean): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(ok);
      };
      this.waiters.add(check);
    });
  }

  /** Binds `address:port` in every worker (port 0: the first picks, the rest join it). */
  async addListener(address: string, port: number): Promise<ListenerAddress> {
    const key = `${address}|${port}`;
    const known = this.listening.get(key);
    if (known) return { ...known };
    const live = this.slots.filter((s): s is Slot => s !== undefined);
    const [first, ...rest] = live;
    if (!first) throw new ShoalError('DNS_LISTEN_FAILED', `failed to listen on "${address}:${port}": no DNS worker is running`);
    const bound = (await this.listen(first, address, port)).port ?? port;
    const results = await Promise.allSettled(rest.map((s) => this.listen(s, address, bound)));
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) {
      await Promise.all([first, ...rest].map((s) => this.request(s, { type: 'unlisten', id: 0, address, port: bound }).catch(() => undefined)));
      throw failed.reason;
    }
    const l = { address, port: bound };
    this.listening.set(key, l);
    if (port === 0) this.listening.set(`${address}|${bound}`, l);
    return { ...l };
  }

  async removeListener(address: string, port: number): Promise<boolean> {
    const l = this.listening.get(`${address}|${port}`);
    if (!l) return false;
    for (const [k, v] of this.listening) if (v === l) this.listening.delete(k);
    await Promise.all(this.live().map((s) => this.request(s, { type: 'unlisten', id: 0, address, port: l.port }).catch(() => undefined)));
    return true;
  }

  listeners(): ListenerAddress[] {
    return [...new Set(this.listening.values())].map((l) => ({ ...l }));
  }

  /** Asks every worker for its counts since the last ask and adds them to the metrics. */
  async collectCounts(): Promise<CountsDelta[]> {
    const out: CountsDelta[] = [];
    await Promise.all(
      this.live().map(async (s) => {
        const r = await this.request(s, { type: 'counts', id: 0 }).catch(() => undefined);
        if (r?.ok && r.counts) {
          this.opts.metrics?.merge(s.index, r.counts);
          out[s.index] = r.counts;
        }
      }),
    );
    return out;
  }

  /** Test seam: makes worker `index` throw from its event loop, as a bug would. */
  crash(index: number): void {
    this.slots[index]?.worker.postMessage({ type: 'crash' } satisfies ToWorker);
  }

  /** Closes every listener, lets forwards finish (up to graceMs), keeps the last counts, ends the threads. */
  async close(graceMs = 2500): Promise<void> {
    this.closing = true;
    await Promise.all(
      this.live().map(async (s) => {
        const r = await this.request(s, { type: 'close', id: 0, graceMs }, graceMs + 5000).catch(() => undefined);
        if (r?.ok && r.counts) this.opts.metrics?.merge(s.index, r.counts);
        await s.worker.terminate();
      }),
    );
    this.listening.clear();
  }

  private live(): Slot[] {
    return this.slots.filter((s): s is Slot => s !== undefined);
  }

  private spawn(index: number): Slot {
    const data: WorkerData = { index, options: this.opts.options };
    const worker = new Worker(this.opts.script, { workerData: data, stdout: false, stderr: false, resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB } });
    const slot: Slot = { index, worker, startedAt: Date.now(), applied: 0, pending: new Map() };
    worker.on('message', (m: FromWorker) => this.onMessage(slot, m));
    worker.on('error', (err) => this.opts.logger?.error({ event: 'dns_worker_error', worker: index, err }, `DNS worker ${index} failed: ${err.message}`));
    worker.on('exit', (code) => this.onExit(slot, code));
    if (this.records) this.sendRecords(slot);
    return slot;
  }

  private sendRecords(s: Slot): void {
    const r = this.records;
    if (!r) return;
    r.shared ??= shareable(r.input);
    s.worker.postMessage({ type: 'records', version: r.version, records: r.shared.buffer, length: r.shared.length } satisfies ToWorker);
  }

  private onMessage(s: Slot, m: FromWorker): void {
    if (m.type === 'reply') {
      const resolve = s.pending.get(m.id);
      s.pending.delete(m.id);
      resolve?.(m);
    } else if (m.type === 'applied') {
      s.applied = m.version;
      if (m.version === this.records?.version) this.opts.metrics?.setRecords(new Map(m.recordCounts));
      this.opts.logger?.debug({ event: 'dns_worker_records', worker: s.index, version: m.version, ms: Math.round(m.ms) }, 'DNS worker applied the records');
      for (const w of [...this.waiters]) w();
    } else if (m.type === 'log') {
      this.opts.logger?.[m.level](m.fields, m.msg);
    }
  }

  private onExit(s: Slot, code: number): void {
    for (const resolve of s.pending.values()) resolve({ type: 'reply', id: 0, ok: false, message: `DNS worker ${s.index} exited` });
    s.pending.clear();
    if (this.slots[s.index] !== s) return;
    this.slots[s.index] = undefined;
    this.opts.metrics?.forgetWorker(s.index);
    for (const w of [...this.waiters]) w();
    if (this.closing) return;
    // A worker that dies soon after it started is restarted with a growing delay (a crash loop
    // must not spin); one that ran for a while is replaced at once.
    const quick = Date.now() - s.startedAt < 5000;
    this.restarts[s.index] = quick ? (this.restarts[s.index] ?? 0) + 1 : 0;
    const delay = quick ? Math.min(5000, 50 * 2 ** ((this.restarts[s.index] ?? 1) - 1)) : 0;
    this.opts.logger?.error({ event: 'dns_worker_exited', worker: s.index, code, restartInMs: delay }, `DNS worker ${s.index} exited (code ${code}); replacing it`);
    setTimeout(() => void this.replace(s.index), delay).unref();
  }

  private async replace(index: number): Promise<void> {
    if (this.closing || this.slots[index]) return;
    const slot = this.spawn(index);
    this.slots[index] = slot;
    const wanted = this.listeners();
    const results = await Promise.allSettled(wanted.map((l) => this.listen(slot, l.address, l.port)));
    const failed = results.filter((r) => r.status === 'rejected').length;
    this.opts.logger?.info({ event: 'dns_worker_replaced', worker: index, threadId: slot.worker.threadId, listeners: wanted.length - failed, failed }, `DNS worker ${index} replaced`);
  }

  private async listen(s: Slot, address: string, port: number): Promise<{ port?: number }> {
    const r = await this.request(s, { type: 'listen', id: 0, address, port });
    if (r.ok) return { port: r.port };
    const cause = Object.assign(new Error(r.message), { code: r.errno });
    throw new ShoalError(r.code && r.code !== 'DNS_LISTEN_FAILED' ? r.code : 'DNS_LISTEN_FAILED', r.message, { cause });
  }

  private request(s: Slot, m: ToWorker & { id: number }, timeoutMs = this.opts.requestTimeoutMs ?? 5000): Promise<Reply> {
    const id = this.nextId++;
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        s.pending.delete(id);
        reject(new ShoalError('DNS_WORKER_TIMEOUT', `DNS worker ${s.index} did not answer "${m.type}" within ${timeoutMs} ms`));
      }, timeoutMs);
      s.pending.set(id, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      s.worker.postMessage({ ...m, id });
    });
  }
}
