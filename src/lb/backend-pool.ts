/**
 * The backends of one service port on the proxy path, shared by every listener of that port
 * (the published port and the VIP): the policy, the open connections per backend, the
 * per-backend connection limit with its queue (HAProxy server `maxconn`, backend queue,
 * `timeout queue`), and slow start.
 *
 * A slot is taken when a backend is picked, before its connect completes, and given back when
 * the connect fails or the connection closes: counting only connected sockets would let
 * simultaneous connects overshoot the limit. While a backend ramps (slow start) its limit ramps
 * with its weight, from 1 to maxConn (HAProxy does the same).
 *
 * Client affinity (`affinityMs`, the service's `--affinity client-ip:T`, kube-proxy's
 * ClientIP): a client address keeps the backend it was last given while it opens a new
 * connection (or UDP flow) within T of the previous one, as long as that backend is in rotation
 * and has room; otherwise the policy picks again and the client sticks to the new one. Stale
 * entries are swept whenever the table has doubled since the last sweep.
 */
import { createPolicy, type PickContext, type Policy, type PolicyName } from './policy.js';
import { SlowStart } from './slow-start.js';

export interface PoolSettings {
  policy: PolicyName;
  /** Open connections per backend; undefined: no limit. */
  maxConn?: number;
  /** Clients that may wait for a slot (0: refused at once when every backend is full). */
  maxQueue: number;
  queueTimeoutMs: number;
  slowStartMs?: number;
  /** Client affinity: how long a client keeps its backend after its last new connection. */
  affinityMs?: number;
}

/** Sweeps of the affinity table run when it has grown past this (then past twice its size). */
const AFFINITY_SWEEP_MIN = 1024;

interface Waiter {
  exclude: ReadonlySet<string>;
  client: string | undefined;
  serve: (backend: string) => void;
  expire: () => void;
  timer: NodeJS.Timeout;
}

export class BackendPool {
  /** Backend -> slots taken (connecting or connected). */
  readonly active = new Map<string, number>();
  private backends: string[] = [];
  private policy: Policy;
  private readonly slowStart: SlowStart;
  private readonly queue: Waiter[] = [];
  private readonly weight = (b: string) => this.slowStart.weight(b);
  /** Client address -> its backend and when that stops holding (affinity). */
  private readonly affinity = new Map<string, { backend: string; until: number }>();
  private sweepAt = AFFINITY_SWEEP_MIN;
  private readonly now: () => number;

  constructor(
    private settings: PoolSettings,
    /** Backends entering rotation this soon after the pool starts are the initial set, not ramped. */
    startGraceMs: number,
    now: () => number = () => performance.now(),
  ) {
    this.now = now;
    this.policy = createPolicy(settings.policy);
    this.slowStart = new SlowStart(settings.slowStartMs, startGraceMs, now);
  }

  get queued(): number {
    return this.queue.length;
  }

  update(backends: readonly string[], settings: PoolSettings): void {
    if (settings.policy !== this.settings.policy) this.policy = createPolicy(settings.policy);
    this.settings = settings;
    if (!settings.affinityMs) this.affinity.clear();
    this.slowStart.setDuration(settings.slowStartMs);
    this.slowStart.update(backends);
    this.backends = [...backends];
    // A new backend, or a raised limit, may serve clients that wait.
    this.pump();
  }

  private limitOf(backend: string): number {
    const max = this.settings.maxConn;
    if (max === undefined) return Infinity;
    return Math.max(1, Math.ceil(max * this.weight(backend)));
  }

  private hasRoom(backend: string): boolean {
    return (this.active.get(backend) ?? 0) < this.limitOf(backend);
  }

  /** Whether a backend not in `exclude` is in rotation at all (full or not). */
  hasCandidates(exclude: ReadonlySet<string>): boolean {
    return this.backends.some((b) => !exclude.has(b));
  }

  /** Picks a backend not in `exclude` that has room, and takes a slot on it; undefined when none has. */
  take(exclude: ReadonlySet<string>, client?: string): string | undefined {
    const candidates = this.backends.filter((b) => !exclude.has(b) && this.hasRoom(b));
    const backend = this.affine(client, candidates) ?? this.policy.pick(candidates, { active: this.active, ...this.pickContext(client) });
    if (backend !== undefined) {
      this.active.set(backend, (this.active.get(backend) ?? 0) + 1);
      this.stick(client, backend);
    }
    return backend;
  }

  /** Picks without taking a slot (UDP flows: no connection to count), weighted while ramping. */
  pick(client?: string): string | undefined {
    const backend = this.affine(client, this.backends) ?? this.policy.pick(this.backends, this.pickContext(client));
    if (backend !== undefined) this.stick(client, backend);
    return backend;
  }

  /** The client (source-hash) and, while a backend ramps, the weights. */
  private pickContext(client: string | undefined): PickContext {
    return { ...(client !== undefined ? { client } : {}), ...(this.slowStart.ramping ? { weight: this.weight } : {}) };
  }

  /** The client's backend under affinity, when it still holds and is among `candidates`. */
  private affine(client: string | undefined, candidates: readonly string[]): string | undefined {
    if (!this.settings.affinityMs || client === undefined) return undefined;
    const held = this.affinity.get(client);
    return held && held.until > this.now() && candidates.includes(held.backend) ? held.backend : undefined;
  }

  private stick(client: string | undefined, backend: string): void {
    if (!this.settings.affinityMs || client === undefined) return;
    const now = this.now();
    this.affinity.set(client, { backend, until: now + this.settings.affinityMs });
    if (this.affinity.size <= this.sweepAt) return;
    for (const [c, held] of this.affinity) if (held.until <= now) this.affinity.delete(c);
    this.sweepAt = Math.max(AFFINITY_SWEEP_MIN, 2 * this.affinity.size);
  }

  /** Clients under affinity now (expired entries not yet swept included). */
  get affinityEntries(): number {
    return this.affinity.size;
  }

  /** Gives a slot back (connect failed, connection closed) and hands it to a waiting client. */
  release(backend: string): void {
    const n = (this.active.get(backend) ?? 1) - 1;
    if (n > 0) this.active.set(backend, n);
    else this.active.delete(backend);
    this.pump();
  }

  /**
   * Waits for a slot: `serve` gets the backend (its slot taken), or `expire` is called after the
   * queue timeout. Returns the cancel function (the client went away), or undefined when the
   * queue is full (the caller refuses the client).
   */
  wait(exclude: ReadonlySet<string>, client: string | undefined, serve: (backend: string) => void, expire: () => void): (() => void) | undefined {
    if (this.queue.length >= this.settings.maxQueue) return undefined;
    const w: Waiter = { exclude, client, serve, expire, timer: setTimeout(() => this.remove(w) && expire(), this.settings.queueTimeoutMs) };
    this.queue.push(w);
    return () => void this.remove(w);
  }

  private remove(w: Waiter): boolean {
    const i = this.queue.indexOf(w);
    if (i < 0) return false;
    this.queue.splice(i, 1);
    clearTimeout(w.timer);
    return true;
  }

  /** Serves waiting clients in arrival order, each that some backend has room for. */
  private pump(): void {
    for (let i = 0; i < this.queue.length; ) {
      const w = this.queue[i]!;
      const backend = this.take(w.exclude, w.client);
      if (backend === undefined) {
        i += 1;
        continue;
      }
      this.queue.splice(i, 1);
      clearTimeout(w.timer);
      w.serve(backend);
    }
  }

  /** Ends every wait (the port is closing): the waiting clients are expired. */
  close(): void {
    for (const w of this.queue.splice(0)) {
      clearTimeout(w.timer);
      w.expire();
    }
  }
}
