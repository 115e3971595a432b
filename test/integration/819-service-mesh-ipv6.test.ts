/**
 * The routing mesh over IPv6 across nodes: on a dual-stack overlay, each node's load-balancer
 * endpoint holds an IPv6 address too, so a connection to the service's IPv6 VIP on a node without
 * replicas is balanced to a replica on another node, SNATed to that node's own IPv6 address
 * (lb-endpoint.ts). Before, the endpoint was IPv4 only and such connections found no backend.
 * Writing this test found three faults on the way, each fixed and covered where it lives: a
 * node's IPv6 blocks were claimed outside the IPv6 subnet on a dual-stack overlay, so no
 * container could attach (cluster-blocks); the anycast gateway was refused on a bridge that
 * already held an IPv6 VIP (bridge-device.ts); and the first service after an empty state
 * was diffed into a table that did not exist (service-nft-rules).
 * Two nodes, one etcd member; only the test cluster's namespaces and the overlay subnets inside
 * them are used.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster, until, type ClusterNode } from '../helpers/cluster.js';
import { KernelObjects } from '../helpers/kernel-objects.js';
import type { DaemonProc } from './daemon-helpers.js';
import { addOverlayContainer, shoalOn, startNodeDaemon, type OverlayAttachment } from './overlay-helpers.js';
import { execCni, privateBundles } from '../e2e/helpers/cni-exec.js';

const PREFIX = 'msh6';
const NET = 'meshnet6';
const PORT = 18490;
const HEALTH = ['--health-interval', '300ms', '--health-fall', '2', '--health-rise', '1'];

let cluster: TestCluster;
let bin: { dir: string; remove(): void };
const objects = new KernelObjects(PREFIX);
const daemons: DaemonProc[] = [];
const servers: ChildProcess[] = [];
const attached: OverlayAttachment[] = [];

interface Ctr {
  ns: { name: string; path: string };
  ips: string[];
}

function addContainer(node: ClusterNode, aliases: string[]): Promise<Ctr> {
  return addOverlayContainer({ node, network: NET, aliases, binDir: bin.dir, objects, prefix: PREFIX, attached });
}

/** Listens on [::]:80 (both families: the health check connects over IPv4); each connection gets "<id> <the client address it sees>". */
const SERVER = `
const net = require('node:net');
const [id] = process.argv.slice(1);
net.createServer((c) => { c.on('error', () => {}); c.end(id + ' ' + c.remoteAddress + '\\n'); }).listen({ host: '::', port: 80 }, () => console.log('ready'));
`;

/** `count` connections one after another from inside `netns`; each line what the server said, or ERR:<code>. */
const CLIENT = `
const net = require('node:net');
const [host, count] = process.argv.slice(1);
const one = () => new Promise((resolve) => {
  const s = net.connect({ host, port: 80 });
  let buf = '';
  const t = setTimeout(() => done('ERR:timeout'), 2000);
  const done = (v) => { clearTimeout(t); s.destroy(); resolve(v); };
  s.on('data', (d) => { buf += d; const i = buf.indexOf('\\n'); if (i >= 0) done(buf.slice(0, i)); });
  s.on('error', (e) => done('ERR:' + (e.code || e.message)));
});
(async () => { for (let i = 0; i < Number(count); i++) console.log(await one()); })();
`;

function ask(netns: string, host: string, count: number): string[] {
  const r = spawnSync('ip', ['netns', 'exec', netns, process.execPath, '-e', CLIENT, host, String(count)], { encoding: 'utf8', timeout: 30_000 });
  return r.stdout.split('\n').filter(Boolean);
}

function etcdJson(prefix: string): Array<Record<string, unknown>> {
  const out = cluster.etcdctl(['get', '--prefix', '--print-value-only', `/shoal/v1/${prefix}`]);
  return out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
}

let replica: Ctr;
let client: Ctr;
let n0: ClusterNode, n1: ClusterNode;

beforeAll(async () => {
  bin = privateBundles(['shoal-vxlan']);
  cluster = await TestCluster.create({ nodes: 2, etcdMembers: 1, prefix: PREFIX });
  [n0, n1] = cluster.nodes as [ClusterNode, ClusterNode];
  daemons.push(...(await Promise.all(cluster.nodes.map((n) => startNodeDaemon(cluster, n)))));
  for (const d of daemons) await d.waitLog((l) => l['event'] === 'daemon_started', 15_000);
  const created = shoalOn(cluster, n0, ['network', 'create', '--driver', 'overlay', '--ipv6', NET]);
  expect(created.status, created.stderr).toBe(0);
  replica = await addContainer(n0, ['web6']);
  const server = spawn('ip', ['netns', 'exec', replica.ns.name, process.execPath, '-e', SERVER, 'r0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  servers.push(server);
  await new Promise<void>((resolve) => server.stdout!.once('data', () => resolve()));
  client = await addContainer(n1, []);
}, 90_000);

afterAll(async () => {
  for (const s of servers) s.kill('SIGKILL');
  for (const a of attached.reverse()) {
    await execCni('ip', { command: 'DEL', containerId: a.id, netns: a.netns, ifname: 'eth0', path: [bin.dir], config: a.conf }, ['netns', 'exec', a.node.netns, path.join(bin.dir, 'shoal-vxlan')]).catch(() => undefined);
  }
  await Promise.all(daemons.map((d) => d.stop()));
  objects.cleanup();
  await cluster?.destroy();
  bin?.remove();
}, 60_000);

describe('routing mesh across nodes over IPv6', () => {
  let vip6: string;
  let lb6: string;

  it('a service on a dual-stack overlay has an IPv6 VIP; the node without replicas holds an IPv6 address of its own there', async () => {
    const replica6 = replica.ips.find((a) => a.includes(':'));
    expect(replica6, `the replica is dual-stack: ${replica.ips.join(', ')}`).toBeDefined();
    // The overlay itself carries IPv6 across nodes.
    expect(ask(client.ns.name, replica6!, 1)[0]).toMatch(/^r0 fd/);

    const r = shoalOn(cluster, n1, ['service', 'create', 'web6', '--network', NET, '-p', `${PORT}:80`, ...HEALTH]);
    expect(r.status, r.stderr).toBe(0);
    const [record] = etcdJson('services/');
    vip6 = (record!['vips'] as string[]).find((v) => v.includes(':'))!;
    expect(vip6, JSON.stringify(record)).toBeDefined();
    const lb = await until(
      "node 1's load-balancer endpoint with an IPv6 address in etcd",
      () => etcdJson(`endpoints/${NET}/${n1.name}/`).find((e) => e['containerId'] === `node:${n1.name}` && (e['ipv6'] as string[] | undefined)?.length),
      15_000,
    );
    lb6 = (lb['ipv6'] as string[])[0]!;
    expect(lb['ipv4'] as string[]).toHaveLength(1);
    expect(cluster.exec(n1, 'ip', ['-6', '-br', 'addr', 'show']).stdout).toMatch(new RegExp(`^lb-\\S+\\s+UP\\s+.*${lb6}/128`, 'm'));
  });

  it('a container on the node without replicas reaches the replica on the other node through the IPv6 VIP, which sees that node\'s own IPv6 address', async () => {
    const first = await until('web6 answers on its IPv6 VIP from node 1', () => (ask(client.ns.name, vip6, 1)[0]?.startsWith('r0') ? true : undefined), 15_000);
    expect(first).toBe(true);
    expect(new Set(ask(client.ns.name, vip6, 6))).toEqual(new Set([`r0 ${lb6}`]));
  });
});
