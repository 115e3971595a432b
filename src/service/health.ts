/**
 * Health checks (DESIGN §4.7: the checker is separate from the data paths, which only ask who
 * is up). One timer per (service, replica): a TCP connect or an HTTP GET from the daemon, which
 * sits on the host and reaches every replica through its network's bridge.
 *
 * HAProxy semantics: `rise` consecutive successes bring a down replica up, `fall` consecutive
 * failures take an up one down. A new replica is checked at once and enters rotation on its
 * first success (it is not sent traffic before anything answered); from then on rise/fall apply.
 */
import http from 'node:http';
import net from 'node:net';
import type { HealthCheck } from './model.js';

export type HealthStatus = 'unknown' | 'up' | 'down';

export interface HealthState {
  status: HealthStatus;
  /** Consecutive results against the current status. */
  streak: number;
}

export const INITIAL_HEALTH: HealthState = { status: 'unknown', streak: 0 };

/** The state after one probe result (pure). */
export function observe(s: HealthState, ok: boolean, check: Pick<HealthCheck, 'rise' | 'fall'>): HealthState {
  if (s.status === 'unknown') return { status: ok ? 'up' : 'down', streak: 0 };
  if (s.status === 'up') {
    if (ok) return { status: 'up', streak: 0 };
    const streak = s.streak + 1;
    return streak >= check.fall ? { status: 'down', streak: 0 } : { status: 'up', streak };
  }
  if (!ok) return { status: 'down', streak: 0 };
  const streak = s.streak + 1;
  return streak >= check.rise ? { status: 'up', streak: 0 } : { status: 'down', streak };
}

export interface HealthTarget {
  /** `<service>/<replica id>`. */
  key: string;
  service: string;
  /** `address:port` (the metrics label). */
  backend: string;
  address: string;
  port: number;
  check: HealthCheck;
  /** Local address to probe from (an overlay replica on another node answers only this node's own address). */
  source?: string;
}

export type Probe = (t: HealthTarget) => Promise<boolean>;

export function tcpProbe(t: HealthTarget): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: t.address, port: t.port, ...(t.source ? { localAddress: t.source } : {}) });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), t.check.timeoutMs);
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

export function httpProbe(t: HealthTarget): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host: t.address, port: t.port, ...(t.source ? { localAddress: t.source } : {}), path: t.check.path ?? '/', timeout: t.check.timeoutMs, agent: false, headers: { 'user-agent': 'shoal-health' } }, (res) => {
      res.resume();
      const code = res.statusCode ?? 0;
      resolve(code >= 200 && code < 400);
    });
    req.once('timeout', () => req.destroy(new Error('timeout')));
    req.once('error', () => resolve(false));
  });
}

export const defaultProbe: Probe = (t) => (t.check.kind === 'http' ? httpProbe(t) : tcpProbe(t));

interface Running {
  target: HealthTarget;
  state: HealthState;
  timer: NodeJS.Timeout | undefined;
  stopped: boolean;
}

export interface HealthEvents {
  /** A target's status changed (after the probe result that changed it). */
  onChange(target: HealthTarget, from: HealthStatus, to: HealthStatus): void;
  onResult?(target: HealthTarget, ok: boolean): void;
}

const sameCheck = (a: HealthTarget, b: HealthTarget) => a.address === b.address && a.port === b.port && a.source === b.source && JSON.stringify(a.check) === JSON.stringify(b.check);

export class HealthChecker {
  private readonly running = new Map<string, Running>();

  constructor(
    private readonly events: HealthEvents,
    private readonly probe: Probe = defaultProbe,
  ) {}

  /** Starts checks for new targets, stops those gone; a target whose check changed starts over. */
  setTargets(targets: readonly HealthTarget[]): void {
    const wanted = new Map(targets.map((t) => [t.key, t]));
    const carried = new Map<string, HealthState>();
    for (const [key, r] of this.running) {
      const next = wanted.get(key);
      if (next && sameCheck(next, r.target)) continue;
      // New check settings for the same backend (`service update --health-interval`, ...) keep
      // what is known of it: restarting at "unknown" took every replica out of rotation at once.
      if (next && next.address === r.target.address && next.port === r.target.port) carried.set(key, r.state);
      this.stop(key);
    }
    for (const t of targets) if (!this.running.has(t.key)) this.start(t, carried.get(t.key));
  }

  status(key: string): HealthStatus {
    return this.running.get(key)?.state.status ?? 'unknown';
  }

  isUp(key: string): boolean {
    return this.status(key) === 'up';
  }

  close(): void {
    for (const key of [...this.running.keys()]) this.stop(key);
  }

  private start(target: HealthTarget, state: HealthState = INITIAL_HEALTH): void {
    const r: Running = { target, state, timer: undefined, stopped: false };
    this.running.set(target.key, r);
    if (target.check.kind === 'none') {
      const from = r.state.status;
      r.state = { status: 'up', streak: 0 };
      if (from !== 'up') this.events.onChange(target, from, 'up');
      return;
    }
    const tick = async () => {
      const startedAt = Date.now();
      const ok = await this.probe(target).catch(() => false);
      if (r.stopped) return;
      this.events.onResult?.(target, ok);
      const from = r.state.status;
      r.state = observe(r.state, ok, target.check);
      if (r.state.status !== from) this.events.onChange(target, from, r.state.status);
      // The next check starts one interval after this one started (not after it ended).
      r.timer = setTimeout(() => void tick(), Math.max(0, target.check.intervalMs - (Date.now() - startedAt)));
    };
    void tick();
  }

  private stop(key: string): void {
    const r = this.running.get(key);
    if (!r) return;
    r.stopped = true;
    if (r.timer) clearTimeout(r.timer);
    this.running.delete(key);
  }
}
