/**
 * The routing mesh across nodes (issue 16 on the cluster of issue 14): a service of an overlay
 * network is created on a node that runs none of its replicas; its record goes to etcd and every
 * node's daemon runs it. Replicas run on nodes 0 and 1 (identity servers: the first line of a
 * TCP connection is the replica's id). What is checked, from inside the node namespaces:
 * - the published port answers on a node without replicas (127.0.0.1 and its underlay address,
 *   the latter from another node) and reaches the replicas of both other nodes;
 * - the VIP (unique in the cluster, from the `@services` block) balances a container's
 *   connections on that node over both nodes' replicas, and the service name resolves to it;
 * - a replica that stops accepting leaves the mesh of the other node within interval x fall + 1 s
 *   and comes back, while connections keep succeeding;
 * - mode=host publishes only on the nodes that run a replica, to their own replica;
 * - `shoal service rm` on a third node removes it everywhere (nothing left in nftables).
 * Only the test cluster's namespaces and the overlay subnet inside them are used; host ports
 * 18480-18489 inside the node namespaces.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster, until, type ClusterNode } from '../helpers/cluster.js';
import { KernelObjects } from '../helpers/kernel-objects.js';
import type { DaemonProc } from './daemon-helpers.js';
import { addOverlayContainer, conflistOn, pluginConf, shoalOn, startNodeDaemon, type OverlayAttachment } from './overlay-helpers.js';
import { startServer, type IdentityServer } from './service-helpers.js';
import { execCni, privateBundles } from '../e2e/helpers/cni-exec.js';

const PREFIX = 'msh';
const NET = 'meshnet';
const MESH_PORT = 18480;
const HOST_PORT = 18481;
const PROXY_PORT = 18482;
const UDP_PORT = 18483;
const TTL_S = 2;
const HEALTH = ['--health-interval', '300ms', '--health-fall', '2', '--health-rise', '1'];

let cluster: TestCluster;
let bin: { dir: string; remove(): void };
const objects = new KernelObjects(PREFIX);
const daemons: DaemonProc[] = [];
const servers: IdentityServer[] = [];
const attached: OverlayAttachment[] = [];

interface Ctr {
  node: ClusterNode;
  ns: { name: string; path: string };
  ip: string;
}

const shoal = (node: ClusterNode, args: string[]) => shoalOn(cluster, node, args);

async function addContainer(node: ClusterNode, aliases: string[]): Promise<Ctr> {
  const c = await addOverlayContainer({ node, network: NET, aliases, binDir: bin.dir, objects, prefix: PREFIX, attached });
  return { node, ns: c.ns, ip: c.ips[0]! };
}

/**
 * `count` TCP connections one after another from inside namespace `netns`, each reading the
 * first line (the replica's id); 'ERR:<code>' for a failed one.
 */
const CLIENT = `
const net = require('node:net');
const [host, port, count] = process.argv.slice(1);
const peer = process.env.ASK_PEER === '1';
const one = () => new Promise((resolve) => {
  const s = net.connect({ host, port: Number(port) });
  let buf = '';
  let id;
  const t = setTimeout(() => done('ERR:timeout'), 2000);
  const done = (v) => { clearTimeout(t); s.destroy(); resolve(v); };
  s.on('data', (d) => {
    buf += d;
    for (let i; (i = buf.indexOf('\\n')) >= 0; ) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (!peer) return done(line);
      if (id === undefined) { id = line; s.write('peer?\\n'); } else return done(id + ' ' + line);
    }
  });
  s.on('error', (e) => done('ERR:' + (e.code || e.message)));
});
(async () => { for (let i = 0; i < Number(count); i++) console.log(await one()); })();
`;

/** One datagram each from `count` fresh sockets inside `netns`; the answers (replica ids). */
const UDP_CLIENT = `
const dgram = require('node:dgram');
const [host, port, count] = process.argv.slice(1);
const one = () => new Promise((resolve) => {
  const s = dgram.createSocket('udp4');
  const t = setTimeout(() => { s.close(); resolve('ERR:timeout'); }, 1500);
  s.on('message', (m) => { clearTimeout(t); s.close(); resolve(String(m)); });
  s.send('hi', Number(port), host);
});
(async () => { for (let i = 0; i < Number(count); i++) console.log(await one()); })();
`;

function udpHellos(netns: string, host: string, port: number, count: number): string[] {
  const r = spawnSync('ip', ['netns', 'exec', netns, process.execPath, '-e', UDP_CLIENT, host, String(port), String(count)], { encoding: 'utf8', timeout: 30_000 });
  return r.stdout.split('\n').filter(Boolean);
}

/**
 * Holds one TCP connection for `ms`: reads the replica's id, then every 100 ms sends a line and
 * waits for its echo. Prints {id, sent, echoed, error?} (JSON).
 */
const HOLD = `
const net = require('node:net');
const [host, port, ms] = process.argv.slice(1);
const s = net.connect({ host, port: Number(port) });
const r = { id: undefined, sent: 0, echoed: 0 };
let buf = '';
s.on('data', (d) => {
  buf += d;
  for (let i; (i = buf.indexOf('\\n')) >= 0; ) {
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    if (r.id === undefined) r.id = line; else if (line === 'tick') r.echoed++;
  }
});
s.on('error', (e) => { r.error = e.code || e.message; });
const timer = setInterval(() => { if (!s.destroyed) { s.write('tick\\n'); r.sent++; } }, 100);
setTimeout(() => { clearInterval(timer); setTimeout(() => { console.log(JSON.stringify(r)); s.destroy(); }, 500); }, Number(ms));
`;

function hellos(netns: string, host: string, port: number, count: number, askPeer = false): string[] {
  const env = { ...process.env, ASK_PEER: askPeer ? '1' : '0' };
  const r = spawnSync('ip', ['netns', 'exec', netns, process.execPath, '-e', CLIENT, host, String(port), String(count)], { encoding: 'utf8', timeout: 30_000, env });
  return r.stdout.split('\n').filter(Boolean);
}

const tally = (ids: string[]) => ids.reduce<Record<string, number>>((m, id) => ((m[id] = (m[id] ?? 0) + 1), m), {});

function etcdJson(prefix: string): Array<Record<string, unknown>> {
  const out = cluster.etcdctl(['get', '--prefix', '--print-value-only', `/shoal/v1/${prefix}`]);
  return out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
}

interface ServiceApiView {
  name: string;
  vips: string[];
  replicas: Array<{ node: string; health: string; ipv4?: string }>;
}

function servicesOn(node: ClusterNode, name: string): ServiceApiView | undefined {
  const r = shoal(node, ['service', 'inspect', name]);
  return r.status === 0 ? (JSON.parse(r.stdout) as ServiceApiView) : undefined;
}

let replicas: Ctr[];
let client: Ctr;
let n0: ClusterNode, n1: ClusterNode, n2: ClusterNode;

beforeAll(async () => {
  bin = privateBundles(['shoal-vxlan']);
  cluster = await TestCluster.create({ nodes: 3, etcdMembers: 3, prefix: PREFIX });
  [n0, n1, n2] = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode];
  daemons.push(...(await Promise.all(cluster.nodes.map((n) => startNodeDaemon(cluster, n, ['--node-ttl', String(TTL_S)])))));
  for (const d of daemons) await d.waitLog((l) => l['event'] === 'daemon_started', 15_000);
  const created = shoal(n0, ['network', 'create', '--driver', 'overlay', NET]);
  expect(created.status, created.stderr).toBe(0);
  replicas = [await addContainer(n0, ['web', 'pweb']), await addContainer(n1, ['web', 'pweb'])];
  servers.push(await startServer(bin.dir, replicas[0]!.ns.name, 'r0'), await startServer(bin.dir, replicas[1]!.ns.name, 'r1'));
  client = await addContainer(n2, []);
}, 90_000);

afterAll(async () => {
  for (const s of servers) s.kill();
  for (const a of attached.reverse()) {
    await execCni('ip', { command: 'DEL', containerId: a.id, netns: a.netns, ifname: 'eth0', path: [bin.dir], config: a.conf }, ['netns', 'exec', a.node.netns, path.join(bin.dir, 'shoal-vxlan')]).catch(() => undefined);
  }
  await Promise.all(daemons.map((d) => d.stop()));
  objects.cleanup();
  await cluster?.destroy();
  bin?.remove();
}, 60_000);

describe('routing mesh across nodes', () => {
  let vip: string;

  it('a service created on a node without replicas lives in etcd with a VIP no container holds', async () => {
    const r = shoal(n2, ['service', 'create', 'web', '--network', NET, '-p', `${MESH_PORT}:80`, '-p', `${UDP_PORT}:5353/udp`, ...HEALTH]);
    expect(r.status, r.stderr).toBe(0);
    const [record] = etcdJson('services/');
    expect(record?.['name']).toBe('web');
    vip = (record!['vips'] as string[])[0]!;
    expect(vip).toMatch(/^10\.1\d\d\./);
    const blocks = etcdJson(`blocks/${NET}/`);
    const serviceBlock = blocks.find((b) => b['node'] === '@services');
    expect(serviceBlock, JSON.stringify(blocks)).toBeDefined();
    // The VIP is in the services' block, and in no node's block.
    const inBlock = (cidr: string, ip: string) => {
      const [base, len] = cidr.split('/') as [string, string];
      const n = (a: string) => a.split('.').reduce((v, o) => v * 256 + Number(o), 0);
      const mask = 2 ** (32 - Number(len));
      return Math.floor(n(ip) / mask) === Math.floor(n(base) / mask);
    };
    expect(inBlock(serviceBlock!['cidr'] as string, vip)).toBe(true);
    expect(blocks.filter((b) => b['node'] !== '@services').some((b) => inBlock(b['cidr'] as string, vip))).toBe(false);
    expect([...replicas, client].map((c) => c.ip)).not.toContain(vip);
    // Every node sees it, with both replicas up (the one on node 2 checks them over the overlay).
    for (const node of cluster.nodes) {
      await until(
        `web's replicas up on ${node.name}`,
        () => {
          const v = servicesOn(node, 'web');
          return v && v.replicas.length === 2 && v.replicas.every((x) => x.health === 'up') ? v : undefined;
        },
        15_000,
      );
    }
    const onN2 = servicesOn(n2, 'web')!;
    expect(onN2.replicas.map((x) => x.node).sort()).toEqual([n0.name, n1.name]);
  });

  it('the published port answers on the node without replicas and reaches both', () => {
    const local = tally(hellos(n2.netns, '127.0.0.1', MESH_PORT, 20));
    expect(local, JSON.stringify(local)).toEqual({ r0: 10, r1: 10 });
    // From another node to node 2's underlay address: DNAT there, SNAT to node 2's own overlay address.
    const remote = tally(hellos(n0.netns, n2.address, MESH_PORT, 20));
    expect(remote, JSON.stringify(remote)).toEqual({ r0: 10, r1: 10 });
  });

  it('UDP through the mesh: each new flow from the node without replicas is balanced over both', () => {
    const ids = tally(udpHellos(n2.netns, '127.0.0.1', UDP_PORT, 10));
    expect(ids, JSON.stringify(ids)).toEqual({ r0: 5, r1: 5 });
  });

  it('proxy mode across nodes: the user-space proxy on the node without replicas connects from its own address', async () => {
    const r = shoal(n1, ['service', 'create', 'pweb', '--network', NET, '--lb-mode', 'proxy', '-p', `${PROXY_PORT}:80`, ...HEALTH]);
    expect(r.status, r.stderr).toBe(0);
    await until('pweb answers on node 2', () => (hellos(n2.netns, '127.0.0.1', PROXY_PORT, 1)[0]?.startsWith('r') ? true : undefined), 15_000);
    await until('both pweb replicas up on node 2', () => servicesOn(n2, 'pweb')?.replicas.every((x) => x.health === 'up') || undefined, 15_000);
    expect(tally(hellos(n2.netns, '127.0.0.1', PROXY_PORT, 10))).toEqual({ r0: 5, r1: 5 });
    const lb2 = (etcdJson(`endpoints/${NET}/${n2.name}/`).find((e) => e['containerId'] === `node:${n2.name}`)!['ipv4'] as string[])[0]!;
    expect(new Set(hellos(n2.netns, '127.0.0.1', PROXY_PORT, 4, true).map((l) => l.split(' ')[1]))).toEqual(new Set([lb2]));
    expect(shoal(n1, ['service', 'rm', 'pweb']).status).toBe(0);
  });

  it('replicas see node 2\'s own overlay address (its load-balancer endpoint), never the shared gateway', () => {
    const lb = etcdJson(`endpoints/${NET}/${n2.name}/`).find((e) => e['containerId'] === `node:${n2.name}`);
    expect(lb, 'node 2 publishes its load-balancer endpoint').toBeDefined();
    const lbAddress = (lb!['ipv4'] as string[])[0]!;
    const seen = hellos(n0.netns, n2.address, MESH_PORT, 4, true).map((l) => l.split(' ')[1]);
    expect(new Set(seen)).toEqual(new Set([lbAddress]));
    // Where the reply comes back the same way (the replica on the node that took the connection),
    // the replica sees the real client: node 1 asking node 0, r0 sees node 1's address.
    const lb0 = (etcdJson(`endpoints/${NET}/${n0.name}/`).find((e) => e['containerId'] === `node:${n0.name}`)!['ipv4'] as string[])[0]!;
    const viaN0 = new Set(hellos(n1.netns, n0.address, MESH_PORT, 6, true));
    expect(viaN0).toEqual(new Set([`r0 ${n1.address}`, `r1 ${lb0}`]));
    // The address is node 2's: one of its blocks, on its lb- link.
    expect(cluster.exec(n2, 'ip', ['-br', 'addr', 'show']).stdout).toMatch(new RegExp(`^lb-\\S+\\s+UP\\s+${lbAddress.replaceAll('.', '\\.')}/32`, 'm'));
  });

  it('a container reaches the VIP on its own node and is balanced over both nodes; the name resolves to the VIP', () => {
    const ids = tally(hellos(client.ns.name, vip, 80, 20));
    expect(ids, JSON.stringify(ids)).toEqual({ r0: 10, r1: 10 });
    const gateway = ((pluginConf(conflistOn(n2, NET)!)['ipam'] as { ranges: Array<Array<{ gateway: string }>> }).ranges[0]![0]!.gateway);
    const dig = spawnSync('ip', ['netns', 'exec', client.ns.name, 'dig', '+short', '+time=1', '+tries=2', `@${gateway}`, 'web', 'A'], { encoding: 'utf8' });
    expect(dig.stdout.trim()).toBe(vip);
    // Node endpoints are peers, not names: tasks.web answers exactly the two replicas.
    const tasks = spawnSync('ip', ['netns', 'exec', client.ns.name, 'dig', '+short', '+time=1', '+tries=2', `@${gateway}`, 'tasks.web', 'A'], { encoding: 'utf8' });
    expect(tasks.stdout.split('\n').filter(Boolean).sort()).toEqual(replicas.map((r) => r.ip).sort());
  });

  it('a replica that stops accepting leaves the other nodes\' mesh within interval x fall + 1 s, then returns', async () => {
    await servers[1]!.setAccepting(false);
    const t0 = Date.now();
    await until(
      'r1 out of the mesh on node 2',
      () => {
        const ids = hellos(n2.netns, '127.0.0.1', MESH_PORT, 4);
        return ids.every((id) => id === 'r0') ? ids : undefined;
      },
      10_000,
    );
    expect(Date.now() - t0).toBeLessThan(300 * 2 + 300 + 1000 + 1500);
    // Out for good, not by chance: every later connection lands on r0, none fails.
    expect(tally(hellos(n2.netns, '127.0.0.1', MESH_PORT, 10))).toEqual({ r0: 10 });
    await servers[1]!.setAccepting(true);
    await until('r1 back on node 2', () => (hellos(n2.netns, '127.0.0.1', MESH_PORT, 4).includes('r1') ? true : undefined), 10_000);
  });

  it('mode=host publishes only where a replica runs, to that replica', async () => {
    const r = shoal(n1, ['service', 'create', 'hweb', '--network', NET, '-p', `mode=host,${HOST_PORT}:80`, ...HEALTH]);
    expect(r.status, r.stderr).toBe(0);
    // hweb has the same replicas (the alias is the service name: none carries "hweb")...
    // so the replicas are the containers aliased "hweb": add one on node 0.
    const extra = await addContainer(n0, ['hweb']);
    servers.push(await startServer(bin.dir, extra.ns.name, 'h0'));
    await until('hweb answers on node 0', () => (hellos(n0.netns, '127.0.0.1', HOST_PORT, 1)[0] === 'h0' ? true : undefined), 15_000);
    expect(tally(hellos(n0.netns, '127.0.0.1', HOST_PORT, 6))).toEqual({ h0: 6 });
    // Node 2 runs no replica of hweb: nothing is published there.
    expect(hellos(n2.netns, '127.0.0.1', HOST_PORT, 2).every((x) => x.startsWith('ERR:'))).toBe(true);
  });

  it('a connection held through the mesh keeps working while the daemon of the node that balanced it restarts', async () => {
    const holder = cluster.spawn(n0, process.execPath, ['-e', HOLD, n2.address, String(MESH_PORT), '4000'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    holder.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const done = new Promise((resolve) => holder.once('exit', resolve));
    await new Promise((r) => setTimeout(r, 500));
    await daemons[2]!.stop();
    daemons[2] = await startNodeDaemon(cluster, n2, ['--node-ttl', String(TTL_S)]);
    await done;
    const held = JSON.parse(out) as { id: string; sent: number; echoed: number; error?: string };
    expect(held.error).toBeUndefined();
    expect(['r0', 'r1']).toContain(held.id);
    expect(held.sent).toBeGreaterThan(30);
    expect(held.echoed).toBe(held.sent);
    // And the restarted daemon balances new connections again, over both nodes.
    await until('mesh back on node 2', () => {
      const ids = tally(hellos(n2.netns, '127.0.0.1', MESH_PORT, 4));
      return ids['r0'] === 2 && ids['r1'] === 2 ? ids : undefined;
    }, 15_000);
  });

  it('a node\'s death takes its replica out of the other nodes\' mesh within the TTL; its daemon back, the replica returns', async () => {
    daemons[1]!.child.kill('SIGKILL');
    await daemons[1]!.exited;
    const t0 = Date.now();
    await until('r1 gone from node 2', () => (servicesOn(n2, 'web')?.replicas.length === 1 ? true : undefined), (TTL_S + 5) * 1000);
    expect(Date.now() - t0).toBeLessThan((TTL_S + 3) * 1000);
    expect(tally(hellos(n2.netns, '127.0.0.1', MESH_PORT, 6))).toEqual({ r0: 6 });
    daemons[1] = await startNodeDaemon(cluster, n1, ['--node-ttl', String(TTL_S)]);
    await until('r1 back on node 2', () => (hellos(n2.netns, '127.0.0.1', MESH_PORT, 4).includes('r1') ? true : undefined), 15_000);
  });

  it('rm on any node removes the service everywhere', async () => {
    for (const name of ['web', 'hweb']) expect(shoal(n0, ['service', 'rm', name]).status).toBe(0);
    expect(etcdJson('services/')).toEqual([]);
    for (const node of cluster.nodes) {
      await until(`no lb table on ${node.name}`, () => (cluster.exec(node, 'nft', ['list', 'table', 'ip', 'shoal-lb']).status !== 0 ? true : undefined), 10_000);
    }
    expect(hellos(n2.netns, '127.0.0.1', MESH_PORT, 1)[0]).toMatch(/^ERR:/);
  });
});
