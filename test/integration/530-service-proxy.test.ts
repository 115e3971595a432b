/**
 * The proxy data path (`--lb-mode proxy`) with real traffic: three replicas (namespaces attached
 * by the built CLI with `--alias px`, identity servers that also echo what they receive), the
 * daemon proxying 127.0.0.1:18385 and VIP:80. Shown: leastconn sends new connections to the
 * idle replica while two others hold one each; a replica that stops accepting before its health
 * check notices is skipped by the connect retry (the client never sees an error, the retry is
 * counted); `update --proxy-protocol v2|v1` puts a header in front of the stream that names the
 * client's real address and port; the VIP answers from inside the network; metrics count it all;
 * `--max-conn 1` over two replicas makes a third held connection wait until one closes, never
 * more than one open on a replica (counted by the replicas); `--slow-start` gives a replica that
 * rises a small share of new connections first and an even one after the ramp.
 */
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeNetworkLeftovers } from '../helpers/cli-networks.js';
import { KernelObjects } from '../helpers/kernel-objects.js';
import { testRunId } from '../helpers/names.js';
import { api, metricsText, metricValue, sleep, startDaemon, tempDirs, waitFor, type DaemonProc } from './daemon-helpers.js';
import { helloFrom, lbTableExists, maxConns, serviceReplicas, serviceSubnet, shoalCli, startServer, tally, tcpHello, type IdentityServer } from './service-helpers.js';

const objs = new KernelObjects('sv53');
const dirs = tempDirs('530');
const NET = `sv53n${testRunId()}`;
const subnet = serviceSubnet();
const PORT = 18385;
/** A second service port (target 81) whose replicas see only proxied connections, no health checks. */
const LIMIT_PORT = 18386;
let env: NodeJS.ProcessEnv;
let daemon: DaemonProc | undefined;
const servers: IdentityServer[] = [];
const namespaces: Array<{ name: string; path: string }> = [];
let client: { name: string; path: string };
const cli = (...args: string[]) => shoalCli(env, ...args);

/** An open connection through the proxy: its replica id and everything it received after that. */
async function open(port = PORT): Promise<{ id: string; socket: net.Socket; rest: () => Buffer }> {
  const socket = net.connect({ host: '127.0.0.1', port });
  let buf = Buffer.alloc(0);
  socket.on('data', (d: Buffer) => (buf = Buffer.concat([buf, d])));
  await new Promise<void>((res, rej) => {
    socket.once('connect', () => res());
    socket.once('error', rej);
  });
  const id = await waitFor('first line', () => {
    const nl = buf.indexOf(10);
    return nl >= 0 ? buf.subarray(0, nl).toString() : undefined;
  });
  return { id, socket, rest: () => buf.subarray(buf.indexOf(10) + 1) };
}

beforeAll(async () => {
  const conf = path.join(dirs.root, 'conf');
  fs.mkdirSync(conf, { recursive: true });
  env = { SHOAL_STATE_DIR: dirs.state, SHOAL_RUN_DIR: dirs.run, SHOAL_CNI_CONF_DIR: conf };
  expect(cli('network', 'create', '--subnet', subnet.cidr, NET).status).toBe(0);
  daemon = await startDaemon({ state: dirs.state, run: dirs.run });
  for (let i = 0; i < 3; i += 1) {
    const ns = objs.netns();
    namespaces.push(ns);
    expect(cli('network', 'connect', '--alias', 'px', NET, ns.name).status).toBe(0);
    servers.push(await startServer(dirs.root, ns.name, `p${i}`));
  }
  client = objs.netns();
  expect(cli('network', 'connect', NET, client.name).status).toBe(0);
  // A long interval: the retry test needs a replica that refuses before its check notices.
  const r = cli('service', 'create', 'px', '--network', NET, '-p', `${PORT}:80`, '--lb-mode', 'proxy', '--lb-policy', 'leastconn', '--health-interval', '1m');
  expect(r.status, r.stderr).toBe(0);
  await waitFor('three healthy replicas', async () => ((await serviceReplicas(daemon!.socket, 'px')).filter((x) => x.health === 'up').length === 3 ? true : undefined), 10_000);
  await waitFor('proxy listening', async () => ((await tcpHello('127.0.0.1', PORT, 500)).startsWith('p') ? true : undefined), 10_000, 50);
}, 120_000);

afterAll(async () => {
  for (const s of servers) s.kill();
  if (env) cli('service', 'rm', 'px');
  await daemon?.stop();
  if (env) {
    for (const ns of [...namespaces, ...(client ? [client] : [])]) cli('network', 'disconnect', NET, ns.name);
    cli('network', 'rm', '--force', NET);
  }
  removeNetworkLeftovers([NET]);
  objs.cleanup();
  dirs.cleanup();
}, 60_000);

describe('service px on the proxy path', () => {
  it('uses no nftables table', () => {
    expect(lbTableExists()).toBe(false);
  });

  it('leastconn: with two replicas holding a connection each, new ones go to the third', async () => {
    const a = await open();
    const b = await open();
    expect(a.id).not.toBe(b.id);
    const idle = ['p0', 'p1', 'p2'].find((id) => id !== a.id && id !== b.id)!;
    const ids: string[] = [];
    const activeNow = async () => metricValue(await metricsText(daemon!.metricsPort), 'shoal_lb_active_connections', { service: 'px' });
    for (let i = 0; i < 6; i += 1) {
      // The proxy learns of the previous close asynchronously: until then that replica holds one too.
      await waitFor('two open connections', async () => ((await activeNow()) === 2 ? true : undefined), 3000, 10);
      ids.push(await tcpHello('127.0.0.1', PORT));
    }
    expect(ids).toEqual(Array(6).fill(idle));
    a.socket.destroy();
    b.socket.destroy();
  });

  it('the VIP answers from inside the network, balanced', () => {
    const vip = (JSON.parse(cli('service', 'inspect', 'px').stdout) as { vips: string[] }).vips[0]!;
    expect(Object.keys(tally(helloFrom(dirs.root, client.name, vip, 80, 9))).sort()).toEqual(['p0', 'p1', 'p2']);
  });

  it('a refused connect is retried on another replica; the client never sees it', async () => {
    const before = metricValue(await metricsText(daemon!.metricsPort), 'shoal_lb_connect_errors_total', { service: 'px' });
    await servers[0]!.setAccepting(false);
    const ids: string[] = [];
    for (let i = 0; i < 9; i += 1) ids.push(await tcpHello('127.0.0.1', PORT));
    expect(ids.filter((id) => id === 'p0' || id.startsWith('ERR'))).toEqual([]);
    const after = metricValue(await metricsText(daemon!.metricsPort), 'shoal_lb_connect_errors_total', { service: 'px' });
    expect(after).toBeGreaterThan(before);
    await servers[0]!.setAccepting(true);
  });

  it('PROXY protocol v2 and v1 name the real client to the backend', async () => {
    expect(cli('service', 'update', 'px', '--proxy-protocol', 'v2').status).toBe(0);
    // The identity servers echo what they receive: the header comes back to us.
    const c2 = await waitFor('v2 header', async () => {
      const c = await open();
      const got = await waitFor('echo', () => (c.rest().length >= 28 ? c.rest() : undefined), 2000).catch(() => undefined);
      if (!got || got.subarray(0, 12).toString('hex') !== '0d0a0d0a000d0a515549540a') {
        c.socket.destroy();
        return undefined;
      }
      return { c, got };
    }, 5000, 50);
    const { c, got } = c2;
    expect([...got.subarray(12, 16)]).toEqual([0x21, 0x11, 0, 12]);
    expect([...got.subarray(16, 20)].join('.')).toBe('127.0.0.1');
    expect(got.readUInt16BE(24)).toBe(c.socket.localPort);
    expect(got.readUInt16BE(26)).toBe(PORT);
    c.socket.destroy();
    expect(cli('service', 'update', 'px', '--proxy-protocol', 'v1').status).toBe(0);
    const line = await waitFor('v1 header', async () => {
      const o = await open();
      const text = await waitFor('echo', () => (o.rest().includes(13) ? o.rest().toString() : undefined), 2000).catch(() => '');
      const port = o.socket.localPort;
      o.socket.destroy();
      return text.startsWith('PROXY ') ? { text, port } : undefined;
    }, 5000, 50);
    expect(line.text).toBe(`PROXY TCP4 127.0.0.1 127.0.0.1 ${line.port} ${PORT}\r\n`);
  });

  it('counts connections per backend', async () => {
    const text = await metricsText(daemon!.metricsPort);
    for (const id of [0, 1, 2]) {
      const ip = (await serviceReplicas(daemon!.socket, 'px')).find((r) => r.name === namespaces[id]!.name)!.ipv4!;
      expect(metricValue(text, 'shoal_lb_connections_total', { service: 'px', backend: `${ip}:80` })).toBeGreaterThan(0);
    }
    expect(metricValue(text, 'shoal_lb_backend_up', { service: 'px' })).toBe(3);
  });

  it('counts the bytes it carries, both ways', async () => {
    const bytes = async (direction: string) => metricValue(await metricsText(daemon!.metricsPort), 'shoal_lb_bytes_total', { service: 'px', direction });
    const [in0, out0] = [await bytes('in'), await bytes('out')];
    const c = await open();
    const payload = Buffer.alloc(100_000, 'x');
    c.socket.write(payload);
    // The replica echoes it (after the PROXY v1 header the previous test left switched on).
    await waitFor('echo of the payload', () => (c.rest().subarray(c.rest().indexOf(10) + 1).length >= payload.length ? true : undefined), 5000);
    c.socket.destroy();
    // In: the payload from the client. Out: the replica's id line, the echoed header and payload.
    expect((await bytes('in')) - in0).toBeGreaterThanOrEqual(payload.length);
    expect((await bytes('out')) - out0).toBeGreaterThanOrEqual(payload.length + c.id.length + 1);
    // Nothing else was sent through it meanwhile: no more than this connection's bytes.
    expect((await bytes('in')) - in0).toBeLessThan(payload.length + 200);
  });

  it('a connection to a replica out of rotation keeps working until the drain timeout ends it', async () => {
    // Short checks now (the retry test above wanted a long interval) and a 1 s drain timeout.
    const u = cli('service', 'update', 'px', '--health-interval', '200ms', '--drain-timeout', '1s', '--lb-policy', 'rr');
    expect(u.status, u.stderr).toBe(0);
    // A changed check starts over (each replica 'unknown', out of rotation, until its first
    // probe): a connection opened in that window is refused. Wait until the daemon runs the new
    // check and all three are back.
    await waitFor('new check running, three up', async () => {
      const v = ((await api(daemon!.socket, '/v1/services?name=px')).body as Array<{ health: { intervalMs: number }; replicas: Array<{ health: string }> }>)[0];
      return v?.health.intervalMs === 200 && v.replicas.filter((r) => r.health === 'up').length === 3 ? true : undefined;
    }, 5000, 20);
    const c = await open();
    let closedAt = 0;
    c.socket.on('close', () => (closedAt = Date.now()));
    c.socket.on('error', () => {});
    const server = servers.find((s) => s.id === c.id)!;
    const victim = namespaces[servers.indexOf(server)]!.name;
    await server.setAccepting(false);
    // The replica comes back whatever happens here.
    try {
      await waitFor('replica down', async () => ((await serviceReplicas(daemon!.socket, 'px')).find((r) => r.name === victim)?.health === 'down' ? true : undefined), 5000, 20);
      const downAt = Date.now();
      // Draining: out of rotation, yet the open connection still reaches it.
      const before = c.rest().length;
      c.socket.write('still-there');
      await waitFor('echo while draining', () => (c.rest().subarray(before).toString().includes('still-there') ? true : undefined), 900, 5);
      expect(closedAt).toBe(0);
      // Then the proxy ends it: 1 s after the sync that took the replica out (which came before we saw it down).
      await waitFor('connection closed by the drain timeout', () => (closedAt ? true : undefined), 3000, 20);
      expect(closedAt - downAt).toBeLessThanOrEqual(1000 + 500);
      expect(daemon!.logs.some((l) => l['event'] === 'lb_drain_timeout' && l['service'] === 'px')).toBe(true);
    } finally {
      c.socket.destroy();
      await server.setAccepting(true);
    }
    await waitFor('replica back', async () => ((await serviceReplicas(daemon!.socket, 'px')).filter((r) => r.health === 'up').length === 3 ? true : undefined), 5000, 20);
  });

  it('--max-conn 1 over two replicas: a third held connection waits in the queue and is served when one closes', async () => {
    // Replicas q0-q2 on port 81 count their connections (health checks go to port 80 only).
    const counted = await Promise.all(namespaces.map((ns, i) => startServer(dirs.root, ns.name, `q${i}`, 81, 5354, true)));
    servers.push(...counted);
    // Two replicas: p2 leaves rotation (its port 80 refuses, so its health check fails).
    await servers[2]!.setAccepting(false);
    try {
      await waitFor('p2 down', async () => ((await serviceReplicas(daemon!.socket, 'px')).find((r) => r.name === namespaces[2]!.name)?.health === 'down' ? true : undefined), 5000, 20);
      const u = cli('service', 'update', 'px', '-p', `${PORT}:80`, '-p', `${LIMIT_PORT}:81`, '--max-conn', '1', '--queue-timeout', '10s');
      expect(u.status, u.stderr).toBe(0);
      await waitFor('port 81 proxied', async () => ((await tcpHello('127.0.0.1', LIMIT_PORT, 500)).startsWith('q') ? true : undefined), 5000, 50);
      // The probe's connection closes asynchronously on the replica: wait until none is open.
      await waitFor('replicas idle', () => (counted.every((q) => / 0$/.test(q.output().trimEnd().split('\n').filter((l) => l.startsWith('conns ')).at(-1) ?? 'conns 0')) ? true : undefined), 3000, 10);
      const from = counted.map((q) => q.output().length);
      const a = await open(LIMIT_PORT);
      const b = await open(LIMIT_PORT);
      expect([a.id, b.id].sort()).toEqual(['q0', 'q1']);
      // The third is accepted by the proxy but gets no replica while both hold their one slot.
      const c = net.connect({ host: '127.0.0.1', port: LIMIT_PORT });
      let cText = '';
      let cClosed = false;
      c.on('data', (d: Buffer) => (cText += d.toString()));
      c.on('close', () => (cClosed = true));
      c.on('error', () => {});
      await new Promise<void>((res) => c.once('connect', () => res()));
      await sleep(500);
      expect(cText).toBe('');
      expect(cClosed).toBe(false);
      expect(metricValue(await metricsText(daemon!.metricsPort), 'shoal_lb_queued_connections', { service: 'px' })).toBe(1);
      a.socket.destroy();
      const cId = await waitFor('third served', () => (cText.includes('\n') ? cText.slice(0, cText.indexOf('\n')) : undefined), 3000, 10);
      expect(cId).toBe(a.id);
      expect(metricValue(await metricsText(daemon!.metricsPort), 'shoal_lb_queued_connections', { service: 'px' })).toBe(0);
      b.socket.destroy();
      c.destroy();
      await sleep(200);
      // Never two at once on a replica, counted on its side.
      expect(counted.map((q, i) => maxConns(q.output(), from[i]))).toEqual([1, 1, 0]);
    } finally {
      await servers[2]!.setAccepting(true);
    }
  });

  it('--max-conn: a full queue and the queue timeout refuse the client', async () => {
    const u = cli('service', 'update', 'px', '--max-queue', '1', '--queue-timeout', '300ms');
    expect(u.status, u.stderr).toBe(0);
    await waitFor('p2 back', async () => ((await serviceReplicas(daemon!.socket, 'px')).filter((r) => r.health === 'up').length === 3 ? true : undefined), 5000, 20);
    await waitFor('settings applied', async () => (((await api(daemon!.socket, '/v1/services?name=px')).body as Array<{ queueTimeoutMs?: number }>)[0]?.queueTimeoutMs === 300 ? true : undefined), 5000, 20);
    const held = [await open(LIMIT_PORT), await open(LIMIT_PORT), await open(LIMIT_PORT)];
    expect(held.map((h) => h.id).sort()).toEqual(['q0', 'q1', 'q2']);
    const outcome = (s: net.Socket) => new Promise<{ text: string; at: number }>((res) => {
      let text = '';
      s.on('data', (d: Buffer) => (text += d.toString()));
      s.on('error', () => {});
      s.on('close', () => res({ text, at: Date.now() }));
    });
    const refusedCount = async (reason: string) => metricValue(await metricsText(daemon!.metricsPort), 'shoal_lb_refused_connections_total', { service: 'px', reason });
    const [fullBefore, timeoutBefore] = [await refusedCount('queue_full'), await refusedCount('queue_timeout')];
    const t0 = Date.now();
    const waiting = net.connect({ host: '127.0.0.1', port: LIMIT_PORT });
    const waited = outcome(waiting);
    await new Promise<void>((res) => waiting.once('connect', () => res()));
    await sleep(50);
    const refused = outcome(net.connect({ host: '127.0.0.1', port: LIMIT_PORT }));
    // The queue holds one: the second is refused at once, the first after the 300 ms timeout.
    const r = await refused;
    expect(r.text).toBe('');
    expect(r.at - t0).toBeLessThan(250);
    const w = await waited;
    expect(w.text).toBe('');
    expect(w.at - t0).toBeGreaterThanOrEqual(280);
    expect(w.at - t0).toBeLessThan(2000);
    expect([(await refusedCount('queue_full')) - fullBefore, (await refusedCount('queue_timeout')) - timeoutBefore]).toEqual([1, 1]);
    expect(metricValue(await metricsText(daemon!.metricsPort), 'shoal_lb_queued_connections', { service: 'px' })).toBe(0);
    for (const h of held) h.socket.destroy();
    const off = cli('service', 'update', 'px', '-p', `${PORT}:80`, '--max-conn', '0');
    expect(off.status, off.stderr).toBe(0);
  });

  it('--slow-start: a replica that rises gets clearly fewer new connections during the ramp, an even share after', async () => {
    const u = cli('service', 'update', 'px', '--slow-start', '5s', '--lb-policy', 'rr');
    expect(u.status, u.stderr).toBe(0);
    await waitFor('settings applied', async () => (((await api(daemon!.socket, '/v1/services?name=px')).body as Array<{ slowStartMs?: number; maxConn?: number }>)[0]?.slowStartMs === 5000 ? true : undefined), 5000, 20);
    const victim = namespaces[2]!.name;
    const health = async () => (await serviceReplicas(daemon!.socket, 'px')).find((r) => r.name === victim)?.health;
    await servers[2]!.setAccepting(false);
    await waitFor('p2 down', async () => ((await health()) === 'down' ? true : undefined), 5000, 20);
    await servers[2]!.setAccepting(true);
    await waitFor('p2 up', async () => ((await health()) === 'up' ? true : undefined), 5000, 10);
    const upAt = Date.now();
    // Sequential connections in the first 1.5 s of the 5 s ramp (p2's weight at most 0.3 of its
    // peers', 1/16 at first); a slow machine makes fewer, not different ones.
    const during: string[] = [];
    while (during.length < 60 && Date.now() - upAt < 1500) during.push(await tcpHello('127.0.0.1', PORT));
    const t1 = tally(during);
    expect(during.length, JSON.stringify(t1)).toBeGreaterThanOrEqual(15);
    expect(t1['p2'] ?? 0, JSON.stringify(t1)).toBeLessThan(Math.min(t1['p0'] ?? 0, t1['p1'] ?? 0) / 2);
    await sleep(Math.max(0, 5000 - (Date.now() - upAt)) + 100);
    const after: string[] = [];
    for (let i = 0; i < 60; i += 1) after.push(await tcpHello('127.0.0.1', PORT));
    const t2 = tally(after);
    for (const id of ['p0', 'p1', 'p2']) expect(t2[id], JSON.stringify(t2)).toBeGreaterThanOrEqual(18);
    expect(cli('service', 'update', 'px', '--slow-start', '0').status).toBe(0);
  }, 30_000);

  it('--affinity client-ip: each client keeps one replica (rr spreads the clients), until it goes out of rotation', async () => {
    const u = cli('service', 'update', 'px', '--affinity', 'client-ip:30s', '--lb-policy', 'rr');
    expect(u.status, u.stderr).toBe(0);
    await waitFor('settings applied', async () => (((await api(daemon!.socket, '/v1/services?name=px')).body as Array<{ affinity?: unknown }>)[0]?.affinity ? true : undefined), 5000, 20);
    const vip = (JSON.parse(cli('service', 'inspect', 'px').stdout) as { vips: string[] }).vips[0]!;
    const fromClient = tally(helloFrom(dirs.root, client.name, vip, 80, 12));
    const host: string[] = [];
    for (let i = 0; i < 12; i += 1) host.push(await tcpHello('127.0.0.1', PORT));
    const fromHost = tally(host);
    expect(Object.values(fromClient), JSON.stringify(fromClient)).toEqual([12]);
    expect(Object.values(fromHost), JSON.stringify(fromHost)).toEqual([12]);
    // The host's replica fails: the host moves to another one and stays there.
    const mine = Object.keys(fromHost)[0]!;
    const i = Number(mine.slice(1));
    const health = async () => (await serviceReplicas(daemon!.socket, 'px')).find((r) => r.name === namespaces[i]!.name)?.health;
    await servers[i]!.setAccepting(false);
    await waitFor(`${mine} down`, async () => ((await health()) === 'down' ? true : undefined), 5000, 20);
    const moved: string[] = [];
    for (let k = 0; k < 12; k += 1) moved.push(await tcpHello('127.0.0.1', PORT));
    const t = tally(moved);
    expect(Object.keys(t).length, JSON.stringify(t)).toBe(1);
    expect(t[mine], JSON.stringify(t)).toBeUndefined();
    await servers[i]!.setAccepting(true);
    await waitFor(`${mine} up`, async () => ((await health()) === 'up' ? true : undefined), 5000, 10);
    expect(cli('service', 'update', 'px', '--affinity', 'none').status).toBe(0);
  }, 30_000);
});
