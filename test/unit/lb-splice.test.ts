import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { readingInto, splice, type SpliceCounters } from '../../src/lb/splice.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const listen = (server: net.Server) => new Promise<number>((r) => server.listen(0, '127.0.0.1', () => r((server.address() as net.AddressInfo).port)));

/** A proxy on 127.0.0.1 splicing every connection to `backendPort`, the way BalancedTcpProxy does. */
async function proxyTo(backendPort: number, counters: SpliceCounters, ownBuffer: boolean): Promise<number> {
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    client.pause();
    const reader = ownBuffer ? readingInto(client, counters) : undefined;
    const upstream = net.connect({ host: '127.0.0.1', port: backendPort, allowHalfOpen: true, ...(reader ? { onread: reader } : {}) });
    reader?.attach(upstream);
    upstream.once('connect', () => {
      splice(client, upstream, counters, ownBuffer);
      client.resume();
    });
  });
  cleanups.push(() => server.close());
  return listen(server);
}

describe('splice', () => {
  for (const ownBuffer of [false, true]) {
    it(`carries bytes both ways intact under backpressure, FIN included, and counts them${ownBuffer ? ' (backend read into its own buffer)' : ''}`, async () => {
      const down = randomBytes(8 * 1024 * 1024);
      const up = randomBytes(2 * 1024 * 1024);
      let backendGot = '';
      const backend = net.createServer({ allowHalfOpen: true }, (s) => {
        const chunks: Buffer[] = [];
        s.on('data', (d: Buffer) => chunks.push(d));
        // Its answer only after the client's FIN: the half-close went through.
        s.on('end', () => {
          backendGot = sha(Buffer.concat(chunks));
          s.end(down);
        });
      });
      cleanups.push(() => backend.close());
      const counters = { aToB: 0, bToA: 0 };
      const port = await proxyTo(await listen(backend), counters, ownBuffer);
      const received = await new Promise<Buffer>((resolve, reject) => {
        const c = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true }, () => c.end(up));
        const chunks: Buffer[] = [];
        // A slow reader at first: the proxy's writes to it queue up and the backend is paused.
        c.pause();
        setTimeout(() => c.resume(), 300);
        c.on('data', (d: Buffer) => chunks.push(d));
        c.on('end', () => resolve(Buffer.concat(chunks)));
        c.on('error', reject);
      });
      expect(backendGot).toBe(sha(up));
      expect(received.length).toBe(down.length);
      expect(sha(received)).toBe(sha(down));
      expect(counters).toEqual({ aToB: up.length, bToA: down.length });
    });
  }
});
