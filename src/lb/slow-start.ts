/**
 * Slow start (HAProxy `slowstart`): a backend that enters rotation after it was seen failing,
 * or a new one added to a running pool, gets a weight that grows linearly from
 * SLOW_START_MIN_WEIGHT to 1 over the ramp, so a cold replica (empty caches, JIT, pools) is not
 * handed its full share the moment its health check passes.
 *
 * As HAProxy, never at start: the backends that are there when the pool starts (and those whose
 * first health result comes within `graceMs` of it: every replica present at start is probed at
 * once) are not ramped, or a daemon restart would throttle replicas that were serving all along.
 * The clock is injected so the ramp can be tested without waiting.
 */

/** The share a backend starts its ramp with (HAProxy starts at 1 step of its weight scale of 16). */
export const SLOW_START_MIN_WEIGHT = 1 / 16;

export class SlowStart {
  /** Backend -> when it entered rotation (only those still ramping, or that might be). */
  private readonly since = new Map<string, number>();
  private inRotation = new Set<string>();
  private readonly startedAt: number;

  constructor(
    private durationMs: number | undefined,
    private readonly graceMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.startedAt = now();
  }

  /** Turning it on ramps only backends that enter rotation from then on; turning it off ends every ramp. */
  setDuration(ms: number | undefined): void {
    this.durationMs = ms;
    if (!ms) this.since.clear();
  }

  /** The backends in rotation now: those that were not in it before start their ramp. */
  update(backends: readonly string[]): void {
    const t = this.now();
    const next = new Set(backends);
    const ramp = !!this.durationMs && t - this.startedAt > this.graceMs;
    for (const b of next) if (!this.inRotation.has(b) && ramp) this.since.set(b, t);
    for (const b of this.since.keys()) if (!next.has(b)) this.since.delete(b);
    this.inRotation = next;
  }

  /** 1 for a backend at full weight, less while it ramps. */
  weight(backend: string): number {
    const since = this.since.get(backend);
    if (since === undefined || !this.durationMs) return 1;
    const w = (this.now() - since) / this.durationMs;
    if (w >= 1) {
      this.since.delete(backend); // done: later calls skip the arithmetic
      return 1;
    }
    return Math.max(SLOW_START_MIN_WEIGHT, w);
  }

  /** Whether any backend is still ramping (the pick may skip weights otherwise). */
  get ramping(): boolean {
    return this.durationMs !== undefined && this.durationMs > 0 && this.since.size > 0;
  }
}
