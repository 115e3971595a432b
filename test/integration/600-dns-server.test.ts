/**
 * The DNS server on loopback, queried with dig: names, aliases, FQDN, PTR, scoping by source
 * address, custom hosts, TCP, truncation, listener add/remove, record add/remove latency.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import dgram from 'node:dgram';
import { Registry } from 'prom-client';
import { ShoalDns } from '../../src/dns/index.js';
import type { DnsRecordsInput } from '../../src/dns/types.js';
import { decode, query } from '../helpers/dns.js';
import { dig, freePort, loopbackNet } from '../helpers/dns-live.js';

const red = loopbackNet(53); // red network: 127.53.b.0/24, gateway .1
const blue = loopbackNet(54); // blue network
const many = Array.from({ length: 60 }, (_, i) => red(100 + i));

function records(extra: DnsRecordsInput['endpoints'] = []): DnsRecordsInput {
  return {
    networks: [
      { name: 'red', domain: 'red.shoal', gateways: [red(1)], subnets: [`${red(0)}/24`, 'fd53::/64'], hosts: { 'db.internal': ['192.0.2.50'] }, upstreams: ['127.0.0.1:9'] },
      { name: 'blue', domain: 'blue.shoal', gateways: [blue(1)], subnets: [`${blue(0)}/24`] },
    ],
    endpoints: [
      { network: 'red', containerId: 'c-web', name: 'web', aliases: ['www', 'frontend'], ipv4: [`${red(10)}/24`], ipv6: ['fd53::10/64'] },
      { network: 'red', containerId: 'c-many', name: 'many', ipv4: many },
      { network: 'blue', containerId: 'c-db', name: 'bluedb', ipv4: [blue(20)] },
      ...extra,
    ],
  };
}

let dns: ShoalDns;
let port: number;
const registry = new Registry();

beforeAll(async () => {
  dns = new ShoalDns({ registry, localTtl: 5, tcpIdleMs: 800, forwardTimeoutMs: 300, resolvConfPath: '/nonexistent' });
  dns.setRecords(records());
  port = (await dns.addListener(red(1), 0)).port;
});

afterAll(async () => {
  await dns?.close();
});

const fromRed = ['-b', red(10)];

describe('600 dns server: answers', () => {
  it('resolves a container by name, alias and FQDN, case-insensitively', async () => {
    expect((await dig(red(1), port, [...fromRed, 'web', 'A'])).answers).toEqual([red(10)]);
    expect((await dig(red(1), port, [...fromRed, 'FrontEnd', 'A'])).answers).toEqual([red(10)]);
    expect((await dig(red(1), port, [...fromRed, 'www.red.shoal.', 'A'])).answers).toEqual([red(10)]);
    expect((await dig(red(1), port, [...fromRed, 'web.red', 'AAAA'])).answers).toEqual(['fd53::10']);
  });

  it('uses the configured local TTL', async () => {
    const r = await dig(red(1), port, [...fromRed, '+noall', '+answer', 'web']);
    expect(r.raw).toMatch(/^web\.\s+5\s+IN\s+A\s+/m);
  });

  it('answers PTR for container addresses, v4 and v6', async () => {
    expect((await dig(red(1), port, [...fromRed, '-x', red(10)])).answers).toEqual(['web.red.shoal.']);
    expect((await dig(red(1), port, [...fromRed, '-x', 'fd53::10'])).answers).toEqual(['web.red.shoal.']);
  });

  it('NOERROR/NODATA for a name without an address of the asked family; NXDOMAIN inside the domain', async () => {
    const nodata = await dig(red(1), port, [...fromRed, 'many', 'AAAA']);
    expect(nodata.status).toBe('NOERROR');
    expect(nodata.answers).toEqual([]);
    expect((await dig(red(1), port, [...fromRed, 'nosuch.red.shoal'])).status).toBe('NXDOMAIN');
  });

  it('scopes names by the asking address', async () => {
    const fromBlue = ['-b', blue(20)];
    expect((await dig(red(1), port, [...fromBlue, 'bluedb'])).answers).toEqual([blue(20)]);
    expect((await dig(red(1), port, [...fromRed, 'bluedb.blue.shoal'])).answers).toEqual([]);
    // blue has no upstream reachable and red's hidden names must not leak:
    const leak = await dig(red(1), port, [...fromBlue, 'web.red.shoal']);
    expect(leak.answers).toEqual([]);
    expect((await dig(red(1), port, [...fromBlue, '-x', red(10)])).answers).toEqual([]);
  });

  it('answers a custom host of the network', async () => {
    expect((await dig(red(1), port, [...fromRed, 'db.internal'])).answers).toEqual(['192.0.2.50']);
    expect((await dig(red(1), port, [...fromRed, 'db.internal.red.shoal'])).answers).toEqual(['192.0.2.50']);
  });

  it('answers over TCP', async () => {
    const r = await dig(red(1), port, [...fromRed, '+tcp', 'web']);
    expect(r.answers).toEqual([red(10)]);
  });

  it('sets TC on UDP when the answer exceeds the client size; TCP gets everything', async () => {
    const udp = await dig(red(1), port, [...fromRed, '+ignore', '+bufsize=512', 'many']);
    expect(udp.flags).toContain('tc');
    expect(udp.answers.length).toBeLessThan(60);
    const tcp = await dig(red(1), port, [...fromRed, '+tcp', 'many']);
    expect(tcp.flags).not.toContain('tc');
    expect(tcp.answers.sort()).toEqual([...many].sort());
    const big = await dig(red(1), port, [...fromRed, '+ignore', '+bufsize=4096', 'many']);
    expect(big.flags).not.toContain('tc');
    expect(big.answers).toHaveLength(60);
  });

  it('answers several queries on one TCP connection', async () => {
    const sock = net.connect({ host: red(1), port, localAddress: red(10) });
    await new Promise((r) => sock.once('connect', r));
    const names = ['web', 'www', 'many', 'db.internal'];
    const frames = names.map((n, i) => {
      const q = query(n, 'A', { id: 100 + i });
      const f = Buffer.alloc(q.length + 2);
      f.writeUInt16BE(q.length, 0);
      q.copy(f, 2);
      return f;
    });
    sock.write(Buffer.concat(frames));
    const replies = await new Promise<Map<number, number>>((resolve, reject) => {
      let buf = Buffer.alloc(0);
      const got = new Map<number, number>();
      sock.on('error', reject);
      sock.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 2 && buf.length >= buf.readUInt16BE(0) + 2) {
          const m = decode(buf.subarray(2, buf.readUInt16BE(0) + 2));
          got.set(m.id ?? -1, m.answers?.length ?? 0);
          buf = buf.subarray(buf.readUInt16BE(0) + 2);
        }
        if (got.size === names.length) resolve(got);
      });
    });
    sock.destroy();
    expect([...replies.entries()].sort()).toEqual([[100, 1], [101, 1], [102, 60], [103, 1]]);
  });

  it('counts requests in shoal_dns_requests_total and records per network', async () => {
    const text = await registry.metrics();
    expect(text).toMatch(/shoal_dns_requests_total\{network="red",qtype="A",rcode="NOERROR"\} \d+/);
    expect(text).toMatch(/shoal_dns_records\{network="red"\} 67/); // web: 3 names x 2, many: 60, a custom host
    expect(text).toMatch(/shoal_dns_request_duration_seconds_count\{transport="udp"\} \d+/);
  });
});

describe('600 dns server: changes', () => {
  it('an endpoint added or removed is visible to the very next query (well under 100 ms)', async () => {
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, red(10), () => r()));
    const ask = (name: string) =>
      new Promise<string[]>((resolve) => {
        sock.once('message', (m) => resolve((decode(m).answers ?? []).map((a) => String((a as { data: unknown }).data))));
        sock.send(query(name), port, red(1));
      });
    const t0 = performance.now();
    dns.setRecords(records([{ network: 'red', containerId: 'c-new', name: 'newcomer', ipv4: [red(30)] }]));
    expect(await ask('newcomer')).toEqual([red(30)]);
    const addMs = performance.now() - t0;
    const t1 = performance.now();
    dns.setRecords(records());
    expect(await ask('newcomer.red.shoal')).toEqual([]); // under the domain: NXDOMAIN, not forwarded
    const removeMs = performance.now() - t1;
    sock.close();
    expect(addMs).toBeLessThan(100);
    expect(removeMs).toBeLessThan(100);
    expect((await dig(red(1), port, [...fromRed, 'newcomer'])).answers).toEqual([]);
  });

  it('adds and removes a listener without touching the others', async () => {
    const tcpKeep = net.connect({ host: red(1), port, localAddress: red(10) });
    await new Promise((r) => tcpKeep.once('connect', r));
    let closed = false;
    tcpKeep.on('close', () => (closed = true));
    const blueGw = blue(1);
    const bluePort = await freePort(blueGw);
    await dns.addListener(blueGw, bluePort);
    expect(dns.listeners()).toEqual(expect.arrayContaining([{ address: red(1), port }, { address: blueGw, port: bluePort }]));
    expect((await dig(blueGw, bluePort, ['-b', blue(20), 'bluedb'])).answers).toEqual([blue(20)]);
    expect(await dns.addListener(blueGw, bluePort)).toEqual({ address: blueGw, port: bluePort }); // idempotent
    expect(await dns.removeListener(blueGw, bluePort)).toBe(true);
    expect((await dig(blueGw, bluePort, ['-b', blue(20), '+time=1', 'bluedb'])).status).toBe('NO_ANSWER');
    expect((await dig(red(1), port, [...fromRed, 'web'])).answers).toEqual([red(10)]);
    expect(closed).toBe(false);
    tcpKeep.destroy();
  });
});
