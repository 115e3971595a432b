/**
 * Runs a userspace proxy on [::1]:<hostPort> for every published port that covers ::1
 * (src/portmap/loopback6.ts says why the kernel cannot). The set follows the portmap records
 * under `<stateDir>/portmap/`: the directory's mtime changes whenever shoal-portmap adds or
 * removes a record (files are renamed into place), so a cheap stat on a short timer is enough.
 *
 * Services' published ports join them (`extraTargets`, src/service/loopback6.ts): those change
 * with the store, not the directory, so their set is compared at every sync.
 *
 * A proxy whose port is taken (another process holds [::1]:port) is retried on the next
 * change and logged once, like a DNS listener whose gateway is not up yet.
 */
import fs from 'node:fs';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { TcpProxy } from '../lb/tcp-proxy.js';
import { UdpProxy } from '../lb/udp-proxy.js';
import { loopbackProxyTargets, type LoopbackProxyTarget } from '../portmap/loopback6.js';
import { listRecords, portmapDir } from '../portmap/state.js';

interface RunningProxy {
  target: LoopbackProxyTarget;
  proxy: TcpProxy | UdpProxy;
}

/** Same listener and same backend: nothing to do. */
function sameTarget(a: LoopbackProxyTarget, b: LoopbackProxyTarget): boolean {
  return a.key === b.key && a.backend.host === b.backend.host && a.backend.port === b.backend.port;
}

export class LoopbackProxies {
  private readonly dir: string;
  private readonly running = new Map<string, RunningProxy>();
  private readonly failing = new Map<string, string>();
  private lastMtime = -1;
  private lastExtra = '';
  private readonly connections: Counter<'service' | 'backend'> | undefined;

  constructor(
    stateDir: string,
    private readonly logger: Logger,
    registry?: Registry,
    /** More targets than the portmap records' (the services' published ports). */
    private readonly extraTargets: () => LoopbackProxyTarget[] = () => [],
  ) {
    this.dir = portmapDir(stateDir);
    this.connections = registry
      ? new Counter({
          name: 'shoal_lb_connections_total',
          help: 'Connections (TCP) and flows (UDP) proxied by the daemon, by service and backend.',
          labelNames: ['service', 'backend'],
          registers: [registry],
        })
      : undefined;
  }

  get active(): LoopbackProxyTarget[] {
    return [...this.running.values()].map((r) => r.target);
  }

  private queue: Promise<void> = Promise.resolve();

  /**
   * Reconciles when the records changed since the last call (or always with `force`). Calls are
   * serialized: the timer and a store-driven sync must not both start the same listener.
   */
  sync(force = false): Promise<void> {
    const next = this.queue.then(() => this.reconcile(force));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async reconcile(force: boolean): Promise<void> {
    let mtime: number;
    try {
      mtime = fs.statSync(this.dir).mtimeMs;
    } catch {
      mtime = 0; // no directory: no records
    }
    const extra = this.extraTargets();
    const extraText = JSON.stringify(extra);
    if (!force && mtime === this.lastMtime && extraText === this.lastExtra && this.failing.size === 0) return;
    this.lastMtime = mtime;
    this.lastExtra = extraText;
    // A container's published port first: a port has one owner (ADD refuses a second).
    const wanted = new Map<string, LoopbackProxyTarget>();
    for (const t of [...loopbackProxyTargets(listRecords(this.dir)), ...extra]) if (!wanted.has(t.key)) wanted.set(t.key, t);
    for (const [key, running] of this.running) {
      const target = wanted.get(key);
      if (target && sameTarget(target, running.target)) continue;
      this.running.delete(key);
      await running.proxy.close();
      this.logger.info({ event: 'lb_proxy_removed', service: key, backend: running.target.backend }, 'published port proxy on [::1] removed');
    }
    for (const [key, target] of wanted) {
      if (this.running.has(key)) continue;
      await this.start(target);
    }
    for (const key of this.failing.keys()) if (!wanted.has(key)) this.failing.delete(key);
  }

  private async start(target: LoopbackProxyTarget): Promise<void> {
    const service = `[::1]:${target.hostPort}/${target.protocol}`;
    const backendLabel = `${target.backend.host}:${target.backend.port}`;
    const common = {
      listen: { host: '::1', port: target.hostPort },
      pickBackend: () => target.backend,
      onError: (err: Error, where: string) => this.logger.debug({ event: 'lb_proxy_error', service, where, err: err.message }, 'proxy connection failed'),
    };
    const proxy =
      target.protocol === 'tcp'
        ? new TcpProxy({ ...common, onConnection: () => this.connections?.inc({ service, backend: backendLabel }) })
        : new UdpProxy(common);
    try {
      await proxy.listen();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      if (this.failing.get(target.key) !== code) {
        this.logger.warn({ event: 'lb_proxy_failed', service, code }, `failed to listen on "${service}": ${code}`);
      }
      this.failing.set(target.key, code);
      return;
    }
    this.failing.delete(target.key);
    this.running.set(target.key, { target, proxy });
    this.logger.info({ event: 'lb_proxy_added', service, backend: backendLabel, owner: target.owner }, 'published port proxy on [::1] added');
  }

  async closeAll(): Promise<void> {
    const all = [...this.running.values()];
    this.running.clear();
    await Promise.all(all.map((r) => r.proxy.close()));
  }
}
