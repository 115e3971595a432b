/**
 * Abuse: 100,000 random and mutated UDP packets (bounded in time, to loopback only) leave the
 * server alive and answering; a stuck or non-reading TCP client does not block other clients,
 * and the idle timeout closes it. Run against the server on the main thread (Node's dgram) and
 * in worker threads (batched UDP, SO_REUSEPORT), as the daemon runs it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import dgram from 'node:dgram';
import net from 'node:net';
import { Registry } from 'prom-client';
import { ShoalDns } from '../../src/dns/index.js';
import { query } from '../helpers/dns.js';
import { dig, loopbackNet } from '../helpers/dns-live.js';
import { seededRandom } from '../helpers/random.js';
import { buildDnsWorker } from '../helpers/dns-worker-bundle.js';

const modes = [
  { mode: 'main thread, dgram', net: loopbackNet(58), workers: false },
  { mode: 'two workers, batched UDP', net: loopbackNet(81), workers: true },
];

describe.each(modes)('620 dns robustness ($mode)', ({ net: n, workers }) => {
  let dns: ShoalDns;
  let port: number;
  const registry = new Registry();
  let bundle: Awaited<ReturnType<typeof buildDnsWorker>> | undefined;

  beforeAll(async () => {
    bundle = workers ? await buildDnsWorker('620') : undefined;
    const pool = bundle ? { workers: 2, workerScript: bundle.script, udp: 'batch' as const } : {};
    dns = new ShoalDns({ registry, tcpIdleMs: 700, resolvConfPath: '/nonexistent', forwardTimeoutMs: 200, ...pool });
    dns.setRecords({
      networks: [{ name: 'rb', domain: 'rb.shoal', subnets: [`${n(0)}/24`], upstreams: ['127.0.0.1:9'] }],
      endpoints: [{ network: 'rb', containerId: 'c1', name: 'alive', ipv4: [n(10)] }],
    });
    if (dns.pool) expect(await dns.pool.whenApplied()).toBe(true);
    port = (await dns.addListener(n(1), 0)).port;
  }, 60_000);

  afterAll(async () => {
    await dns?.close();
    bundle?.remove();
  });

  const ask = () => dig(n(1), port, ['-b', n(10), 'alive']);

  it('100,000 random and mutated packets leave the server alive and answering', async () => {
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, n(99), () => r()));
    let replies = 0;
    sock.on('message', () => (replies += 1));
    const seeds = [query('alive'), query('alive.rb.shoal', 'AAAA', { edns: 1232 }), query('10.0.0.127.in-addr.arpa', 'PTR'), query('x.example', 'MX')];
    const total = 100_000;
    const random = seededRandom();
    const why = `after ${total} packets (seed ${random.seed})`;
    const started = Date.now();
    for (let i = 0; i < total; i += 1) {
      let pkt: Buffer;
      if (i % 2 === 0) {
        pkt = random.bytes(i % 512);
      } else {
        pkt = Buffer.from(seeds[i % seeds.length] as Buffer);
        const flips = 1 + (i % 6);
        for (let k = 0; k < flips; k += 1) pkt[(i * 7 + k * 13) % pkt.length] = (i * 31 + k * 17) & 0xff;
        if (i % 5 === 0) pkt = pkt.subarray(0, (i >> 3) % pkt.length);
      }
      sock.send(pkt, port, n(1));
      if (i % 200 === 199) await new Promise((r) => setImmediate(r)); // let both ends breathe
    }
    await new Promise((r) => setTimeout(r, 300));
    sock.close();
    expect(Date.now() - started, why).toBeLessThan(25_000);
    const malformed = (await registry.getSingleMetric('shoal_dns_malformed_requests_total')?.get())?.values.reduce((s, v) => s + v.value, 0) ?? 0;
    expect(malformed, why).toBeGreaterThan(10_000);
    expect(replies, why).toBeGreaterThan(0);
    expect((await ask()).answers, why).toEqual([n(10)]);
  }, 40_000);

  it('a stuck TCP client (half a message) and a client that never reads do not block others', async () => {
    const stuck = net.connect({ host: n(1), port, localAddress: n(20) });
    await new Promise((r) => stuck.once('connect', r));
    stuck.write(Buffer.from([0x00, 0x40, 0x12])); // announces 64 bytes, sends 1
    let stuckClosedAt = 0;
    const t0 = Date.now();
    const stuckClosed = new Promise<void>((r) => stuck.once('close', () => ((stuckClosedAt = Date.now() - t0), r())));
    stuck.on('error', () => undefined);

    const hog = net.connect({ host: n(1), port, localAddress: n(21) });
    await new Promise((r) => hog.once('connect', r));
    hog.on('error', () => undefined);
    hog.pause(); // never reads its answers
    const q = query('alive');
    const frame = Buffer.alloc(q.length + 2);
    frame.writeUInt16BE(q.length, 0);
    q.copy(frame, 2);
    const hogClosed = new Promise<void>((r) => hog.once('close', () => r()));
    for (let i = 0; i < 20_000; i += 1) hog.write(frame);

    const tStart = Date.now();
    expect((await ask()).answers).toEqual([n(10)]);
    expect((await dig(n(1), port, ['-b', n(10), '+tcp', 'alive'])).answers).toEqual([n(10)]);
    expect(Date.now() - tStart).toBeLessThan(1500);

    await Promise.race([stuckClosed, new Promise((r) => setTimeout(r, 3000))]);
    expect(stuckClosedAt).toBeGreaterThan(0); // idle timeout closed it
    expect(stuckClosedAt).toBeLessThan(2500);
    hog.destroy();
    await hogClosed;
    expect((await ask()).answers).toEqual([n(10)]);
  });
});
