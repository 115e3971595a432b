import dgram from 'node:dgram';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { TcpProxy } from '../../src/lb/tcp-proxy.js';
import { UdpProxy } from '../../src/lb/udp-proxy.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

function tcpEcho(host: string): Promise<net.Server> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    const chunks: Buffer[] = [];
    s.on('data', (d) => chunks.push(d));
    // Answer only after the client half-closes: proves the proxy forwards FIN both ways.
    s.on('end', () => s.end(`echo:${Buffer.concat(chunks).toString()}`));
  });
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  return new Promise((resolve) => server.listen(0, host, () => resolve(server)));
}

function tcpRequest(host: string, port: number, body: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, allowHalfOpen: true }, () => s.end(body));
    const chunks: Buffer[] = [];
    s.on('data', (d) => chunks.push(d));
    s.on('end', () => resolve(Buffer.concat(chunks).toString()));
    s.on('error', reject);
  });
}

describe('TcpProxy', () => {
  it('splices a connection to the backend, half-close included, from ::1 to an IPv4 backend', async () => {
    const backend = await tcpEcho('127.0.0.1');
    const port = (backend.address() as net.AddressInfo).port;
    const seen: string[] = [];
    const proxy = new TcpProxy({ listen: { host: '::1', port: 0 }, pickBackend: () => ({ host: '127.0.0.1', port }), onConnection: (b) => seen.push(`${b.host}:${b.port}`) });
    await proxy.listen();
    cleanups.push(() => proxy.close());
    const answer = await tcpRequest('::1', proxy.address().port, 'hello');
    expect(answer).toBe('echo:hello');
    expect(seen).toEqual([`127.0.0.1:${port}`]);
  });

  it('resets the client when no backend is available or the backend refuses', async () => {
    const proxy = new TcpProxy({ listen: { host: '127.0.0.1', port: 0 }, pickBackend: () => undefined });
    await proxy.listen();
    cleanups.push(() => proxy.close());
    await expect(tcpRequest('127.0.0.1', proxy.address().port, 'x')).rejects.toThrow(/ECONNRESET|socket hang up/);

    // A port nobody listens on: reserve one, then free it.
    const probe = await tcpEcho('127.0.0.1');
    const deadPort = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const errors: string[] = [];
    const refusing = new TcpProxy({ listen: { host: '127.0.0.1', port: 0 }, pickBackend: () => ({ host: '127.0.0.1', port: deadPort }), onError: (e, where) => errors.push(`${where}: ${e.message}`) });
    await refusing.listen();
    cleanups.push(() => refusing.close());
    await expect(tcpRequest('127.0.0.1', refusing.address().port, 'x')).rejects.toThrow(/ECONNRESET|socket hang up/);
    expect(errors.join('\n')).toMatch(/ECONNREFUSED/);
  });

  it('refuses to listen on a port already taken', async () => {
    const taken = await tcpEcho('127.0.0.1');
    const proxy = new TcpProxy({ listen: { host: '127.0.0.1', port: (taken.address() as net.AddressInfo).port }, pickBackend: () => undefined });
    await expect(proxy.listen()).rejects.toThrow(/EADDRINUSE/);
  });
});

describe('UdpProxy', () => {
  it('relays datagrams both ways per client and expires idle flows', async () => {
    const backend = dgram.createSocket('udp4');
    backend.on('message', (msg, rinfo) => backend.send(`pong:${msg.toString()}`, rinfo.port, rinfo.address));
    await new Promise<void>((r) => backend.bind(0, '127.0.0.1', () => r()));
    cleanups.push(() => new Promise<void>((r) => backend.close(() => r())));
    const proxy = new UdpProxy({ listen: { host: '::1', port: 0 }, pickBackend: () => ({ host: '127.0.0.1', port: backend.address().port }), idleTimeoutMs: 200 });
    await proxy.listen();
    cleanups.push(() => proxy.close());

    const ask = async (client: dgram.Socket, text: string) => {
      const reply = new Promise<string>((resolve) => client.once('message', (m) => resolve(m.toString())));
      client.send(text, proxy.address().port, '::1');
      return reply;
    };
    const a = dgram.createSocket('udp6');
    const b = dgram.createSocket('udp6');
    cleanups.push(() => { a.close(); b.close(); });
    expect(await ask(a, 'one')).toBe('pong:one');
    expect(await ask(b, 'two')).toBe('pong:two');
    expect(await ask(a, 'three')).toBe('pong:three');
    expect(proxy.activeFlows).toBe(2);
    await new Promise((r) => setTimeout(r, 400));
    expect(proxy.activeFlows).toBe(0);
  });
});
