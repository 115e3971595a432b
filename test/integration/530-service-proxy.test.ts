/**
 * The proxy data path (`--lb-mode proxy`) with real traffic: three replicas (namespaces attached
 * by the built CLI with `--alias px`, identity servers that also echo what they receive), the
 * daemon proxying 127.0.0.1:18385 and VIP:80. Shown: leastconn sends new connections to the
 * idle replica while two others hold one each; a replica that stops accepting before its health
 * check notices is skipped by the connect retry (the client never sees an error, the retry is
 * counted); `update --proxy-protocol v2|v1` puts a header in front of the stream that names the
 * client's real address and port; the VIP answers from inside the network; metrics count it all.
 */
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeNetworkLeftovers } from '../helpers/cli-networks.js';
import { KernelObjects } from '../helpers/kernel-objects.js';
import { testRunId } from '../helpers/names.js';
import { metricsText, metricValue, startDaemon, tempDirs, waitFor, type DaemonProc } from './daemon-helpers.js';
import { helloFrom, lbTableExists, serviceReplicas, serviceSubnet, shoalCli, startServer, tally, tcpHello, type IdentityServer } from './service-helpers.js';

const objs = new KernelObjects('sv53');
const dirs = tempDirs('530');
const NET = `sv53n${testRunId()}`;
const subnet = serviceSubnet();
const PORT = 18385;
let env: NodeJS.ProcessEnv;
let daemon: DaemonProc | undefined;
const servers: IdentityServer[] = [];
const namespaces: Array<{ name: string; path: string }> = [];
let client: { name: string; path: string };
const cli = (...args: string[]) => shoalCli(env, ...args);

/** An open connection through the proxy: its replica id and everything it received after that. */
async function open(): Promise<{ id: string; socket: net.Socket; rest: () => Buffer }> {
  const socket = net.connect({ host: '127.0.0.1', port: PORT });
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
});
