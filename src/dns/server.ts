/**
 * UDP and TCP listeners, one pair per (address, port). The daemon calls addListener/
 * removeListener per network gateway as networks come and go; other listeners are untouched.
 * A failing socket is logged, never fatal. All listeners share one engine (and so one snapshot).
 */
import dgram from 'node:dgram';
import net from 'node:net';
import type { Logger } from 'pino';
import { ShoalError } from '../errors.js';
import { BatchUdpSocket } from '../kernel/udp-batch.js';
import type { DnsEngine } from './engine.js';
import { serveTcpConnection } from './tcp.js';

export interface ServerOptions {
  logger?: Logger;
  /** Close a TCP connection after this long without traffic (default 10 s, RFC 7766 advice). */
  tcpIdleMs?: number;
  /** Accepted TCP connections at most, per listener (default 1000). */
  maxTcpConnections?: number;
  /** Queries in flight per TCP connection before reading pauses (default 64). */
  maxTcpPipeline?: number;
  /** Unsent answer bytes a TCP client may accumulate before it is disconnected (default 256 KiB). */
  maxTcpWriteBuffer?: number;
  /** SO_RCVBUF/SO_SNDBUF for the UDP sockets (default 4 MiB; the kernel may cap it). */
  udpBufferBytes?: number;
  /**
   * `dgram` (Node's socket, one system call per datagram) or `batch` (recvmmsg/sendmmsg through
   * the addon, src/kernel/udp-batch.ts). Default dgram.
   */
  udp?: 'dgram' | 'batch';
  /** SO_REUSEPORT on both sockets, so each worker thread binds its own (worker-pool.ts). */
  reusePort?: boolean;
}

/** A bound UDP socket of either kind. */
interface UdpSocket {
  readonly port: number;
  close(): Promise<void>;
}

export interface ListenerAddress {
  address: string;
  port: number;
}

interface Listener extends ListenerAddress {
  udp: UdpSocket;
  tcp: net.Server;
  connections: Set<net.Socket>;
}

const key = (address: string, port: number): string => `${address}|${port}`;

export class DnsServer {
  private readonly engine: Pick<DnsEngine, 'handle'>;
  private readonly opts: ServerOptions;
  private readonly active = new Map<string, Listener>();
  private readonly opening = new Map<string, Promise<ListenerAddress>>();

  constructor(engine: Pick<DnsEngine, 'handle'>, options: ServerOptions = {}) {
    this.engine = engine;
    this.opts = options;
  }

  listeners(): ListenerAddress[] {
    return [...this.active.values()].map(({ address, port }) => ({ address, port }));
  }

  /**
   * Starts answering on `address:port` (UDP and TCP). Idempotent for a listener that already
   * exists. With port 0 the kernel picks a port free for UDP and TCP both; the result says which.
   */
  addListener(address: string, port = 53): Promise<ListenerAddress> {
    const k = key(address, port);
    const existing = this.active.get(k);
    if (existing) return Promise.resolve({ address, port: existing.port });
    const inProgress = this.opening.get(k);
    if (inProgress) return inProgress;
    const p = this.open(address, port).finally(() => this.opening.delete(k));
    this.opening.set(k, p);
    return p;
  }

  private async open(address: string, port: number): Promise<ListenerAddress> {
    let lastErr: unknown;
    for (let attempt = 0; attempt < (port === 0 ? 5 : 1); attempt += 1) {
      const udp = await this.bindUdp(address, port).catch((err: unknown) => {
        lastErr = err;
        return undefined;
      });
      if (!udp) continue;
      const bound = udp.port;
      try {
        const connections = new Set<net.Socket>();
        const tcp = await this.listenTcp(address, bound, connections);
        const l: Listener = { address, port: bound, udp, tcp, connections };
        this.active.set(key(address, port), l);
        if (port === 0) this.active.set(key(address, bound), l);
        this.opts.logger?.info({ event: 'dns_listener_added', address, port: bound }, 'DNS listener added');
        return { address, port: bound };
      } catch (err) {
        lastErr = err;
        await udp.close();
      }
    }
    throw new ShoalError('DNS_LISTEN_FAILED', `failed to listen on "${address}:${port}": ${String((lastErr as Error)?.message ?? lastErr)}`, { cause: lastErr });
  }

  private async bindUdp(address: string, port: number): Promise<UdpSocket> {
    const size = this.opts.udpBufferBytes ?? 4 * 1024 * 1024;
    if (this.opts.udp === 'batch') {
      const sock = BatchUdpSocket.bind(address, port, { reusePort: this.opts.reusePort, bufferBytes: size });
      sock.start((d, later) => this.onDatagram(d.data, d.source, () => later(d.slot)));
      return { port: sock.port, close: () => Promise.resolve(sock.close()) };
    }
    const sock = await this.bindDgram(address, port, size);
    return {
      port: sock.address().port,
      close: () =>
        new Promise<void>((resolve) => {
          try {
            sock.close(() => resolve());
          } catch {
            resolve();
          }
        }),
    };
  }

  /** One datagram on the batched path: the answer now, or sent later through `later()`. */
  private onDatagram(msg: Buffer, source: string, later: () => (answer: Buffer) => void): Buffer | undefined {
    let answer;
    try {
      answer = this.engine.handle(msg, source, 'udp');
    } catch (err) {
      this.opts.logger?.error({ event: 'dns_query_error', err }, 'DNS engine threw');
      return undefined;
    }
    if (answer instanceof Promise) {
      const send = later();
      answer.then(
        (a) => a && send(a),
        () => undefined,
      );
      return undefined;
    }
    return answer;
  }

  private bindDgram(address: string, port: number, size: number): Promise<dgram.Socket> {
    return new Promise((resolve, reject) => {
      const sock = dgram.createSocket({ type: net.isIPv6(address) ? 'udp6' : 'udp4', recvBufferSize: size, sendBufferSize: size, reusePort: !!this.opts.reusePort });
      const onError = (err: Error): void => {
        sock.close();
        reject(err);
      };
      sock.once('error', onError);
      sock.bind({ address, port, exclusive: true }, () => {
        sock.off('error', onError);
        sock.on('error', (err) => this.opts.logger?.warn({ event: 'dns_socket_error', address, err }, 'DNS UDP socket error'));
        sock.on('message', (msg, rinfo) => this.onUdp(sock, msg, rinfo));
        resolve(sock);
      });
    });
  }

  private onUdp(sock: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    let answer;
    try {
      answer = this.engine.handle(msg, rinfo.address, 'udp');
    } catch (err) {
      this.opts.logger?.error({ event: 'dns_query_error', err }, 'DNS engine threw');
      return;
    }
    if (answer instanceof Promise) {
      answer.then(
        (a) => a && send(sock, a, rinfo),
        () => undefined,
      );
    } else if (answer) {
      send(sock, answer, rinfo);
    }
  }

  private listenTcp(address: string, port: number, connections: Set<net.Socket>): Promise<net.Server> {
    const tcpOpts = {
      idleMs: this.opts.tcpIdleMs ?? 10_000,
      maxPipeline: this.opts.maxTcpPipeline ?? 64,
      maxWriteBuffer: this.opts.maxTcpWriteBuffer ?? 256 * 1024,
    };
    return new Promise((resolve, reject) => {
      const server = net.createServer((sock) => {
        connections.add(sock);
        sock.once('close', () => connections.delete(sock));
        serveTcpConnection(sock, this.engine, tcpOpts);
      });
      server.maxConnections = this.opts.maxTcpConnections ?? 1000;
      server.once('error', reject);
      server.listen({ host: address, port, exclusive: true, reusePort: !!this.opts.reusePort }, () => {
        server.off('error', reject);
        server.on('error', (err) => this.opts.logger?.warn({ event: 'dns_socket_error', address, err }, 'DNS TCP server error'));
        resolve(server);
      });
    });
  }

  /** Stops answering on `address:port`; open TCP connections there are closed. */
  async removeListener(address: string, port = 53): Promise<boolean> {
    await this.opening.get(key(address, port))?.catch(() => undefined);
    const l = this.active.get(key(address, port));
    if (!l) return false;
    for (const [k, v] of this.active) if (v === l) this.active.delete(k);
    await closeListener(l);
    this.opts.logger?.info({ event: 'dns_listener_removed', address, port: l.port }, 'DNS listener removed');
    return true;
  }

  async close(): Promise<void> {
    await Promise.all([...this.opening.values()].map((p) => p.catch(() => undefined)));
    const all = new Set(this.active.values());
    this.active.clear();
    await Promise.all([...all].map(closeListener));
  }
}

function send(sock: dgram.Socket, answer: Buffer, rinfo: dgram.RemoteInfo): void {
  try {
    sock.send(answer, rinfo.port, rinfo.address);
  } catch {
    // The listener was removed while a forwarded answer was pending: nothing to send it on.
  }
}

function closeListener(l: Listener): Promise<void> {
  return new Promise((resolve) => {
    let left = 2;
    const done = (): void => {
      left -= 1;
      if (left === 0) resolve();
    };
    void l.udp.close().then(done);
    l.tcp.close(() => done());
    for (const c of l.connections) c.destroy();
  });
}
