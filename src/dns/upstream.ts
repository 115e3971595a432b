/**
 * One exchange with one upstream over UDP or TCP. Sockets are opened by the daemon's process in
 * the host namespace, so loopback resolvers (systemd-resolved's 127.0.0.53) are reachable.
 * UDP goes over a few pooled connected sockets per upstream (./upstream-udp.ts says why and
 * what a reply must match); TCP opens a connection per exchange (only truncated answers take it).
 */
import net from 'node:net';
import { ShoalError } from '../errors.js';
import type { Upstream } from './ip.js';
import { UdpUpstreamPool } from './upstream-udp.js';

// The text form is parsed in ./ip.ts, which plugins load without node:net and node:dgram.
export { parseUpstream, type Upstream } from './ip.js';

export type Protocol = 'udp' | 'tcp';

export interface UpstreamTransport {
  exchange(upstream: Upstream, query: Buffer, protocol: Protocol, timeoutMs: number): Promise<Buffer>;
}

export class UpstreamTimeout extends ShoalError {
  constructor(upstream: Upstream, protocol: Protocol, timeoutMs: number) {
    super('DNS_UPSTREAM_TIMEOUT', `failed to query "${upstream.label}": no ${protocol} answer within ${timeoutMs} ms`);
  }
}

function failed(upstream: Upstream, cause: unknown): ShoalError {
  const msg = cause instanceof Error ? cause.message : String(cause);
  return new ShoalError('DNS_UPSTREAM_ERROR', `failed to query "${upstream.label}": ${msg}`, { cause });
}

function matches(query: Buffer, reply: Buffer): boolean {
  return reply.length >= 12 && reply.readUInt16BE(0) === query.readUInt16BE(0) && (reply.readUInt16BE(2) & 0x8000) !== 0;
}

const udpPool = new UdpUpstreamPool({ timeout: (u, ms) => new UpstreamTimeout(u, 'udp', ms), failed });

function tcpExchange(upstream: Upstream, query: Buffer, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: upstream.host, port: upstream.port });
    let buf: Buffer = Buffer.alloc(0);
    let done = false;
    const finish = (err: Error | undefined, reply?: Buffer): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(reply as Buffer);
    };
    const timer = setTimeout(() => finish(new UpstreamTimeout(upstream, 'tcp', timeoutMs)), timeoutMs);
    sock.on('error', (err) => finish(failed(upstream, err)));
    sock.on('close', () => finish(failed(upstream, new Error('connection closed before an answer'))));
    sock.on('connect', () => {
      const framed = Buffer.allocUnsafe(query.length + 2);
      framed.writeUInt16BE(query.length, 0);
      query.copy(framed, 2);
      sock.write(framed);
    });
    sock.on('data', (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (buf.length < len + 2) return;
        const msg = buf.subarray(2, len + 2);
        buf = buf.subarray(len + 2);
        if (matches(query, msg)) return finish(undefined, Buffer.from(msg));
      }
    });
  });
}

export const socketTransport: UpstreamTransport = {
  exchange(upstream, query, protocol, timeoutMs) {
    return protocol === 'udp' ? udpPool.exchange(upstream, query, timeoutMs) : tcpExchange(upstream, query, timeoutMs);
  },
};
