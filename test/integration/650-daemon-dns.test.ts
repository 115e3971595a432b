/**
 * The daemon (built, as a child process) serving container names registered by the built
 * shoal-dns plugin, with containers made by the reference bridge + host-local as a runtime would
 * run them. Two networks: red (containers a, b) and blue (container c). The daemon starts after
 * the first ADDs, so it also proves it serves records written while it was down.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KernelObjects, ipQuiet } from '../helpers/kernel-objects.js';
import { startDnsmasq, loopbackNet, type Dnsmasq } from '../helpers/dns-live.js';
import { uniqueName } from '../helpers/names.js';
import { seededRandom } from '../helpers/random.js';
import dgram from 'node:dgram';
import { writeFileSync } from 'node:fs';
import { query } from '../helpers/dns.js';
import path from 'node:path';
import {
  api,
  digIn,
  dnsRulesOf,
  metricsText,
  metricValue,
  RefNetwork,
  startDaemon,
  startProbe,
  tempDirs,
  waitFor,
  type DaemonProc,
} from './daemon-helpers.js';

const objs = new KernelObjects('sd');
const dirs = tempDirs('650');
const up = loopbackNet(65);
let upstream: Dnsmasq | undefined;
let daemon: DaemonProc | undefined;
let red: RefNetwork;
let blue: RefNetwork;
const ns: Record<string, { name: string; path: string }> = {};
const ip: Record<string, string> = {};
const attached: Array<{ net: RefNetwork; id: string; ns: string; ifname?: string }> = [];

async function container(net: RefNetwork, key: string, podName: string, aliases: string[] = []) {
  ns[key] = objs.netns();
  const id = uniqueName('ct') + '0000';
  const { result, ip: addr } = await net.attach(id, ns[key]!.path);
  attached.push({ net, id, ns: ns[key]!.path });
  ip[key] = addr;
  const r = await net.dnsAdd(id, ns[key]!.path, result, podName, aliases);
  expect(r.code, r.stderr).toBe(0);
  return { id, result, dnsResult: r.json! };
}

let aDns: Record<string, unknown>;
let bId: string;
let cId: string;

beforeAll(async () => {
  upstream = await startDnsmasq(up(1), ['--address=/example.test/192.0.2.7', '--local-ttl=300']);
  writeFileSync(path.join(dirs.root, 'resolv.conf'), `nameserver ${up(1)}\n`);
  const dnsConf = { domainName: 'red.shoal', hosts: { 'db.internal': ['192.0.2.10'] }, upstreams: [`${upstream.address}:${upstream.port}`] };
  red = new RefNetwork(uniqueName('nr'), objs.linkName(), dirs.state, dnsConf);
  blue = new RefNetwork(uniqueName('nb'), objs.linkName(), dirs.state, { upstreams: [`${upstream.address}:${upstream.port}`] });
  while (blue.subnet.cidr === red.subnet.cidr) blue = new RefNetwork(blue.name, blue.bridge, dirs.state, blue.dnsConf);
  aDns = (await container(red, 'a', 'alpha')).dnsResult;
  bId = (await container(red, 'b', 'bravo', ['bee', 'web'])).id;
  cId = (await container(blue, 'c', 'charlie')).id;
  // Started after the ADDs: it must pick the records up from the store.
  // No per-client limit: the flood test below sends 100,000 packets from one address and counts
  // what the server parsed; the default limit (10,000/s, test 680) would drop most of them in
  // the kernel, and how many got through would depend on how fast they were sent.
  daemon = await startDaemon({ state: dirs.state, run: dirs.run, args: ['--resolv-conf', path.join(dirs.root, 'resolv.conf'), '--dns-client-rate', '0'] });
  await waitFor('listeners', async () => ((await api(daemon!.socket, '/v1/status')).body as { listeners: string[] }).listeners.length === 2 || undefined);
}, 60_000);

afterAll(async () => {
  const stopped = await daemon?.stop();
  for (const a of attached.reverse()) {
    await a.net.dnsDel(a.id, a.ns, a.ifname).catch(() => undefined);
    await a.net.detach(a.id, a.ns, a.ifname).catch(() => undefined);
  }
  red?.removeBridge();
  blue?.removeBridge();
  objs.cleanup();
  await upstream?.stop();
  dirs.cleanup();
  expect(stopped?.code).toBe(0);
  // The graceful stop removed exactly the daemon's own rules.
  expect(dnsRulesOf(`dns:${red?.name}`) + dnsRulesOf(`dns:${blue?.name}`)).toBe(0);
}, 60_000);

describe('650 daemon DNS with containers', () => {
  it('shoal-dns returned the gateway as nameserver and the domain as search', () => {
    expect(aDns['dns']).toEqual({ nameservers: [red.subnet.gateway], search: ['red.shoal'] });
    expect(aDns['ips']).toBeDefined();
  });

  it('from A: B resolves by name, alias, name.<network>, FQDN, case-insensitively', async () => {
    const gw = red.subnet.gateway;
    for (const q of ['bravo', 'bee', 'web', `bravo.${red.name}`, 'bravo.red.shoal', 'BRAVO.Red.Shoal.', 'bee.red.shoal']) {
      const r = await digIn(ns['a']!.name, gw, [q, 'A']);
      expect(r.status, q).toBe('NOERROR');
      expect(r.answers, q).toEqual([ip['b']]);
    }
    const tcp = await digIn(ns['a']!.name, gw, ['+tcp', 'bravo', 'A']);
    expect(tcp.answers).toEqual([ip['b']]);
  });

  it('PTR of B points at its name under the domain', async () => {
    const r = await digIn(ns['a']!.name, red.subnet.gateway, ['-x', ip['b']!]);
    expect(r.status).toBe('NOERROR');
    expect(r.answers).toEqual(['bravo.red.shoal.']);
  });

  it('a container on another network cannot resolve B, but resolves its own', async () => {
    const r = await digIn(ns['c']!.name, blue.subnet.gateway, ['bravo.red.shoal', 'A']);
    expect(r.answers).toEqual([]);
    const own = await digIn(ns['c']!.name, blue.subnet.gateway, ['charlie', 'A']);
    expect(own.answers).toEqual([ip['c']]);
    // Asking red's gateway from blue's container: the source decides the scope, not the address.
    const cross = await digIn(ns['c']!.name, red.subnet.gateway, ['bravo', 'A']);
    expect(cross.answers).toEqual([]);
  });

  it('connected to a second network, a container resolves its names through the first network\'s server; disconnected, no longer', async () => {
    // docker network connect: C (blue) joins red as eth1; its resolv.conf still names blue's gateway.
    const { result, ip: cRed } = await red.attach(cId, ns['c']!.path, 'eth1');
    attached.push({ net: red, id: cId, ns: ns['c']!.path, ifname: 'eth1' });
    const r = await red.dnsAdd(cId, ns['c']!.path, result, 'charlie', [], 'eth1');
    expect(r.code, r.stderr).toBe(0);
    const seen = await waitFor('bravo via blue', async () => {
      const d = await digIn(ns['c']!.name, blue.subnet.gateway, ['bravo', 'A']);
      return d.answers.length ? d.answers : undefined;
    });
    expect(seen).toEqual([ip['b']]);
    // A (red only) sees C by its red address only.
    expect((await digIn(ns['a']!.name, red.subnet.gateway, ['charlie', 'A'])).answers).toEqual([cRed]);
    // Disconnect: C is back to blue's names.
    expect((await red.dnsDel(cId, ns['c']!.path, 'eth1')).code).toBe(0);
    await red.detach(cId, ns['c']!.path, 'eth1');
    attached.pop();
    await waitFor('bravo gone', async () => ((await digIn(ns['c']!.name, blue.subnet.gateway, ['bravo', 'A'])).answers.length === 0 ? true : undefined));
    expect((await digIn(ns['c']!.name, blue.subnet.gateway, ['charlie', 'A'])).answers).toEqual([ip['c']]);
  });

  it('100,000 random and mutated packets to the gateway leave the daemon alive and answering', async () => {
    // From the host to the test bridge's gateway (an address this file assigned), bounded in
    // count and time. The daemon composes the same server as 620 tests; this proves the
    // composition (listeners per gateway, metrics, logging) survives it too.
    const gw = red.subnet.gateway;
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, '0.0.0.0', () => r()));
    const seeds = [query('bravo'), query('bravo.red.shoal', 'AAAA', { edns: 1232 }), query('x.example.test', 'MX')];
    const random = seededRandom();
    const why = `after 100,000 packets (seed ${random.seed})`;
    const started = Date.now();
    for (let i = 0; i < 100_000; i += 1) {
      let pkt: Buffer;
      if (i % 2 === 0) pkt = random.bytes(i % 512);
      else {
        pkt = Buffer.from(seeds[i % seeds.length]!);
        for (let k = 0; k < 1 + (i % 6); k += 1) pkt[(i * 7 + k * 13) % pkt.length] = (i * 31 + k * 17) & 0xff;
        if (i % 5 === 0) pkt = pkt.subarray(0, (i >> 3) % pkt.length);
      }
      sock.send(pkt, 53, gw);
      if (i % 200 === 199) await new Promise((r) => setImmediate(r));
    }
    sock.close();
    expect(Date.now() - started, why).toBeLessThan(30_000);
    expect(daemon!.child.exitCode, why).toBeNull();
    const text = await metricsText(daemon!.metricsPort);
    expect(metricValue(text, 'shoal_dns_malformed_requests_total'), why).toBeGreaterThan(10_000);
    const r = await digIn(ns['a']!.name, gw, ['bravo', 'A']);
    expect(r.answers, why).toEqual([ip['b']]);
  }, 60_000);

  it('a custom host resolves', async () => {
    const r = await digIn(ns['a']!.name, red.subnet.gateway, ['db.internal', 'A']);
    expect(r.answers).toEqual(['192.0.2.10']);
  });

  it('forwards to the network upstream (dnsmasq) and the second query is a cache hit', async () => {
    const before = metricValue(await metricsText(daemon!.metricsPort), 'shoal_dns_cache_hits_total');
    // One client address and port: the DNS workers each keep their own cache, and SO_REUSEPORT
    // sends one client's queries to one worker (a client on a new port may meet a cold worker).
    const client = ['-b', `${ip['a']}#18653`];
    const first = await digIn(ns['a']!.name, red.subnet.gateway, [...client, 'www.example.test', 'A']);
    expect(first.answers).toEqual(['192.0.2.7']);
    const second = await digIn(ns['a']!.name, red.subnet.gateway, [...client, 'www.example.test', 'A']);
    expect(second.answers).toEqual(['192.0.2.7']);
    const text = await metricsText(daemon!.metricsPort);
    expect(metricValue(text, 'shoal_dns_cache_hits_total')).toBe(before + 1);
    expect(metricValue(text, 'shoal_dns_forward_requests_total', { upstream: `${upstream!.address}:${upstream!.port}`, rcode: 'NOERROR' })).toBeGreaterThanOrEqual(1);
    expect(metricValue(text, 'shoal_dns_records', { network: red.name })).toBeGreaterThanOrEqual(5);
    expect(metricValue(text, 'shoal_dns_requests_total', { network: red.name, qtype: 'A', rcode: 'NOERROR' })).toBeGreaterThan(0);
  });

  it('the control API lists the networks (listening) and endpoints', async () => {
    const nets = (await api(daemon!.socket, '/v1/networks')).body as Array<{ name: string; endpoints: number; listeners: Array<{ state: string }> }>;
    const r = nets.find((n) => n.name === red.name)!;
    expect(r.endpoints).toBe(2);
    expect(r.listeners).toEqual([{ address: red.subnet.gateway, state: 'listening' }]);
    const eps = (await api(daemon!.socket, `/v1/endpoints?network=${red.name}`)).body as Array<{ name: string }>;
    expect(eps.map((e) => e.name).sort()).toEqual(['alpha', 'bravo']);
  });

  it('a client in no Shoal network that can route to a gateway is refused: no names, no forwarding, UDP and TCP', async () => {
    // An outsider: a namespace on a point-to-point veth to the host (10.196.x.0/30), whose
    // route to red's subnet goes through the host, where the gateway address lives.
    const outsider = objs.netns();
    const x = Math.floor(Math.random() * 250);
    const hostEnd = objs.linkName();
    expect(ipQuiet(['link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', outsider.name])).toBe(true);
    expect(ipQuiet(['addr', 'add', `10.196.${x}.1/30`, 'dev', hostEnd])).toBe(true);
    expect(ipQuiet(['link', 'set', hostEnd, 'up'])).toBe(true);
    expect(ipQuiet(['addr', 'add', `10.196.${x}.2/30`, 'dev', 'eth0'], outsider.name)).toBe(true);
    expect(ipQuiet(['link', 'set', 'eth0', 'up'], outsider.name)).toBe(true);
    expect(ipQuiet(['route', 'add', red.subnet.cidr, 'via', `10.196.${x}.1`], outsider.name)).toBe(true);
    const gw = red.subnet.gateway;
    for (const q of [['www.example.test', 'A'], ['bravo.red.shoal', 'A'], ['+tcp', 'www.example.test', 'A'], ['+tcp', 'bravo', 'A']]) {
      const r = await digIn(outsider.name, gw, q);
      expect(r.status, `${q.join(' ')}: ${r.raw}`).toBe('REFUSED');
      expect(r.answers).toEqual([]);
    }
    // The same question from inside the network is answered.
    expect((await digIn(ns['a']!.name, gw, ['www.example.test', 'A'])).answers).toEqual(['192.0.2.7']);
    const text = await metricsText(daemon!.metricsPort);
    expect(metricValue(text, 'shoal_dns_requests_total', { network: 'none', qtype: 'A', rcode: 'REFUSED' })).toBeGreaterThanOrEqual(4);
  });

  it('adds accept rules for each network to inet shoal', () => {
    expect(dnsRulesOf(`dns:${red.name}`)).toBe(1);
    expect(dnsRulesOf(`dns:${blue.name}`)).toBe(1);
  });

  it('a new container is answered within 100 ms of its ADD returning; DEL removes it within 100 ms', async () => {
    ns['d'] = objs.netns();
    const id = uniqueName('ct') + '0000';
    const { result, ip: addr } = await red.attach(id, ns['d']!.path);
    attached.push({ net: red, id, ns: ns['d']!.path });
    const probe = startProbe(dirs.root, ns['a']!.name, red.subnet.gateway, 'delta.red.shoal', 'appear');
    try {
      await probe.ready;
      const add = await red.dnsAdd(id, ns['d']!.path, result, 'delta');
      expect(add.code, add.stderr).toBe(0);
      const seen = await probe.result;
      expect(seen - add.endedAt).toBeLessThan(100);
    } finally {
      probe.kill();
    }
    expect((await digIn(ns['a']!.name, red.subnet.gateway, ['delta', 'A'])).answers).toEqual([addr]);
    const gone = startProbe(dirs.root, ns['a']!.name, red.subnet.gateway, 'delta.red.shoal', 'vanish');
    try {
      await gone.ready;
      const del = await red.dnsDel(id, ns['d']!.path);
      expect(del.code, del.stderr).toBe(0);
      const vanished = await gone.result;
      expect(vanished - del.endedAt).toBeLessThan(100);
    } finally {
      gone.kill();
    }
    const after = await digIn(ns['a']!.name, red.subnet.gateway, ['delta.red.shoal', 'A']);
    expect(after.status).toBe('NXDOMAIN');
    await daemon!.waitLog((l) => l['event'] === 'dns_record_removed' && l['name'] === 'delta');
    expect(daemon!.logs.some((l) => l['event'] === 'dns_record_added' && l['name'] === 'delta')).toBe(true);
  });

  it('DEL of B removes its name; a second DEL succeeds', async () => {
    const del = await red.dnsDel(bId, ns['b']!.path);
    expect(del.code).toBe(0);
    expect((await red.dnsDel(bId, ns['b']!.path)).code).toBe(0);
    await waitFor('bravo gone', async () => ((await digIn(ns['a']!.name, red.subnet.gateway, ['bravo.red.shoal', 'A'])).status === 'NXDOMAIN' ? true : undefined), 2000);
    expect((await digIn(ns['a']!.name, red.subnet.gateway, ['alpha', 'A'])).answers).toEqual([ip['a']]);
  });
});
