/**
 * A connection-level TCP proxy: accept on one address, pick a backend per connection, splice
 * the two sockets. Used where the kernel cannot NAT (a published port reached on [::1]: IPv6
 * drops replies to ::1 that arrive on a bridge, and an IPv4-only container cannot be the target
 * of an IPv6 connection at all), the way docker-proxy does it.
 *
 * Half-close is honoured both ways (allowHalfOpen), so protocols that shut down their write side
 * and wait for the answer (HTTP/1.0 clients, `nc -N`) work.
 */
import net from 'node:net';

export interface Backend {
  host: string;
  port: number;
  /** Local address to connect from (a replica on another node answers only its node's own overlay address). */
  source?: string;
}

export interface TcpProxyOptions {
  listen: { host: string; port: number };
  /** The backend for a new connection; undefined refuses it (the client sees a reset). */
  pickBackend: () => Backend | undefined;
  connectTimeoutMs?: number;
  onConnection?: (backend: Backend) => void;
  onError?: (err: Error, where: string) => void;
}

export class TcpProxy {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly opts: TcpProxyOptions;

  constructor(opts: TcpProxyOptions) {
    this.opts = opts;
    this.server = net.createServer({ allowHalfOpen: true }, (client) => this.accept(client));
  }

  /** Resolves once listening; rejects with the bind error (EADDRINUSE, EADDRNOTAVAIL). */
  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.server.once('error', onError);
      this.server.listen({ host: this.opts.listen.host, port: this.opts.listen.port, exclusive: true }, () => {
        this.server.off('error', onError);
        this.server.on('error', (err) => this.opts.onError?.(err, 'listener'));
        resolve();
      });
    });
  }

  address(): { host: string; port: number } {
    const a = this.server.address() as net.AddressInfo;
    return { host: a.address, port: a.port };
  }

  get activeConnections(): number {
    return this.sockets.size / 2;
  }

  private track(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
  }

  private accept(client: net.Socket): void {
    const backend = this.opts.pickBackend();
    if (!backend) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect({ host: backend.host, port: backend.port, allowHalfOpen: true, ...(backend.source ? { localAddress: backend.source } : {}) });
    this.track(client);
    this.track(upstream);
    const timeout = this.opts.connectTimeoutMs ?? 5000;
    upstream.setTimeout(timeout, () => upstream.destroy(new Error(`connect to ${backend.host}:${backend.port} timed out`)));
    upstream.once('connect', () => {
      upstream.setTimeout(0);
      this.opts.onConnection?.(backend);
    });
    // Any error on either side ends both: a reset from the backend becomes a reset to the client.
    const fail = (where: string) => (err: Error) => {
      this.opts.onError?.(err, where);
      client.resetAndDestroy();
      upstream.destroy();
    };
    client.on('error', fail('client'));
    upstream.on('error', fail(`backend ${backend.host}:${backend.port}`));
    client.pipe(upstream);
    upstream.pipe(client);
  }

  /** Stops accepting and ends every proxied connection. */
  close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
