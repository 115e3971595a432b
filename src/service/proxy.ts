/**
 * The proxy data path (`--lb-mode proxy`): a user-space TCP proxy per service port on the VIP
 * and on every local address (the published port), for what the kernel path cannot do:
 * least-connections, the PROXY protocol to the backend, retrying another backend when a
 * connect fails, a connection limit per backend with a wait queue, and slow start. UDP ports
 * use src/lb's UdpProxy with the same policy and ramp (no limit: flows are not connections).
 *
 * Draining: a backend taken out of rotation gets no new connection; connections open to it go
 * on until they close or the service's drain timeout ends them (default 30 s).
 *
 * The listeners of one service port (published port, VIP) share a BackendPool: one count of
 * open connections per backend, so leastconn and --max-conn see them all, one queue, one
 * slow-start clock.
 */
import net from 'node:net';
import type { Logger } from 'pino';
import { BackendPool, type PoolSettings } from '../lb/backend-pool.js';
import { proxyHeaderV1, proxyHeaderV2 } from '../lb/proxy-protocol.js';
import { readingInto, splice, type SpliceCounters } from '../lb/splice.js';
import { UdpProxy } from '../lb/udp-proxy.js';
import type { ServiceState } from './datapath.js';
import type { ServiceMetrics } from './metrics.js';
import { drainTimeoutOf, maxQueueOf, queueTimeoutOf, type ServiceRecord } from './model.js';

/** Backends tried for one client connection before it is reset. */
const MAX_ATTEMPTS = 3;
const CONNECT_TIMEOUT_MS = 3000;
/**
 * Slow start never applies to the replicas there when a port starts (HAProxy: never at start):
 * their first health checks all start with it and a live replica answers within milliseconds,
 * so those that enter rotation within this are the initial set, not replicas coming back.
 */
const SLOW_START_GRACE_MS = 1000;

type ProxyRecord = Pick<ServiceRecord, 'lbPolicy' | 'proxyProtocol' | 'drainTimeoutMs'>;

function poolSettings(r: ServiceRecord, protocol: 'tcp' | 'udp'): PoolSettings {
  // UDP has flows, not connections: no leastconn and no connection limit there.
  const s: PoolSettings = { policy: protocol === 'udp' && r.lbPolicy === 'leastconn' ? 'rr' : r.lbPolicy, maxQueue: maxQueueOf(r), queueTimeoutMs: queueTimeoutOf(r) };
  if (protocol === 'tcp' && r.maxConn !== undefined) s.maxConn = r.maxConn;
  if (r.slowStartMs !== undefined) s.slowStartMs = r.slowStartMs;
  if (r.affinity) s.affinityMs = r.affinity.timeoutS * 1000;
  return s;
}

const label = (host: string, port: number) => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`);

/** One proxied connection, kept so a drain timeout can end it. */
interface Pair {
  client: net.Socket;
  upstream: net.Socket;
  drain?: NodeJS.Timeout;
}

export class BalancedTcpProxy {
  private readonly server: net.Server;
  private readonly open = new Set<net.Socket>();
  /** backend address -> its open connections. */
  private readonly pairs = new Map<string, Set<Pair>>();
  private readonly bytes: SpliceCounters = { aToB: 0, bToA: 0 };
  private readonly unregisterBytes: (() => void) | undefined;
  /** On an overlay: this node's own address there, the source of connections to replicas. */
  private source: string | undefined;

  constructor(
    private readonly service: string,
    private readonly listenAt: { host: string; port: number },
    private readonly targetPort: number,
    private record: ProxyRecord,
    private readonly pool: BackendPool,
    private readonly metrics?: ServiceMetrics,
    private readonly logger?: Logger,
  ) {
    // noDelay: a proxy passes on what it read at once; Nagle would hold a small reply back until
    // the previous one is acknowledged (HAProxy sets TCP_NODELAY on both sides too).
    this.server = net.createServer({ allowHalfOpen: true, noDelay: true }, (c) => this.accept(c));
    this.unregisterBytes = metrics?.addByteSource(() => this.flushBytes());
  }

  private flushBytes(): void {
    const m = this.metrics;
    if (!m) return;
    if (this.bytes.aToB > 0) m.bytes.inc({ service: this.service, direction: 'in' }, this.bytes.aToB);
    if (this.bytes.bToA > 0) m.bytes.inc({ service: this.service, direction: 'out' }, this.bytes.bToA);
    this.bytes.aToB = 0;
    this.bytes.bToA = 0;
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host: this.listenAt.host, port: this.listenAt.port, exclusive: true }, () => {
        this.server.off('error', reject);
        this.server.on('error', (err) => this.logger?.warn({ event: 'lb_proxy_error', service: this.service, err }, 'proxy listener error'));
        resolve();
      });
    });
  }

  /**
   * The backends in rotation (addresses; new connections go to them through the pool, which the
   * caller updates). Open ones stay where they are; those to a backend no longer listed are
   * ended after the drain timeout unless it comes back first.
   */
  update(backends: readonly string[], record: ProxyRecord, source?: string): void {
    this.source = source;
    this.record = record;
    const inRotation = new Set(backends);
    for (const [backend, set] of this.pairs) {
      for (const p of set) {
        if (inRotation.has(backend)) {
          clearTimeout(p.drain);
          delete p.drain;
        } else if (!p.drain) {
          p.drain = setTimeout(() => this.drainExpired(backend, p), drainTimeoutOf(record));
        }
      }
    }
  }

  private drainExpired(backend: string, p: Pair): void {
    this.logger?.info({ event: 'lb_drain_timeout', service: this.service, backend: label(backend, this.targetPort) }, `closed a connection to ${label(backend, this.targetPort)} of service "${this.service}" after the drain timeout`);
    p.client.destroy();
    p.upstream.destroy();
  }

  private accept(client: net.Socket): void {
    this.open.add(client);
    client.once('close', () => this.open.delete(client));
    client.on('error', () => client.destroy());
    client.pause();
    this.tryConnect(client, new Set(), 0);
  }

  /**
   * Finds the client a backend with a free slot: at once, or after waiting in the queue when
   * every backend is at --max-conn. No backend at all (or none left to retry), a full queue or
   * the queue timeout: the client is reset.
   */
  private tryConnect(client: net.Socket, tried: Set<string>, attempt: number): void {
    if (client.destroyed) return;
    const backend = attempt < MAX_ATTEMPTS ? this.pool.take(tried, client.remoteAddress) : undefined;
    if (backend !== undefined) return this.connect(client, backend, tried, attempt);
    if (attempt >= MAX_ATTEMPTS || !this.pool.hasCandidates(tried)) return this.refuse(client, 'no_backend');
    const cancel = this.pool.wait(
      tried,
      client.remoteAddress,
      (b) => {
        client.off('close', cancel!);
        this.connect(client, b, tried, attempt);
      },
      () => this.refuse(client, 'queue_timeout'),
    );
    if (!cancel) return this.refuse(client, 'queue_full');
    // The client left while waiting: its place in the queue goes.
    client.once('close', cancel);
  }

  private refuse(client: net.Socket, reason: 'no_backend' | 'queue_full' | 'queue_timeout'): void {
    this.metrics?.refused.inc({ service: this.service, reason });
    client.resetAndDestroy();
  }

  /** Connects to `backend`, whose slot is already taken. */
  private connect(client: net.Socket, backend: string, tried: Set<string>, attempt: number): void {
    if (client.destroyed) return this.pool.release(backend);
    tried.add(backend);
    const backendLabel = label(backend, this.targetPort);
    const reader = readingInto(client, this.bytes);
    const upstream = net.connect({ host: backend, port: this.targetPort, allowHalfOpen: true, noDelay: true, onread: reader, ...(this.source ? { localAddress: this.source } : {}) });
    reader.attach(upstream);
    upstream.setTimeout(CONNECT_TIMEOUT_MS, () => upstream.destroy(new Error('connect timeout')));
    const onConnectError = () => {
      this.metrics?.connectErrors.inc({ service: this.service, backend: backendLabel });
      upstream.destroy();
      this.pool.release(backend);
      this.tryConnect(client, tried, attempt + 1);
    };
    upstream.once('error', onConnectError);
    upstream.once('connect', () => {
      upstream.off('error', onConnectError);
      upstream.setTimeout(0);
      this.open.add(upstream);
      this.metrics?.connections.inc({ service: this.service, backend: backendLabel });
      this.metrics?.activeConnections.inc({ service: this.service });
      const pair: Pair = { client, upstream };
      let set = this.pairs.get(backend);
      if (!set) this.pairs.set(backend, (set = new Set()));
      set.add(pair);
      upstream.once('close', () => {
        this.open.delete(upstream);
        clearTimeout(pair.drain);
        set.delete(pair);
        if (set.size === 0 && this.pairs.get(backend) === set) this.pairs.delete(backend);
        this.pool.release(backend);
        this.metrics?.activeConnections.dec({ service: this.service });
      });
      const pp = this.record.proxyProtocol;
      if (pp) {
        const c = { srcAddr: client.remoteAddress ?? '', srcPort: client.remotePort ?? 0, dstAddr: client.localAddress ?? '', dstPort: client.localPort ?? 0 };
        upstream.write(pp === 'v1' ? proxyHeaderV1(c) : proxyHeaderV2(c));
      }
      const end = () => {
        client.destroy();
        upstream.destroy();
      };
      upstream.on('error', end);
      client.on('error', end);
      splice(client, upstream, this.bytes, true);
      client.resume();
    });
  }

  close(): Promise<void> {
    for (const s of this.open) s.destroy();
    for (const set of this.pairs.values()) for (const p of set) clearTimeout(p.drain);
    this.flushBytes();
    this.unregisterBytes?.();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

interface Listener {
  update(backends: readonly string[], record: ServiceRecord, source?: string): void;
  close(): Promise<void>;
}

function udpListener(at: { host: string; port: number }, target: number, pool: BackendPool): { listener: Listener; listen: () => Promise<void> } {
  let source: string | undefined;
  const proxy = new UdpProxy({
    listen: at,
    pickBackend: () => {
      const b = pool.pick();
      return b === undefined ? undefined : { host: b, port: target, ...(source ? { source } : {}) };
    },
  });
  return {
    listen: () => proxy.listen(),
    listener: {
      update: (_b, _r, s) => {
        source = s;
      },
      close: () => proxy.close(),
    },
  };
}

/** Replicas on other nodes only through this node's own overlay address (as the kernel path). */
const backendsOf = (s: ServiceState): string[] =>
  s.healthy
    .filter((r) => r.local || s.snat?.[4] !== undefined)
    .map((r) => r.ipv4)
    .filter((a): a is string => a !== undefined);

export class ProxyDataPath {
  private readonly listeners = new Map<string, Listener>();
  /** `service|protocol|target` -> the pool its listeners share. */
  private readonly pools = new Map<string, BackendPool>();
  private readonly unregisterQueues: (() => void) | undefined;

  constructor(
    private readonly logger?: Logger,
    private readonly metrics?: ServiceMetrics,
  ) {
    // shoal_lb_queued_connections: each pool's waiting clients, under its key's service.
    this.unregisterQueues = metrics?.addQueueSource(() => [...this.pools].map(([key, pool]) => [key.slice(0, key.indexOf('|')), pool.queued]));
  }

  async apply(services: readonly ServiceState[]): Promise<void> {
    const wanted = new Map<string, { state: ServiceState; at: { host: string; port: number }; target: number; protocol: 'tcp' | 'udp' }>();
    for (const s of services) {
      if (s.record.lbMode !== 'proxy') continue;
      for (const p of s.record.ports) {
        const at = [{ host: '0.0.0.0', port: p.published }, ...s.record.vips.filter((v) => !v.includes(':')).map((v) => ({ host: v, port: p.target }))];
        for (const a of at) wanted.set(`${s.record.name}|${p.protocol}|${a.host}|${a.port}|${p.target}`, { state: s, at: a, target: p.target, protocol: p.protocol });
      }
    }
    for (const [key, l] of this.listeners) {
      if (wanted.has(key)) continue;
      this.listeners.delete(key);
      await l.close();
    }
    const poolKey = (w: { state: ServiceState; protocol: string; target: number }) => `${w.state.record.name}|${w.protocol}|${w.target}`;
    const updated = new Set<string>();
    for (const w of wanted.values()) {
      const k = poolKey(w);
      if (updated.has(k)) continue;
      updated.add(k);
      let pool = this.pools.get(k);
      if (!pool) this.pools.set(k, (pool = new BackendPool(poolSettings(w.state.record, w.protocol), SLOW_START_GRACE_MS)));
      pool.update(backendsOf(w.state), poolSettings(w.state.record, w.protocol));
    }
    for (const [k, pool] of this.pools) {
      if (updated.has(k)) continue;
      this.pools.delete(k);
      pool.close();
    }
    for (const [key, w] of wanted) {
      const source = w.state.snat?.[4]?.address;
      const backends = backendsOf(w.state);
      const pool = this.pools.get(poolKey(w))!;
      let l = this.listeners.get(key);
      if (!l) {
        try {
          if (w.protocol === 'tcp') {
            const p = new BalancedTcpProxy(w.state.record.name, w.at, w.target, w.state.record, pool, this.metrics, this.logger);
            await p.listen();
            l = p as unknown as Listener;
          } else {
            const u = udpListener(w.at, w.target, pool);
            await u.listen();
            l = u.listener;
          }
        } catch (err) {
          this.logger?.warn({ event: 'lb_proxy_listen_failed', service: w.state.record.name, address: label(w.at.host, w.at.port), err }, `failed to listen on ${label(w.at.host, w.at.port)}: ${(err as Error).message}`);
          continue;
        }
        this.listeners.set(key, l);
      }
      l.update(backends, w.state.record, source);
    }
  }

  async close(): Promise<void> {
    this.unregisterQueues?.();
    await Promise.all([...this.listeners.values()].map((l) => l.close()));
    this.listeners.clear();
    for (const pool of this.pools.values()) pool.close();
    this.pools.clear();
  }
}
