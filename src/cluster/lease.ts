/**
 * An etcd lease the daemon keeps alive (its node lease, DESIGN.md §7), with the keys it holds.
 *
 * Keep-alive: every `keepAliveIntervalMs` (TTL/3) one keep-alive request, bounded by
 * `requestTimeoutMs`, each on a stream of its own (LeaseBackend.leaseKeepAlive). From the answers
 * the lease keeps a conservative expiry: the time a keep-alive was *sent* plus the TTL etcd
 * granted in answer to it (etcd received it later, so its own expiry is no earlier). When that
 * moment passes without a newer answer, the lease is lost. This is what covers etcd3#110: a
 * keep-alive stream can look open through a network cut while nothing reaches etcd; here only
 * answers count, so a silent cut ends in `lost` by the time etcd itself may expire the lease.
 * Besides, every `checkIntervalMs` (default the TTL) the lease asks etcd for its remaining TTL:
 * "gone" (-1) there, or TTL 0 in a keep-alive answer, or a write refused for an unknown lease,
 * also mean lost.
 *
 * Loss emits `lost` (a LeaseLostError saying why) once; keep-alives stop. `grant()` then grants
 * a new lease (on demand: the caller decides when, e.g. after a backoff or when its network is
 * back), writes every key put under the lease again, and revokes the old lease if etcd still has
 * it (best effort), so keys never stay under a lease nobody keeps alive.
 */
import { EventEmitter } from 'node:events';
import { ShoalError } from '../errors.js';
import { StoreLeaseNotFoundError } from '../store/errors.js';
import type { LeaseBackend } from '../store/etcd.js';

export type LeaseState = 'idle' | 'granting' | 'alive' | 'lost' | 'released';

export type LeaseLossReason = 'expired' | 'revoked' | 'not-found';

/** The lease is gone, or cannot be assumed to exist any more. */
export class LeaseLostError extends ShoalError {
  readonly reason: LeaseLossReason;
  readonly leaseId: string | undefined;
  constructor(name: string, leaseId: string | undefined, reason: LeaseLossReason, detail: string, cause?: unknown) {
    super('ELEASELOST', `lease ${leaseId ?? '(none)'} on "${name}" is lost: ${detail}`, { cause });
    this.reason = reason;
    this.leaseId = leaseId;
  }
}

export interface LeaseOptions {
  /** The TTL asked for, in seconds (etcd may grant more; never less than 1 here). */
  ttlSeconds: number;
  /** Between keep-alives; default a third of the TTL (what etcd's Go client does). */
  keepAliveIntervalMs?: number;
  /** Between checks of the remaining TTL with etcd; default the TTL. */
  checkIntervalMs?: number;
  /** Bound of one keep-alive or check; default the keep-alive interval. */
  requestTimeoutMs?: number;
  /** Clock (ms); tests inject one. */
  now?: () => number;
}

export interface LeaseEvents {
  granted: [id: string];
  lost: [err: LeaseLostError];
  keepalive: [ttlSeconds: number];
  keepaliveFailed: [err: Error];
}

export class Lease extends EventEmitter<LeaseEvents> {
  private readonly backend: LeaseBackend;
  private readonly ttlSeconds: number;
  private readonly keepAliveIntervalMs: number;
  private readonly checkIntervalMs: number;
  private readonly requestTimeoutMs: number;
  private readonly now: () => number;
  private leaseId: string | undefined;
  private innerState: LeaseState = 'idle';
  private expiry = 0;
  /** Bumped by every grant, loss and release: answers for an older generation are ignored. */
  private generation = 0;
  private granting: Promise<string> | undefined;
  /** Every key put under the lease, written again on each grant. */
  private readonly desired = new Map<string, string>();
  /** A lost lease etcd may still hold: revoked once a new one is granted. */
  private stale: string | undefined;
  private keepAliveTimer: NodeJS.Timeout | undefined;
  private checkTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private keepAliveInFlight = false;
  private checkInFlight = false;

  constructor(backend: LeaseBackend, options: LeaseOptions) {
    super();
    if (!(options.ttlSeconds >= 1)) throw new RangeError(`lease TTL must be at least 1 s (got ${options.ttlSeconds})`);
    this.backend = backend;
    this.ttlSeconds = Math.ceil(options.ttlSeconds);
    this.keepAliveIntervalMs = options.keepAliveIntervalMs ?? Math.floor((this.ttlSeconds * 1000) / 3);
    this.checkIntervalMs = options.checkIntervalMs ?? this.ttlSeconds * 1000;
    this.requestTimeoutMs = options.requestTimeoutMs ?? this.keepAliveIntervalMs;
    this.now = options.now ?? Date.now;
  }

  get state(): LeaseState {
    return this.innerState;
  }

  /** The current (or last) lease ID. */
  get id(): string | undefined {
    return this.leaseId;
  }

  /** When the lease runs out unless a keep-alive is answered first (ms, the lease's clock). */
  get expiresAt(): number {
    return this.expiry;
  }

  /** The keys put under the lease (written again by every grant). */
  get keys(): ReadonlyMap<string, string> {
    return this.desired;
  }

  /**
   * Grants a lease (a new one if the last was lost or released), starts keeping it alive and
   * writes every key put under it. Resolves to the lease ID; while alive, to the current one.
   * Concurrent calls share one grant. Rejects (StoreUnavailableError, ...) if etcd cannot be
   * reached; the caller tries again later.
   */
  grant(): Promise<string> {
    if (this.innerState === 'alive' && this.leaseId !== undefined) return Promise.resolve(this.leaseId);
    this.granting ??= this.doGrant().finally(() => (this.granting = undefined));
    return this.granting;
  }

  private async doGrant(): Promise<string> {
    const generation = ++this.generation;
    this.stopTimers();
    this.innerState = 'granting';
    const sentAt = this.now();
    let granted: { id: string; ttlSeconds: number };
    try {
      granted = await this.backend.leaseGrant(this.ttlSeconds);
    } catch (err) {
      if (generation === this.generation) this.innerState = 'lost';
      throw err;
    }
    if (generation !== this.generation) {
      // Released while granting: nobody will keep this one alive.
      void this.backend.leaseRevoke(granted.id).catch(() => undefined);
      throw new LeaseLostError(this.backend.name, granted.id, 'revoked', 'released while it was being granted');
    }
    this.leaseId = granted.id;
    this.expiry = sentAt + granted.ttlSeconds * 1000;
    this.innerState = 'alive';
    this.startTimers(generation);
    try {
      if (this.desired.size) await this.backend.putLeased([...this.desired], granted.id);
    } catch (err) {
      if (generation === this.generation) {
        this.generation++;
        this.stopTimers();
        this.innerState = 'lost';
        this.stale = granted.id;
      }
      throw err;
    }
    const old = this.stale;
    this.stale = undefined;
    if (old !== undefined && old !== granted.id) void this.backend.leaseRevoke(old).catch(() => undefined);
    this.emit('granted', granted.id);
    return granted.id;
  }

  /**
   * Takes over lease `id`, held by this node before (a daemon restart), when etcd still has it:
   * keeps it alive from now on and writes every remembered key under it, so the node's keys
   * never disappear across the restart. Resolves to false, changing nothing, when etcd answers
   * that the lease is gone or does not answer; the caller then grants a new one.
   */
  async adopt(id: string): Promise<boolean> {
    if (this.innerState === 'alive') return this.leaseId === id;
    const generation = ++this.generation;
    const sentAt = this.now();
    let ttl: number;
    try {
      ttl = await this.backend.leaseKeepAlive(id, this.requestTimeoutMs);
    } catch {
      return false;
    }
    if (generation !== this.generation || ttl <= 0) return false;
    this.leaseId = id;
    this.expiry = sentAt + ttl * 1000;
    this.innerState = 'alive';
    this.startTimers(generation);
    if (this.desired.size) {
      try {
        await this.backend.putLeased([...this.desired], id);
      } catch {
        if (generation === this.generation) {
          this.generation++;
          this.stopTimers();
          this.innerState = 'idle';
          this.leaseId = undefined;
        }
        return false;
      }
    }
    this.emit('granted', id);
    return true;
  }

  /**
   * Puts `key` under the lease and remembers it, so every later grant writes it again. Rejects
   * with LeaseLostError when there is no live lease (the key is still remembered for the next
   * grant).
   */
  async put(key: string, value: string): Promise<void> {
    this.desired.set(key, value);
    const id = this.leaseId;
    const generation = this.generation;
    if (this.innerState !== 'alive' || id === undefined) {
      throw new LeaseLostError(this.backend.name, id, 'expired', `no live lease to put "${key}" under; grant() first`);
    }
    try {
      await this.backend.putLeased([[key, value]], id);
    } catch (err) {
      if (err instanceof StoreLeaseNotFoundError) {
        const lost = new LeaseLostError(this.backend.name, id, 'not-found', 'etcd refused a write under it: it does not know the lease', err);
        this.lose(generation, lost);
        throw lost;
      }
      throw err;
    }
  }

  /** Forgets `key` and deletes it. */
  async remove(key: string): Promise<void> {
    this.desired.delete(key);
    await this.backend.delete(key);
  }

  /** Stops keeping the lease alive: etcd drops it and its keys once the TTL runs out. */
  release(): void {
    this.generation++;
    this.stopTimers();
    if (this.innerState !== 'idle') this.innerState = 'released';
  }

  /** Stops keeping the lease alive and revokes it now: its keys go at once. */
  async revoke(): Promise<void> {
    const id = this.leaseId;
    this.release();
    if (id !== undefined) await this.backend.leaseRevoke(id);
  }

  // ---- keep-alive ----------------------------------------------------------------------------

  private startTimers(generation: number): void {
    this.keepAliveTimer = setInterval(() => void this.keepAlive(generation), this.keepAliveIntervalMs);
    this.checkTimer = setInterval(() => void this.check(generation), this.checkIntervalMs);
    this.keepAliveTimer.unref();
    this.checkTimer.unref();
    this.armExpiry(generation);
  }

  private stopTimers(): void {
    clearInterval(this.keepAliveTimer);
    clearInterval(this.checkTimer);
    clearTimeout(this.expiryTimer);
    this.keepAliveTimer = this.checkTimer = this.expiryTimer = undefined;
    this.keepAliveInFlight = this.checkInFlight = false;
  }

  /** Fires at the conservative expiry: no answer came in time, so the lease may be gone. */
  private armExpiry(generation: number): void {
    clearTimeout(this.expiryTimer);
    this.expiryTimer = setTimeout(() => {
      if (generation !== this.generation) return;
      if (this.now() < this.expiry) return this.armExpiry(generation);
      this.lose(
        generation,
        new LeaseLostError(this.backend.name, this.leaseId, 'expired', `no keep-alive answered within its ${this.ttlSeconds} s TTL; etcd may have expired it`),
      );
    }, Math.max(0, this.expiry - this.now()));
    this.expiryTimer.unref();
  }

  private async keepAlive(generation: number): Promise<void> {
    const id = this.leaseId;
    if (generation !== this.generation || this.keepAliveInFlight || id === undefined) return;
    this.keepAliveInFlight = true;
    const sentAt = this.now();
    try {
      const ttl = await this.backend.leaseKeepAlive(id, this.requestTimeoutMs);
      if (generation !== this.generation) return;
      if (ttl <= 0) {
        this.lose(generation, new LeaseLostError(this.backend.name, id, 'not-found', 'etcd answered a keep-alive with TTL 0: it expired or was revoked'));
        return;
      }
      this.expiry = Math.max(this.expiry, sentAt + ttl * 1000);
      this.armExpiry(generation);
      this.emit('keepalive', ttl);
    } catch (err) {
      if (generation !== this.generation) return;
      if (err instanceof StoreLeaseNotFoundError) {
        this.lose(generation, new LeaseLostError(this.backend.name, id, 'not-found', 'etcd does not know it', err));
        return;
      }
      // Not lost yet: the next keep-alive may get through; the expiry timer decides.
      this.emit('keepaliveFailed', err instanceof Error ? err : new Error(String(err)));
    } finally {
      if (generation === this.generation) this.keepAliveInFlight = false;
    }
  }

  /** Asks etcd for the lease's remaining TTL: the server's word, whatever the streams look like. */
  private async check(generation: number): Promise<void> {
    const id = this.leaseId;
    if (generation !== this.generation || this.checkInFlight || id === undefined) return;
    this.checkInFlight = true;
    try {
      const ttl = await this.backend.leaseTimeToLive(id, this.requestTimeoutMs);
      if (generation === this.generation && ttl < 0) {
        this.lose(generation, new LeaseLostError(this.backend.name, id, 'not-found', 'etcd reports it expired or revoked'));
      }
    } catch {
      // Unreachable: keep-alives and the expiry timer decide.
    } finally {
      if (generation === this.generation) this.checkInFlight = false;
    }
  }

  private lose(generation: number, err: LeaseLostError): void {
    if (generation !== this.generation || this.innerState !== 'alive') return;
    this.generation++;
    this.stopTimers();
    this.innerState = 'lost';
    this.stale = this.leaseId;
    this.emit('lost', err);
  }
}
