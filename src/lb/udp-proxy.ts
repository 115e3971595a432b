/**
 * A UDP proxy: one listening socket; per client address a connected socket towards the backend,
 * so replies find their way back; flows expire after an idle period, as conntrack's would.
 * Companion of tcp-proxy.ts for published UDP ports the kernel cannot NAT ([::1]).
 */
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { Backend } from './tcp-proxy.js';

export interface UdpProxyOptions {
  listen: { host: string; port: number };
  pickBackend: () => Backend | undefined;
  /** A flow with no packet either way for this long is closed (default 30 s). */
  idleTimeoutMs?: number;
  /** At most this many flows; new clients past it are dropped (default 4096). */
  maxFlows?: number;
  onError?: (err: Error, where: string) => void;
}

interface Flow {
  socket: dgram.Socket;
  timer: NodeJS.Timeout;
  /** Datagrams that arrived before connect() completed; a connected send before then throws. */
  pending: Buffer[] | undefined;
}

export class UdpProxy {
  private readonly socket: dgram.Socket;
  private readonly flows = new Map<string, Flow>();
  private readonly opts: UdpProxyOptions;

  constructor(opts: UdpProxyOptions) {
    this.opts = opts;
    this.socket = dgram.createSocket({ type: isIPv6(opts.listen.host) ? 'udp6' : 'udp4', ipv6Only: isIPv6(opts.listen.host) });
    this.socket.on('message', (msg, rinfo) => this.forward(msg, rinfo));
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.socket.once('error', onError);
      this.socket.bind({ address: this.opts.listen.host, port: this.opts.listen.port, exclusive: true }, () => {
        this.socket.off('error', onError);
        this.socket.on('error', (err) => this.opts.onError?.(err, 'listener'));
        resolve();
      });
    });
  }

  address(): { host: string; port: number } {
    const a = this.socket.address();
    return { host: a.address, port: a.port };
  }

  get activeFlows(): number {
    return this.flows.size;
  }

  private forward(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const key = `${rinfo.address}|${rinfo.port}`;
    let flow = this.flows.get(key);
    if (!flow) {
      const backend = this.opts.pickBackend();
      if (!backend || this.flows.size >= (this.opts.maxFlows ?? 4096)) return;
      flow = this.openFlow(key, backend, rinfo);
    }
    this.touch(key, flow);
    if (flow.pending) flow.pending.push(msg);
    else flow.socket.send(msg);
  }

  private openFlow(key: string, backend: Backend, client: dgram.RemoteInfo): Flow {
    const socket = dgram.createSocket(isIPv6(backend.host) ? 'udp6' : 'udp4');
    // A connected socket receives only the backend's replies. Until connect() completes, the
    // client's datagrams wait in `pending`.
    const connect = () =>
      socket.connect(backend.port, backend.host, () => {
        const flow = this.flows.get(key);
        if (!flow?.pending) return;
        for (const msg of flow.pending) socket.send(msg);
        flow.pending = undefined;
      });
    if (backend.source) socket.bind({ address: backend.source, port: 0 }, connect);
    else connect();
    socket.on('message', (reply) => {
      const flow = this.flows.get(key);
      if (flow) this.touch(key, flow);
      this.socket.send(reply, client.port, client.address);
    });
    socket.on('error', (err) => {
      this.opts.onError?.(err, `backend ${backend.host}:${backend.port}`);
      this.closeFlow(key);
    });
    const flow: Flow = { socket, timer: setTimeout(() => this.closeFlow(key), this.idleMs()), pending: [] };
    flow.timer.unref();
    this.flows.set(key, flow);
    return flow;
  }

  private idleMs(): number {
    return this.opts.idleTimeoutMs ?? 30_000;
  }

  private touch(key: string, flow: Flow): void {
    flow.timer.refresh();
  }

  private closeFlow(key: string): void {
    const flow = this.flows.get(key);
    if (!flow) return;
    this.flows.delete(key);
    clearTimeout(flow.timer);
    flow.socket.close();
  }

  close(): Promise<void> {
    for (const key of [...this.flows.keys()]) this.closeFlow(key);
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }
}
