/**
 * Forwarding to a real upstream: a dnsmasq this file starts on its own loopback address and
 * port (killed by PID in teardown), cache hits, negative caching, failover past a dead upstream,
 * and the resolv.conf fallback when the network has no upstreams of its own.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { ShoalDns } from '../../src/dns/index.js';
import { dig, freePort, loopbackNet, startDnsmasq, type Dnsmasq } from '../helpers/dns-live.js';

const net1 = loopbackNet(56);
const up = loopbackNet(57);
let dns: ShoalDns;
let port: number;
let upstream: Dnsmasq | undefined;
let hostResolver: Dnsmasq | undefined;
let resolv: string;
let tmp: string;
const registry = new Registry();

async function metric(name: string): Promise<number> {
  const m = await registry.getSingleMetric(name)?.get();
  return m?.values.reduce((n, v) => n + v.value, 0) ?? 0;
}

beforeAll(async () => {
  upstream = await startDnsmasq(up(1), [
    '--address=/example.test/192.0.2.7',
    '--host-record=big.example.test,' + Array.from({ length: 1 }, () => '192.0.2.8').join(','),
    '--local-ttl=300',
    '--neg-ttl=120',
    '--auth-server=ns.example.test',
  ]);
  tmp = mkdtempSync(path.join(tmpdir(), 'shoal-dns-fwd-'));
  resolv = path.join(tmp, 'resolv.conf');
  writeFileSync(resolv, `nameserver ${up(4)}\n`); // nothing listens there
  // resolv.conf has no port syntax: the host-resolver stand-in listens on port 53 of its own address.
  hostResolver = await startDnsmasq(up(3), ['--address=/host.test/192.0.2.33', '--local-ttl=1'], 53);
  dns = new ShoalDns({ registry, forwardTimeoutMs: 500, resolvConfPath: resolv, resolvConfCheckMs: 100 });
  const dead = await freePort(up(2));
  dns.setRecords({
    networks: [
      { name: 'plain', subnets: [`${net1(128)}/25`] },
      { name: 'fwd', domain: 'fwd.shoal', subnets: [`${net1(0)}/25`], upstreams: [`${up(2)}:${dead}`, `${upstream.address}:${upstream.port}`] },
    ],
    endpoints: [{ network: 'fwd', containerId: 'c1', name: 'local', ipv4: [net1(10)] }],
  });
  port = (await dns.addListener(net1(1), 0)).port;
});

afterAll(async () => {
  await dns?.close();
  await upstream?.stop();
  await hostResolver?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const from = () => ['-b', net1(10)];

describe('610 dns forwarding', () => {
  it('forwards unknown names to the network upstream (past a dead one) and caches the answer', async () => {
    const first = await dig(net1(1), port, [...from(), 'www.example.test']);
    expect(first.status).toBe('NOERROR');
    expect(first.answers).toEqual(['192.0.2.7']);
    const hitsBefore = await metric('shoal_dns_cache_hits_total');
    const second = await dig(net1(1), port, [...from(), 'WWW.example.test']);
    expect(second.answers).toEqual(['192.0.2.7']);
    expect(await metric('shoal_dns_cache_hits_total')).toBe(hitsBefore + 1);
    expect(await metric('shoal_dns_cache_entries')).toBeGreaterThanOrEqual(1);
    const text = await registry.metrics();
    expect(text).toContain(`shoal_dns_forward_requests_total{upstream="${up(1)}:${upstream!.port}",rcode="NOERROR"}`);
    expect(text).toMatch(/shoal_dns_forward_requests_total\{upstream="[^"]+",rcode="(error|timeout)"\} 1/);
  });

  it('echoes the client’s spelling on a cache hit', async () => {
    const r = await dig(net1(1), port, [...from(), '+noall', '+question', 'MiXeD.example.test']);
    await dig(net1(1), port, [...from(), 'mixed.example.test']);
    const again = await dig(net1(1), port, [...from(), '+noall', '+answer', 'MIXED.EXAMPLE.TEST']);
    expect(r.raw).toContain('MiXeD.example.test');
    expect(again.raw).toContain('MIXED.EXAMPLE.TEST.');
  });

  it('answers over TCP from the upstream too', async () => {
    expect((await dig(net1(1), port, [...from(), '+tcp', 'tcp.example.test'])).answers).toEqual(['192.0.2.7']);
  });

  it('a network without upstreams uses resolv.conf, and follows it when it changes', async () => {
    const fromPlain = ['-b', net1(200)];
    expect((await dig(net1(1), port, [...fromPlain, 'a.host.test'])).status).toBe('SERVFAIL');
    writeFileSync(resolv, `# changed\nnameserver ${up(3)}\n`);
    await new Promise((r) => setTimeout(r, 150));
    await dig(net1(1), port, [...fromPlain, 'b.host.test']); // notices the change
    await new Promise((r) => setTimeout(r, 50));
    const after = await dig(net1(1), port, [...fromPlain, 'c.host.test']);
    expect(after.answers).toEqual(['192.0.2.33']);
    expect((await dig(net1(1), port, [...fromPlain, 'local'])).answers).toEqual([]);
  });
});
