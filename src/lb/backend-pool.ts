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
 */
import { createPolicy, type Policy, type PolicyName } from './policy.js';
import { SlowStart } from './slow-start.js';

export interface PoolSettings {
  policy: PolicyName;
  /** Open connections per backend; undefined: no limit. */
  maxConn?: number;
  /** Clients that may wait for a slot (0: refused at once when every backend is full). */
  maxQueue: number;
  queueTimeoutMs: number;
  slowStartMs?: number;
}

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

  constructor(
    private settings: PoolSettings,
    /** Backends entering rotation this soon after the pool starts are the initial set, not ramped. */
    startGraceMs: number,
    now?: () => number,
  ) {
    this.policy = createPolicy(settings.policy);
    this.slowStart = new SlowStart(settings.slowStartMs, startGraceMs, now);
  }

  get queued(): number {
    return this.queue.length;
  }

  update(backends: readonly string[], settings: PoolSettings): void {
    if (settings.policy !== this.settings.policy) this.policy = createPolicy(settings.policy);
    this.settings = settings;
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
    const ctx = { active: this.active, ...(client !== undefined ? { client } : {}), ...(this.slowStart.ramping ? { weight: this.weight } : {}) };
    const backend = this.policy.pick(candidates, ctx);
    if (backend !== undefined) this.active.set(backend, (this.active.get(backend) ?? 0) + 1);
    return backend;
  }

  /** Picks without taking a slot (UDP flows: no connection to count), weighted while ramping. */
  pick(client?: string): string | undefined {
    return this.policy.pick(this.backends, { ...(client !== undefined ? { client } : {}), ...(this.slowStart.ramping ? { weight: this.weight } : {}) });
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
