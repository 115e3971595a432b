/**
 * Services on one host, end to end: a network made by the built CLI (real shoal-bridge), three
 * replicas (namespaces attached with `--alias web`, each running an identity server), the
 * daemon, and `shoal service create web -p 18380:80 -p 18381:5353/udp`. Real traffic shows rr
 * balance through the VIP and the published port, hairpin, UDP, DNS (web, tasks.web, dnsrr),
 * health-driven removal within interval x fall + 1 s with an open connection draining, UDP
 * conntrack flushed off a removed replica, the return after `rise`, and cleanup.
 */
import { spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeNetworkLeftovers } from '../helpers/cli-networks.js';
import { KernelObjects, ipJson } from '../helpers/kernel-objects.js';
import { testRunId } from '../helpers/names.js';
import { bridgeNameFor } from '../../src/network/model.js';
import { readTable } from '../../src/kernel/nftables-reader.js';
import { digIn, metricsText, metricValue, startDaemon, tempDirs, waitFor, type DaemonProc } from './daemon-helpers.js';
import {
  helloFrom,
  kernelBackends,
  lbTableExists,
  serviceReplicas,
  serviceSubnet,
  shoalCli,
  startServer,
  tally,
  tcpHello,
  udpHello,
  type IdentityServer,
} from './service-helpers.js';

const objs = new KernelObjects('sv5');
const dirs = tempDirs('500');
const NET = `sv5n${testRunId()}`;
const subnet = serviceSubnet();
const INTERVAL_MS = 300;
const FALL = 3;
const TCP_PORT = 18380;
const UDP_PORT = 18381;
let env: NodeJS.ProcessEnv;
let daemon: DaemonProc | undefined;
const servers: IdentityServer[] = [];
const replicaNs: Array<{ name: string; path: string }> = [];
const replicaIp: Record<string, string> = {};
let client: { name: string; path: string };
let vip = '';

const cli = (...args: string[]) => shoalCli(env, ...args);
/** The rules of web's TCP service chain as nft prints them. */
const svcRuleText = () => spawnSync('nft', ['list', 'chain', 'ip', 'shoal-lb', 'svc-web-tcp-80'], { encoding: 'utf8' }).stdout;

beforeAll(async () => {
  const conf = path.join(dirs.root, 'conf');
  fs.mkdirSync(conf, { recursive: true });
  fs.writeFileSync(path.join(dirs.root, 'resolv.conf'), 'nameserver 127.0.0.1\n');
  env = { SHOAL_STATE_DIR: dirs.state, SHOAL_RUN_DIR: dirs.run, SHOAL_CNI_CONF_DIR: conf };
  const created = cli('network', 'create', '--subnet', subnet.cidr, NET);
  expect(created.status, created.stderr).toBe(0);
  daemon = await startDaemon({ state: dirs.state, run: dirs.run, args: ['--resolv-conf', path.join(dirs.root, 'resolv.conf')] });
  for (let i = 0; i < 3; i += 1) {
    const ns = objs.netns();
    replicaNs.push(ns);
    // Replicas 0 and 1 also serve "api" (the dnsrr service below).
    const aliases = i < 2 ? ['--alias', 'web', '--alias', 'api'] : ['--alias', 'web'];
    const r = cli('network', 'connect', ...aliases, NET, ns.name);
    expect(r.status, r.stderr).toBe(0);
    const addr = ipJson<Array<{ addr_info: Array<{ family: string; local: string }> }>>(['addr', 'show', 'dev', 'eth0'], ns.name)[0]!.addr_info.find((a) => a.family === 'inet')!.local;
    const id = `r${i}`;
    replicaIp[id] = addr;
    servers.push(await startServer(dirs.root, ns.name, id));
  }
  client = objs.netns();
  expect(cli('network', 'connect', NET, client.name).status).toBe(0);
  const svc = cli('service', 'create', 'web', '--network', NET, '-p', `${TCP_PORT}:80`, '-p', `${UDP_PORT}:5353/udp`, '--health', 'tcp', '--health-interval', `${INTERVAL_MS}ms`, '--health-fall', String(FALL));
  expect(svc.status, svc.stderr).toBe(0);
  const inspect = JSON.parse(cli('service', 'inspect', 'web').stdout) as { vips: string[] };
  vip = inspect.vips[0]!;
  await waitFor('three healthy replicas', async () => ((await serviceReplicas(daemon!.socket, 'web')).filter((r) => r.health === 'up').length === 3 ? true : undefined), 10_000);
}, 120_000);

afterAll(async () => {
  for (const s of servers) s.kill();
  if (env) cli('service', 'rm', 'web', 'api');
  await daemon?.stop();
  if (env) {
    for (const ns of [...replicaNs, ...(client ? [client] : [])]) cli('network', 'disconnect', NET, ns.name);
    cli('network', 'rm', '--force', NET);
  }
  removeNetworkLeftovers([NET]);
  objs.cleanup();
  dirs.cleanup();
}, 60_000);

describe('service web behind a VIP (kernel path)', () => {
  it('takes its VIP from the network subnet, held in IPAM, and lists in ls/ps', () => {
    expect(vip.startsWith(subnet.prefix)).toBe(true);
    expect(Object.values(replicaIp)).not.toContain(vip);
    const ps = cli('service', 'ps', 'web');
    expect(ps.status, ps.stderr).toBe(0);
    for (const ip of Object.values(replicaIp)) expect(ps.stdout).toMatch(new RegExp(`${ip.replace(/\./g, '\\.')}\\s+local\\s+up`));
    expect(cli('service', 'ls').stdout).toMatch(new RegExp(`web\\s+${NET}\\s+vip\\s+${vip.replace(/\./g, '\\.')}\\s+3/3`));
  });

  it('containers reach VIP:80 round-robin over the three replicas', () => {
    const counts = tally(helloFrom(dirs.root, client.name, vip, 80, 60));
    expect(Object.keys(counts).sort()).toEqual(['r0', 'r1', 'r2']);
    for (const n of Object.values(counts)) expect(n).toBeGreaterThanOrEqual(15);
  });

  it('the published port answers on 127.0.0.1 round-robin', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 30; i += 1) ids.push(await tcpHello('127.0.0.1', TCP_PORT));
    const counts = tally(ids);
    expect(Object.keys(counts).sort()).toEqual(['r0', 'r1', 'r2']);
    for (const n of Object.values(counts)) expect(n).toBeGreaterThanOrEqual(7);
  });

  it('the published port answers on [::1] too (the daemon\'s proxy hands it to 127.0.0.1), balanced the same way, TCP and UDP', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 30; i += 1) ids.push(await tcpHello('::1', TCP_PORT));
    const counts = tally(ids);
    expect(Object.keys(counts).sort()).toEqual(['r0', 'r1', 'r2']);
    for (const n of Object.values(counts)) expect(n).toBeGreaterThanOrEqual(7);
    const udp6 = dgram.createSocket('udp6');
    await new Promise<void>((r) => udp6.bind(0, '::1', () => r()));
    try {
      expect(await udpHello('::1', UDP_PORT, udp6)).toMatch(/^r\d$/);
    } finally {
      udp6.close();
    }
  });

  it('hairpin: a replica reaches its own VIP, itself included', () => {
    const ids = helloFrom(dirs.root, replicaNs[0]!.name, vip, 80, 6);
    expect(ids.every((id) => !id.startsWith('ERR')), ids.join()).toBe(true);
    expect(ids).toContain('r0');
  });

  it('UDP to the VIP is balanced too', () => {
    const counts = tally(helloFrom(dirs.root, client.name, vip, 5353, 30, 'udp'));
    expect(Object.keys(counts).sort()).toEqual(['r0', 'r1', 'r2']);
  });

  it('shoal_lb_bytes_total counts both ways of VIP and published-port connections, not direct ones to a replica', async () => {
    const bytes = async () => {
      const text = await metricsText(daemon!.metricsPort);
      return { in: metricValue(text, 'shoal_lb_bytes_total', { service: 'web', direction: 'in' }), out: metricValue(text, 'shoal_lb_bytes_total', { service: 'web', direction: 'out' }) };
    };
    const b0 = await bytes();
    // Straight to a replica's address: no DNAT, not the service's traffic.
    expect(helloFrom(dirs.root, client.name, replicaIp['r1']!, 80, 10)).toEqual(Array(10).fill('r1'));
    const b1 = await bytes();
    expect(b1).toEqual(b0);
    // Each TCP connection is at least three packets of at least 40 bytes (IP + TCP headers) each
    // way: SYN, ACK, FIN in; SYN-ACK, the greeting, FIN out; and far from twice what it carries
    // (measured: 268 bytes in, 185 out), which a packet counted in two hooks would be.
    expect(helloFrom(dirs.root, client.name, vip, 80, 20).filter((id) => id.startsWith('ERR'))).toEqual([]);
    const b2 = await bytes();
    for (const way of ['in', 'out'] as const) {
      expect(b2[way] - b1[way]).toBeGreaterThanOrEqual(20 * 120);
      expect(b2[way] - b1[way]).toBeLessThan(20 * 400);
    }
    // From the host through the published port: the output hook one way, input the other.
    for (let i = 0; i < 10; i += 1) expect(await tcpHello('127.0.0.1', TCP_PORT)).toMatch(/^r\d$/);
    const b3 = await bytes();
    for (const way of ['in', 'out'] as const) {
      expect(b3[way] - b2[way]).toBeGreaterThanOrEqual(10 * 120);
      expect(b3[way] - b2[way]).toBeLessThan(10 * 400);
    }
    // UDP too: 10 datagrams and their answers, each at least 28 bytes of headers (30 measured).
    expect(helloFrom(dirs.root, client.name, vip, 5353, 10, 'udp').filter((id) => id.startsWith('ERR'))).toEqual([]);
    const b4 = await bytes();
    for (const way of ['in', 'out'] as const) {
      expect(b4[way] - b3[way]).toBeGreaterThanOrEqual(10 * 28);
      expect(b4[way] - b3[way]).toBeLessThan(10 * 50);
    }
  });

  it('DNS: web is the VIP, tasks.web every healthy replica, SRV the ports', async () => {
    const a = await digIn(client.name, subnet.gateway, ['web', 'A']);
    expect(a.answers).toEqual([vip]);
    const tasks = await digIn(client.name, subnet.gateway, ['tasks.web', 'A']);
    expect(tasks.answers.sort()).toEqual(Object.values(replicaIp).sort());
    // SRV per protocol: the target port on the service's own name.
    const srv = await digIn(client.name, subnet.gateway, [`_web._tcp.${NET}`, 'SRV']);
    expect(srv.answers).toHaveLength(1);
    expect(srv.answers[0]).toMatch(/^0 0 80 web\./);
    const target = srv.answers[0]!.split(' ')[3]!;
    expect((await digIn(client.name, subnet.gateway, [target, 'A'])).answers).toEqual([vip]);
    expect((await digIn(client.name, subnet.gateway, [`_web._udp.${NET}`, 'SRV'])).answers[0]).toMatch(/^0 0 5353 web\./);
  });

  it('dnsrr: api answers its healthy replicas, no VIP', async () => {
    const r = cli('service', 'create', 'api', '--network', NET, '--endpoint-mode', 'dnsrr');
    expect(r.status, r.stderr).toBe(0);
    const want = [replicaIp['r0']!, replicaIp['r1']!].sort();
    await waitFor('api answers its replicas', async () => {
      const d = await digIn(client.name, subnet.gateway, ['api', 'A']);
      return d.answers.sort().join() === want.join() ? true : undefined;
    }, 5000, 100);
    expect((await digIn(client.name, subnet.gateway, ['tasks.api', 'A'])).answers.sort()).toEqual(want);
    expect(cli('service', 'rm', 'api').status).toBe(0);
  });

  it('a replica that stops accepting leaves within interval x fall + 1 s; its open TCP connection drains; its UDP flow moves', async () => {
    // A UDP flow from one source port, and an open TCP connection, both on the same replica.
    const udp = dgram.createSocket('udp4');
    await new Promise<void>((r) => udp.bind(0, '127.0.0.1', () => r()));
    const victim = await udpHello('127.0.0.1', UDP_PORT, udp);
    expect(victim).toMatch(/^r\d$/);
    let held: net.Socket | undefined;
    for (let i = 0; i < 6 && !held; i += 1) {
      const s = net.connect({ host: '127.0.0.1', port: TCP_PORT });
      const first = await new Promise<string>((res) => s.once('data', (d) => res(d.toString().trim())));
      if (first === victim) held = s;
      else s.destroy();
    }
    expect(held, 'an open connection to the victim').toBeDefined();
    const server = servers.find((s) => s.id === victim)!;
    const t0 = Date.now();
    await server.setAccepting(false);
    await waitFor('victim leaves the kernel path', () => (kernelBackends('web').includes(`${replicaIp[victim]}:80`) ? undefined : true), INTERVAL_MS * FALL + 3000, 20);
    const left = Date.now() - t0;
    expect(left).toBeLessThanOrEqual(INTERVAL_MS * FALL + 1000 + 250); // plus one probe timeout budget
    // No new connection reaches it; the others carry on.
    const ids = helloFrom(dirs.root, client.name, vip, 80, 20);
    expect(ids.filter((id) => id === victim || id.startsWith('ERR'))).toEqual([]);
    expect(new Set(ids).size).toBe(2);
    // Drain: the connection opened before still talks to the victim.
    const echoed = await new Promise<string>((res) => {
      held!.once('data', (d) => res(d.toString()));
      held!.write('still-there');
    });
    expect(echoed).toBe('still-there');
    held!.destroy();
    // The UDP flow from the same source port was flushed from conntrack: it moved to a live replica.
    const moved = await udpHello('127.0.0.1', UDP_PORT, udp);
    udp.close();
    expect(moved).toMatch(/^r\d$/);
    expect(moved).not.toBe(victim);
    const tasks = await digIn(client.name, subnet.gateway, ['tasks.web', 'A']);
    expect(tasks.answers).not.toContain(replicaIp[victim]);
    expect(tasks.answers).toHaveLength(2);
    const metrics = await metricsText(daemon!.metricsPort);
    expect(metricValue(metrics, 'shoal_lb_backend_up', { service: 'web', backend: `${replicaIp[victim]}:80` })).toBe(0);
    expect(metricValue(metrics, 'shoal_service_replicas', { service: 'web', state: 'up' })).toBe(2);
    expect(metricValue(metrics, 'shoal_lb_health_checks_total', { service: 'web', result: 'failure' })).toBeGreaterThanOrEqual(FALL);
    // It comes back after `rise` successes.
    await server.setAccepting(true);
    await waitFor('victim back', () => (kernelBackends('web').includes(`${replicaIp[victim]}:80`) ? true : undefined), INTERVAL_MS * 2 + 3000, 20);
    expect(Object.keys(tally(helloFrom(dirs.root, client.name, vip, 80, 9))).sort()).toEqual(['r0', 'r1', 'r2']);
  });

  it('with no healthy replica the VIP and the published port refuse at once', async () => {
    for (const s of servers) await s.setAccepting(false);
    await waitFor('no backend left', () => (kernelBackends('web').length === 0 ? true : undefined), INTERVAL_MS * FALL + 3000, 20);
    expect(helloFrom(dirs.root, client.name, vip, 80, 2)).toEqual(['ERR:ECONNREFUSED', 'ERR:ECONNREFUSED']);
    expect(await tcpHello('127.0.0.1', TCP_PORT)).toBe('ERR:ECONNREFUSED');
    expect((await digIn(client.name, subnet.gateway, ['tasks.web', 'A'])).answers).toEqual([]);
    for (const s of servers) await s.setAccepting(true);
    await waitFor('all back', () => (kernelBackends('web').filter((b) => b.endsWith(':80')).length === 3 ? true : undefined), INTERVAL_MS * 2 + 3000, 20).catch(async (err: Error) => {
      throw new Error(`${err.message}: kernel ${kernelBackends('web').join()}, daemon ${JSON.stringify(await serviceReplicas(daemon!.socket, 'web'))}, direct ${await Promise.all(Object.values(replicaIp).map((ip) => tcpHello(ip, 80)))} ${daemon!.logs.filter((l) => l['event'] === 'service_backend_health' || l['event'] === 'lb_apply_failed').map((l) => JSON.stringify(l)).slice(-8).join(' ')}`);
    });
  });

  it('update --drain-timeout 1s: a draining connection ends once the timeout has passed (its conntrack entry goes)', async () => {
    const u = cli('service', 'update', 'web', '--drain-timeout', '1s');
    expect(u.status, u.stderr).toBe(0);
    // A connection through the published port, echoing: the replica it reached is the victim.
    const held = net.connect({ host: '127.0.0.1', port: TCP_PORT });
    let got = '';
    let closedAt = 0;
    held.on('data', (d: Buffer) => (got += d.toString()));
    held.on('error', () => {});
    held.on('close', () => (closedAt = Date.now()));
    const victim = await waitFor('first line', () => (got.includes('\n') ? got.slice(0, got.indexOf('\n')) : undefined), 2000);
    const server = servers.find((s) => s.id === victim)!;
    await server.setAccepting(false);
    // The victim comes back whatever happens here: the tests after this one need three replicas.
    try {
      await waitFor('victim leaves the kernel path', () => (kernelBackends('web').includes(`${replicaIp[victim]}:80`) ? undefined : true), INTERVAL_MS * FALL + 3000, 20);
      const leftAt = Date.now();
      // Still draining right after: the connection reaches the victim.
      held.write('still-there');
      await waitFor('echo while draining', () => (got.includes('still-there') ? true : undefined), 800, 5);
      expect(closedAt).toBe(0);
      // After the timeout the next segment finds no conntrack entry: it is balanced as a new flow
      // to a live replica, which knows no such connection and resets it.
      await waitFor('connection reset after the drain timeout', () => {
        if (!closedAt) held.write('x');
        return closedAt ? true : undefined;
      }, 4000, 100);
      expect(closedAt - leftAt).toBeGreaterThanOrEqual(1000 - 400); // not before the timeout (it started at the sync we saw)
      expect(closedAt - leftAt).toBeLessThanOrEqual(1000 + 1500);
      expect(daemon!.logs.some((l) => l['event'] === 'lb_drain_timeout' && l['service'] === 'web')).toBe(true);
    } finally {
      held.destroy();
      await server.setAccepting(true);
    }
    await waitFor('victim back', () => (kernelBackends('web').includes(`${replicaIp[victim]}:80`) ? true : undefined), INTERVAL_MS * 2 + 3000, 20);
  });

  it('update --lb-policy source-hash: one client sticks to one replica, touching only the service chain', async () => {
    const epHandles = () =>
      (readTable({ family: 'ip', name: 'shoal-lb' })?.rules ?? [])
        .filter((x) => x.chain.startsWith('ep-'))
        .map((x) => `${x.chain}#${x.handle}`)
        .sort();
    const before = epHandles();
    const r = cli('service', 'update', 'web', '--lb-policy', 'source-hash');
    expect(r.status, r.stderr).toBe(0);
    await waitFor('jhash rule', () => (svcRuleText().includes('jhash') ? true : undefined), 5000, 20);
    // The endpoint chains were not rewritten: same rules, same handles.
    expect(epHandles()).toEqual(before);
    expect(before.length).toBe(12); // 3 replicas x 2 ports x 2 rules
    const ids = helloFrom(dirs.root, client.name, vip, 80, 12);
    expect(new Set(ids).size, ids.join()).toBe(1);
    expect(ids[0]).toMatch(/^r\d$/);
  });

  it('update --affinity client-ip:1m: a client keeps its replica (a timed set remembers it); none spreads it again', async () => {
    const u = cli('service', 'update', 'web', '--lb-policy', 'rr', '--affinity', 'client-ip:1m');
    expect(u.status, u.stderr).toBe(0);
    await waitFor('affinity rules', () => (svcRuleText().includes('@aff-') && svcRuleText().includes('numgen inc') ? true : undefined), 5000, 20);
    const ids = helloFrom(dirs.root, client.name, vip, 80, 12);
    expect(new Set(ids).size, ids.join()).toBe(1);
    expect(ids[0]).toMatch(/^r\d$/);
    // The set of that replica's endpoint chain holds the client's address, with its timeout.
    const clientIp = ipJson<Array<{ addr_info: Array<{ family: string; local: string }> }>>(['addr', 'show', 'dev', 'eth0'], client.name)[0]!.addr_info.find((a) => a.family === 'inet')!.local;
    const tableText = spawnSync('nft', ['list', 'table', 'ip', 'shoal-lb'], { encoding: 'utf8' }).stdout;
    const sets = [...tableText.matchAll(/set (aff-web-tcp-80-\w+-60) \{[^}]*?elements = \{([^}]*)\}/g)].map((m) => ({ name: m[1]!, elements: m[2]! }));
    expect(sets.filter((x) => x.elements.includes(clientIp)), tableText).toHaveLength(1);
    // A second client (the host, through the published port) is balanced on its own and sticks too.
    const hostIds: string[] = [];
    for (let i = 0; i < 6; i += 1) hostIds.push(await tcpHello('127.0.0.1', TCP_PORT));
    expect(new Set(hostIds).size, hostIds.join()).toBe(1);
    expect(cli('service', 'update', 'web', '--affinity', 'none').status).toBe(0);
    await waitFor('affinity rules gone', () => (svcRuleText().includes('@aff-') ? undefined : true), 5000, 20);
    expect(Object.keys(tally(helloFrom(dirs.root, client.name, vip, 80, 9))).sort()).toEqual(['r0', 'r1', 'r2']);
    expect(spawnSync('nft', ['list', 'table', 'ip', 'shoal-lb'], { encoding: 'utf8' }).stdout).not.toContain('aff-');
  });

  it('rm removes the names, the rules, the VIP address and the table', async () => {
    expect(cli('service', 'rm', 'web').status).toBe(0);
    await waitFor('shoal-lb table gone', () => (lbTableExists() ? undefined : true), 5000, 20);
    const bridge = bridgeNameFor(NET);
    const addrs = ipJson<Array<{ addr_info: Array<{ local: string }> }>>(['addr', 'show', 'dev', bridge])[0]!.addr_info.map((a) => a.local);
    expect(addrs).not.toContain(vip);
    await waitFor('web no longer resolves to the VIP', async () => ((await digIn(client.name, subnet.gateway, ['web', 'A'])).answers.includes(vip) ? undefined : true), 5000, 100);
    expect(await tcpHello('127.0.0.1', TCP_PORT, 1000)).toMatch(/^ERR/);
    // The [::1] proxy went with it.
    await waitFor('[::1] proxy removed', async () => ((await tcpHello('::1', TCP_PORT, 500)).startsWith('ERR') ? true : undefined), 5000);
  });
});
