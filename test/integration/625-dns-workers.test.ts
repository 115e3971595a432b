/**
 * The DNS server in worker threads (src/dns/worker-pool.ts), each with its own SO_REUSEPORT
 * sockets on one loopback listener: every worker gives the same, right answers (UDP and TCP);
 * a record change reaches every worker within 100 ms; a worker that dies is replaced while the
 * others keep answering; the metrics count each answer exactly once across workers.
 * Which worker answered is learnt from the pool's per-worker counts, never from the answer.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import dgram from 'node:dgram';
import net from 'node:net';
import { Registry } from 'prom-client';
import { ShoalDns } from '../../src/dns/index.js';
import type { DnsRecordsInput } from '../../src/dns/types.js';
import { decode, query } from '../helpers/dns.js';
import { loopbackNet } from '../helpers/dns-live.js';
import { buildDnsWorker } from '../helpers/dns-worker-bundle.js';

const WORKERS = 3;
const red = loopbackNet(81); // 127.81.<b>.0/24, gateway .1
let bundle: Awaited<ReturnType<typeof buildDnsWorker>> | undefined;
let dns: ShoalDns;
let port: number;
const registry = new Registry();

function records(extra: DnsRecordsInput['endpoints'] = []): DnsRecordsInput {
  return {
    networks: [{ name: 'red', domain: 'red.shoal', gateways: [red(1)], subnets: [`${red(0)}/24`], hosts: { 'db.internal': ['192.0.2.50'] }, upstreams: ['127.0.0.1:9'] }],
    endpoints: [{ network: 'red', containerId: 'c-web', name: 'web', aliases: ['www'], ipv4: [red(10)], ipv6: ['fd18:1::10'] }, ...extra],
  };
}

/** One question over UDP from `sock` (its source port picks the worker), answered within `ms`. */
function ask(sock: dgram.Socket, name: string, type: 'A' | 'AAAA' | 'PTR' = 'A', ms = 1000): Promise<ReturnType<typeof decode> | undefined> {
  const id = Math.floor(Math.random() * 0xffff);
  return new Promise((resolve) => {
    const timer = setTimeout(() => done(undefined), ms);
    const onMessage = (m: Buffer): void => {
      const d = decode(m);
      if (d.id === id) done(d);
    };
    const done = (d: ReturnType<typeof decode> | undefined): void => {
      clearTimeout(timer);
      sock.off('message', onMessage);
      resolve(d);
    };
    sock.on('message', onMessage);
    sock.send(query(name, type, { id }), port, red(1));
  });
}

function askTcp(name: string): Promise<ReturnType<typeof decode>> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ host: red(1), port, localAddress: red(10) }, () => {
      const q = query(name, 'A');
      const framed = Buffer.alloc(q.length + 2);
      framed.writeUInt16BE(q.length, 0);
      q.copy(framed, 2);
      c.write(framed);
    });
    let buf = Buffer.alloc(0);
    c.setTimeout(2000, () => c.destroy(new Error('tcp timeout')));
    c.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= buf.readUInt16BE(0) + 2) {
        resolve(decode(buf.subarray(2, buf.readUInt16BE(0) + 2)));
        c.end();
      }
    });
    c.on('error', reject);
  });
}

function openClients(n: number): Promise<dgram.Socket[]> {
  return Promise.all(
    Array.from({ length: n }, () => {
      const s = dgram.createSocket('udp4');
      return new Promise<dgram.Socket>((resolve) => s.bind(0, red(10), () => resolve(s)));
    }),
  );
}

/** The answers a resolver cares about, in comparable form. */
const view = (d: ReturnType<typeof decode> | undefined) => d && { rcode: d.rcode, flags: d.flags, answers: (d.answers ?? []).map((a) => ({ name: a.name, type: a.type, ttl: (a as { ttl?: number }).ttl, data: String((a as { data: unknown }).data) })) };

/** Requests each worker answered since the last call (indices by worker). */
async function answeredByWorker(): Promise<number[]> {
  const counts = await dns.pool!.collectCounts();
  return Array.from({ length: WORKERS }, (_, i) => counts[i]?.answered ?? 0);
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
  }
}

beforeAll(async () => {
  bundle = await buildDnsWorker('625');
  dns = new ShoalDns({ registry, workers: WORKERS, workerScript: bundle.script, udp: 'batch', localTtl: 5, resolvConfPath: '/nonexistent', forwardTimeoutMs: 300 });
  dns.setRecords(records());
  expect(await dns.pool!.whenApplied()).toBe(true);
  port = (await dns.addListener(red(1), 0)).port;
}, 60_000);

afterAll(async () => {
  await dns?.close(0);
  bundle?.remove();
});

describe('625 dns workers', () => {
  it('every worker answers, and all give the same right answers (UDP and TCP)', async () => {
    await answeredByWorker(); // start counting from here
    const seen = new Array<number>(WORKERS).fill(0);
    const expected = {
      web: { rcode: 'NOERROR', data: [red(10)] },
      aaaa: { rcode: 'NOERROR', data: ['fd18:1::10'] },
      ptr: { rcode: 'NOERROR', data: ['web.red.shoal'] },
      nx: { rcode: 'NXDOMAIN', data: [] as string[] },
    };
    const first: unknown[] = [];
    await until('an answer from every worker', async () => {
      const [sock] = await openClients(1);
      const got = [await ask(sock!, 'www'), await ask(sock!, 'web.red', 'AAAA'), await ask(sock!, red(10).split('.').reverse().join('.') + '.in-addr.arpa', 'PTR'), await ask(sock!, 'nosuch.red.shoal')];
      sock!.close();
      expect(got.map((d) => d?.rcode)).toEqual([expected.web.rcode, expected.aaaa.rcode, expected.ptr.rcode, expected.nx.rcode]);
      expect(got.map((d) => (d?.answers ?? []).map((a) => String((a as { data: unknown }).data)))).toEqual([expected.web.data, expected.aaaa.data, expected.ptr.data, expected.nx.data]);
      const views = got.map(view).map((v) => ({ ...v, answers: v?.answers.map((a) => ({ ...a, name: a.name.toLowerCase() })) }));
      if (first.length === 0) first.push(...views);
      expect(views).toEqual(first);
      (await answeredByWorker()).forEach((n, i) => (seen[i] = (seen[i] ?? 0) + n));
      return seen.every((n) => n > 0) ? true : undefined;
    }, 20_000);
    // TCP connections are spread over the workers' listening sockets the same way.
    const tcpSeen = new Array<number>(WORKERS).fill(0);
    await until('a TCP answer from every worker', async () => {
      const d = await askTcp('web');
      expect(view(d)?.answers.map((a) => a.data)).toEqual([red(10)]);
      (await answeredByWorker()).forEach((n, i) => (tcpSeen[i] = (tcpSeen[i] ?? 0) + n));
      return tcpSeen.every((n) => n > 0) ? true : undefined;
    }, 20_000);
  }, 60_000);

  it('a record added, then removed, is answered right by every worker within 100 ms', async () => {
    // Client sockets that between them reach every worker (checked, not assumed).
    const clients = await openClients(24);
    try {
      await answeredByWorker();
      await Promise.all(clients.map((c) => ask(c, 'web')));
      expect((await answeredByWorker()).every((n) => n > 0)).toBe(true);

      // Asked under the network's domain, so the name's absence is a local NXDOMAIN too (no
      // upstream round trip in the measurement).
      const allSee = async (name: string, want: { rcode: string; data: string[] }): Promise<void> => {
        const pending = new Set(clients);
        await until(`${name} -> ${JSON.stringify(want)} from every client`, async () => {
          await Promise.all(
            [...pending].map(async (c) => {
              const d = await ask(c, name, 'A', 100);
              if (d && d.rcode === want.rcode && JSON.stringify((d.answers ?? []).map((a) => String((a as { data: unknown }).data))) === JSON.stringify(want.data)) pending.delete(c);
            }),
          );
          return pending.size === 0 ? true : undefined;
        }, 2000);
      };
      let t0 = performance.now();
      dns.setRecords(records([{ network: 'red', containerId: 'c-new', name: 'newbie', ipv4: [red(77)] }]));
      await allSee('newbie.red.shoal', { rcode: 'NOERROR', data: [red(77)] });
      const added = performance.now() - t0;
      t0 = performance.now();
      dns.setRecords(records());
      await allSee('newbie.red.shoal', { rcode: 'NXDOMAIN', data: [] });
      const removed = performance.now() - t0;
      expect({ added: added < 100, removed: removed < 100, ms: [Math.round(added), Math.round(removed)] }).toMatchObject({ added: true, removed: true });
    } finally {
      for (const c of clients) c.close();
    }
  }, 30_000);

  it('counts every answer exactly once across workers', async () => {
    const total = async (): Promise<number> => {
      const m = await registry.getSingleMetric('shoal_dns_requests_total')!.get();
      return m.values.filter((v) => v.labels.network === 'red' && v.labels.qtype === 'A').reduce((a, v) => a + v.value, 0);
    };
    const before = await total();
    const clients = await openClients(12);
    let answered = 0;
    for (const c of clients) for (let i = 0; i < 5; i += 1) if (await ask(c, 'web')) answered += 1;
    for (const c of clients) c.close();
    expect(answered).toBe(60);
    expect((await total()) - before).toBe(60);
  }, 30_000);

  it('a worker that dies is replaced, and the listener keeps answering meanwhile', async () => {
    const before = dns.pool!.threadIds();
    dns.pool!.crash(1);
    // While worker 1 is gone and being replaced, fresh clients (new source ports) keep getting
    // answers: the kernel hands the dead socket's share to the sockets left.
    const deadline = Date.now() + 1500;
    let asked = 0;
    let unanswered = 0;
    while (Date.now() < deadline) {
      const [c] = await openClients(1);
      // One retry, as a stub resolver would: a query already queued on the dying socket is lost.
      const d = (await ask(c!, 'web', 'A', 300)) ?? (await ask(c!, 'web', 'A', 300));
      c!.close();
      asked += 1;
      if (!d || view(d)?.answers[0]?.data !== red(10)) unanswered += 1;
    }
    expect({ asked: asked > 10, unanswered }).toEqual({ asked: true, unanswered: 0 });
    const replaced = await until('worker 1 replaced', async () => {
      const ids = dns.pool!.threadIds();
      return ids[1] !== undefined && ids[1] !== before[1] ? ids : undefined;
    }, 10_000);
    expect(replaced[0]).toBe(before[0]);
    // The replacement has the records and the listener: it answers its share.
    await answeredByWorker();
    await until('an answer from the replacement', async () => {
      const [c] = await openClients(1);
      const d = await ask(c!, 'www');
      c!.close();
      expect(view(d)?.answers.map((a) => a.data)).toEqual([red(10)]);
      return (await answeredByWorker())[1]! > 0 ? true : undefined;
    }, 10_000);
  }, 30_000);
});
