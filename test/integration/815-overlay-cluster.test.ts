/**
 * Overlay networks across a cluster (issue 14, DESIGN §7) on the one-machine test cluster
 * (helpers/cluster.ts): three node namespaces with an etcd member each and one daemon per node
 * (its own state, run and CNI config dirs). `shoal network create --driver overlay` runs on one
 * node; every daemon writes the conflist, and containers are attached by running that conflist's
 * shoal-vxlan inside their node, as a runtime on that node would. What etcd holds is read with
 * etcdctl and what the kernel holds with iproute2: paths that do not go through the code under
 * test. Containers talk only to each other's overlay addresses inside these namespaces.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster, until, type ClusterNode } from '../helpers/cluster.js';
import { KernelObjects } from '../helpers/kernel-objects.js';
import { watchContainer } from '../helpers/continuity.js';
import { uniqueName } from '../helpers/names.js';
import { execCni, privateBundles, type CniRun } from '../e2e/helpers/cni-exec.js';
import { metricValue, type DaemonProc } from './daemon-helpers.js';
import { conflistOn, pluginConf, shoalOn, startNodeDaemon as startOverlayNode } from './overlay-helpers.js';

const TTL_S = 2;
const GRACE_S = 3;
const PREFIX = 'ovc';

let cluster: TestCluster;
let bin: { dir: string; remove(): void };
const objects = new KernelObjects(PREFIX);
const daemons = new Map<ClusterNode, DaemonProc>();
const ctrs: Ctr[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const attached: Array<{ node: ClusterNode; conf: Record<string, unknown>; id: string; netns: string }> = [];

function startNodeDaemon(node: ClusterNode): Promise<DaemonProc> {
  // An upstream the node namespaces have no route to: forwarded queries fail with ENETUNREACH.
  return startOverlayNode(cluster, node, ['--node-ttl', String(TTL_S), '--block-grace', String(GRACE_S), '--resolv-conf', resolvConf]);
}

const shoal = (node: ClusterNode, args: string[]) => shoalOn(cluster, node, args);




interface Ctr {
  id: string;
  name: string;
  ns: { name: string; path: string };
  node: ClusterNode;
  ip: string;
  mac: string;
}

async function cni(node: ClusterNode, command: 'ADD' | 'DEL', conf: Record<string, unknown>, id: string, netns: string, pod?: string): Promise<CniRun> {
  const run = await execCni(
    'ip',
    { command, containerId: id, netns, ifname: 'eth0', path: [bin.dir], config: conf, cniArgs: `IgnoreUnknown=1${pod ? `;K8S_POD_NAME=${pod}` : ''}` },
    ['netns', 'exec', node.netns, path.join(bin.dir, 'shoal-vxlan')],
  );
  if (command === 'ADD' && run.code === 0) attached.push({ node, conf, id, netns });
  return run;
}

async function addContainer(node: ClusterNode, network: string, name = uniqueName('c')): Promise<Ctr> {
  const list = await until(`conflist of ${network} on ${node.name}`, () => conflistOn(node, network), 10_000);
  const ns = objects.netns();
  const id = uniqueName(PREFIX);
  const run = await cni(node, 'ADD', pluginConf(list), id, ns.path, name);
  expect(run.code, run.stdout + run.stderr).toBe(0);
  const ifaces = run.json!['interfaces'] as Array<{ mac: string; sandbox?: string }>;
  const ip = (run.json!['ips'] as Array<{ address: string }>)[0]!.address.split('/')[0]!;
  return { id, name, ns, node, ip, mac: ifaces.find((i) => i.sandbox)!.mac };
}

const pingOnce = (from: Ctr, to: string) => spawnSync('ip', ['netns', 'exec', from.ns.name, 'ping', '-c1', '-W1', to], { stdio: 'ignore' }).status === 0;

/** A lookup from inside `from` to its own node's DNS server (its gateway). */
function lookup(from: Ctr, gateway: string, name: string): string[] {
  const r = spawnSync('ip', ['netns', 'exec', from.ns.name, 'dig', '+short', '+time=1', '+tries=1', `@${gateway}`, name, 'A'], { encoding: 'utf8', timeout: 5000 });
  return r.stdout.split('\n').filter((l) => /^\d+\.\d+\.\d+\.\d+$/.test(l));
}

function etcdJson(prefix: string): Array<Record<string, unknown>> {
  const out = cluster.etcdctl(['get', '--prefix', '--print-value-only', `/shoal/v1/${prefix}`]);
  return out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
}


function metrics(node: ClusterNode): string {
  const d = daemons.get(node)!;
  return cluster.exec(node, 'curl', ['-sf', `http://127.0.0.1:${d.metricsPort}/metrics`]).stdout;
}

function gatewayOf(node: ClusterNode, network: string): string {
  const list = conflistOn(node, network)!;
  const ranges = ((pluginConf(list)['ipam'] as Record<string, unknown>)['ranges'] as Array<Array<{ gateway: string }>>)[0]!;
  return ranges[0]!.gateway;
}

let resolvConf: string;

beforeAll(async () => {
  bin = privateBundles(['shoal-vxlan']);
  resolvConf = path.join(bin.dir, 'resolv.conf');
  writeFileSync(resolvConf, 'nameserver 192.0.2.53\n');
  // Four nodes, etcd on the first three: node 3 is the one cut off and killed, so the tests
  // of a node's loss do not also take an etcd member away (the etcd tests stop one on purpose).
  cluster = await TestCluster.create({ nodes: 4, etcdMembers: 3, prefix: 'ovc' });
  const started = await Promise.all(cluster.nodes.map((n) => startNodeDaemon(n)));
  cluster.nodes.forEach((n, i) => daemons.set(n, started[i]!));
  for (const d of started) await d.waitLog((l) => l['event'] === 'daemon_started', 15_000);
}, 60_000);

afterAll(async () => {
  for (const a of attached.reverse()) await cni(a.node, 'DEL', a.conf, a.id, a.netns).catch(() => undefined);
  await Promise.all([...daemons.values()].map((d) => d.stop()));
  objects.cleanup();
  await cluster?.destroy();
  bin?.remove();
}, 60_000);

describe('overlay networks across the cluster', () => {
  let net: string;

  it('a network created on one node is on every node, with a VNI and subnet no other overlay has', async () => {
    const [n0, n1, n2] = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode];
    net = uniqueName('ov');
    const created = shoal(n0, ['network', 'create', '--driver', 'overlay', net]);
    expect(created.status, created.stderr).toBe(0);
    // Two more at once from two other nodes: one etcd transaction each, so no shared VNI or subnet.
    const [a, b] = [uniqueName('ov'), uniqueName('ov')];
    const both = [shoal(n1, ['network', 'create', '--driver', 'overlay', a]), shoal(n2, ['network', 'create', '--driver', 'overlay', b])];
    for (const r of both) expect(r.status, r.stderr).toBe(0);
    const records = etcdJson('networks/');
    expect(records.map((r) => r['name']).sort()).toEqual([net, a, b].sort());
    expect(new Set(records.map((r) => r['vni'])).size).toBe(3);
    const subnets = records.map((r) => (r['subnets'] as Array<{ subnet: string }>)[0]!.subnet);
    expect(new Set(subnets).size).toBe(3);
    for (const n of cluster.nodes) {
      const list = await until(`conflist on ${n.name}`, () => conflistOn(n, net), 5000);
      expect(pluginConf(list)).toMatchObject({ type: 'shoal-vxlan', underlayAddress: n.address, ipam: { type: 'shoal-ipam', blocks: { daemonSocket: path.join(n.runDir, 'shoald.sock') } } });
      const ls = shoal(n, ['network', 'ls', '--format', 'json']);
      expect(ls.status, ls.stderr).toBe(0);
      expect(JSON.parse(ls.stdout)).toEqual(expect.arrayContaining([expect.objectContaining({ name: net, driver: 'overlay' })]));
    }
    // Bad input: refused with the field named, nothing written.
    const bad = shoal(n1, ['network', 'create', '--driver', 'overlay', '-o', 'vni=0', uniqueName('ov')]);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/vni/);
    expect(etcdJson('networks/')).toHaveLength(3);
    // a and b are not used further: removed everywhere.
    for (const name of [a, b]) expect(shoal(n0, ['network', 'rm', name]).status).toBe(0);
    for (const n of cluster.nodes) await until(`${a} gone on ${n.name}`, () => (conflistOn(n, a) || conflistOn(n, b) ? undefined : true), 5000);
  }, 60_000);

  it('containers on node 0 and node 3 reach each other by IP and by name through their own node', async () => {
    const [n0, , , n2] = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode, ClusterNode];
    const c0 = await addContainer(n0, net, 'web0');
    const c2 = await addContainer(n2, net, 'db2');
    // The address came from a block etcd says the node holds.
    const blocks = etcdJson(`blocks/${net}/`);
    const holder = (ip: string) => blocks.find((b) => ipInCidr(ip, b['cidr'] as string))?.['node'];
    expect(holder(c0.ip)).toBe(n0.name);
    expect(holder(c2.ip)).toBe(n2.name);
    await until('c0 pings c2', () => (pingOnce(c0, c2.ip) ? true : undefined), 5000);
    expect(pingOnce(c2, c0.ip)).toBe(true);
    const gw = gatewayOf(n0, net);
    await until('db2 resolves on node 0', () => (lookup(c0, gw, 'db2').includes(c2.ip) ? true : undefined), 5000);
    await until('web0 resolves on node 2', () => (lookup(c2, gw, 'web0').includes(c0.ip) ? true : undefined), 5000);
    expect(metricValue(metrics(n0), 'shoal_overlay_peers', { network: net })).toBe(1);
    ctrs.push(c0, c2);
  }, 60_000);

  it('shoal run on a third node attaches a sandbox to the overlay: it pings the container on node 3 and resolves its name', async () => {
    // Node 2: node 1 must not hold a block yet (the next test needs one).
    const n2 = cluster.nodes[2]!;
    const [c0, c3] = ctrs as [Ctr, Ctr];
    const gw = gatewayOf(n2, net);
    const r = shoal(n2, ['run', '--network', net, '--name', 'runner', '--', 'sh', '-c', `ping -c1 -W2 ${c3.ip} >/dev/null && dig +short +time=2 +tries=1 @${gw} db2 && dig +short +time=2 +tries=1 @${gw} web0`]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual([c3.ip, c0.ip]);
    // The sandbox is gone with its command: its endpoint leaves etcd.
    await until('runner gone from etcd', () => (etcdJson('endpoints/').some((e) => e['name'] === 'runner') ? undefined : true), 5000);
  }, 60_000);

  it('a name nobody has is forwarded to an upstream without a route: SERVFAIL, and the daemon lives on', async () => {
    const [n0] = cluster.nodes as [ClusterNode];
    const c0 = ctrs[0]!;
    const r = spawnSync('ip', ['netns', 'exec', c0.ns.name, 'dig', '+time=3', '+tries=1', `@${gatewayOf(n0, net)}`, 'nobody.example', 'A'], { encoding: 'utf8', timeout: 8000 });
    expect(r.stdout).toMatch(/status: SERVFAIL/);
    expect(daemons.get(n0)!.child.exitCode).toBeNull();
    expect(lookup(c0, gatewayOf(n0, net), 'db2')).toEqual([ctrs[1]!.ip]);
  }, 30_000);

  it('with its daemon down, an ADD that needs a new block fails with code 11 saying why, and leaves no veth; once the daemon is back it works', async () => {
    const n1 = cluster.nodes[1]!;
    const conf = pluginConf(await until('conflist on node 1', () => conflistOn(n1, net), 5000));
    expect(await daemons.get(n1)!.stop()).toEqual({ code: 0, signal: null });
    const ns = objects.netns();
    const run = await cni(n1, 'ADD', conf, uniqueName(PREFIX), ns.path, 'early');
    expect(run.code).toBe(1);
    expect(run.json).toMatchObject({ code: 11 });
    expect(String(run.json!['msg'])).toMatch(/needs a new address block on this node.*the daemon is not running.*shoald\.sock/);
    const veths = JSON.parse(cluster.exec(n1, 'ip', ['-j', 'link', 'show', 'type', 'veth']).stdout) as Array<{ ifname: string }>;
    expect(veths.map((l) => l.ifname)).toEqual(['ul0']); // the node's underlay only
    expect(cluster.exec(n1, 'ip', ['-n', ns.name, 'link', 'show', 'eth0']).status).not.toBe(0);
    daemons.set(n1, await startNodeDaemon(n1));
    const c1 = await addContainer(n1, net, 'api1');
    expect(etcdJson(`blocks/${net}/`).find((b) => ipInCidr(c1.ip, b['cidr'] as string))?.['node']).toBe(n1.name);
    await until('c1 pings c0', () => (pingOnce(c1, ctrs[0]!.ip) ? true : undefined), 5000);
    ctrs.push(c1);
  }, 60_000);

  it('parallel ADDs on every node never hand out an address twice, each from its own node\'s blocks', async () => {
    const per = 8;
    const confs = new Map(cluster.nodes.map((n) => [n, pluginConf(conflistOn(n, net)!)]));
    const jobs = cluster.nodes.flatMap((n) => Array.from({ length: per }, () => ({ node: n, ns: objects.netns(), id: uniqueName(PREFIX) })));
    const runs = await Promise.all(jobs.map((j) => cni(j.node, 'ADD', confs.get(j.node)!, j.id, j.ns.path)));
    for (const r of runs) expect(r.code, r.stdout + r.stderr).toBe(0);
    const ips = runs.map((r) => (r.json!['ips'] as Array<{ address: string }>)[0]!.address.split('/')[0]!);
    expect(new Set([...ips, ...ctrs.map((c) => c.ip)]).size).toBe(ips.length + ctrs.length);
    const blocks = etcdJson(`blocks/${net}/`);
    jobs.forEach((j, i) => expect(blocks.find((b) => ipInCidr(ips[i]!, b['cidr'] as string))?.['node'], ips[i]).toBe(j.node.name));
    const macs = runs.map((r) => (r.json!['interfaces'] as Array<{ mac: string; sandbox?: string }>).find((i) => i.sandbox)!.mac);
    await until('every node has every other node\'s new containers', () => (cluster.nodes.every((n) => macs.filter((m) => fdbHas(n, m)).length >= macs.length - per) ? true : undefined), 15_000, 250);
    const dels = await Promise.all(jobs.map((j) => cni(j.node, 'DEL', confs.get(j.node)!, j.id, j.ns.path)));
    for (const r of dels) expect(r.code, r.stdout + r.stderr).toBe(0);
    // No stale entry anywhere after DEL: the forwarding entries of every deleted container are gone on every node.
    await until('no forwarding entry of a deleted container left', () => (cluster.nodes.every((n) => macs.every((m) => !fdbHas(n, m))) ? true : undefined), 15_000, 250);
    attached.splice(0, attached.length, ...attached.filter((a) => !jobs.some((j) => j.id === a.id)));
  }, 90_000);

  it('a daemon restart on a live node changes nothing for its running containers: a remote container keeps pinging and resolving them', async () => {
    const [n0, , , n2] = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode, ClusterNode];
    const [c0, c2] = ctrs as [Ctr, Ctr];
    const watch = await watchContainer(c2.ns.path, { gateway: c0.ip, dnsServer: gatewayOf(n2, net), names: [{ name: 'web0', address: c0.ip }] });
    try {
      await sleep(500);
      expect(await daemons.get(n0)!.stop()).toEqual({ code: 0, signal: null });
      const d = await startNodeDaemon(n0);
      daemons.set(n0, d);
      expect(await d.waitLog((l) => l['event'] === 'cluster_joined', 10_000)).toMatchObject({ adopted: true });
      // Re-synced: node 0 answers for the remote container again.
      await until('db2 on node 0 after the restart', () => (lookup(c0, gatewayOf(n0, net), 'db2').includes(c2.ip) ? true : undefined), 5000);
      await sleep(500);
    } finally {
      const report = await watch.stop();
      expect(report.ping.lost, 'pings from node 2 to the container on node 0').toEqual([]);
      expect(report.ping.sent).toBeGreaterThan(10);
      expect(report.dns!.lost).toEqual([]);
      expect(report.dns!.wrong).toEqual([]);
    }
  }, 60_000);
  it('with one etcd member stopped, ADDs and lookups on every node still work', async () => {
    const [n0, n1] = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode];
    await cluster.stopMember(2);
    try {
      const c = await addContainer(n1, net, 'quorum1');
      // Clients of the stopped member reconnect to another one first (etcd3's watch backoff).
      await until('quorum1 resolves on node 0', () => (lookup(ctrs[0]!, gatewayOf(n0, net), 'quorum1').includes(c.ip) ? true : undefined), 10_000);
      expect(pingOnce(ctrs[0]!, c.ip)).toBe(true);
    } finally {
      await cluster.startMember(2);
    }
  }, 60_000);

  it('a node cut off longer than its TTL disappears from the others within the TTL, and comes back with its containers after healing', async () => {
    const [n0, , , n2] = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode, ClusterNode];
    const [c0, c2] = ctrs as [Ctr, Ctr];
    const gw = gatewayOf(n0, net);
    expect(fdbHas(n0, c2.mac)).toBe(true);
    cluster.cut(n2);
    const t0 = Date.now();
    try {
      await diagnosed(() => until('db2 gone from node 0', () => (lookup(c0, gw, 'db2').length === 0 && !fdbHas(n0, c2.mac) ? true : undefined), TTL_S * 1000 + 3000, 100));
      expect(Date.now() - t0, 'gone within the TTL (+ the watch and a lookup)').toBeLessThan(TTL_S * 1000 + 3000);
      await sleep(500);
    } finally {
      cluster.heal(n2);
    }
    await daemons.get(n2)!.waitLog((l) => l['event'] === 'cluster_lease_regranted', 15_000);
    await diagnosed(() => until('db2 back on node 0', () => (lookup(c0, gw, 'db2').includes(c2.ip) ? true : undefined), 10_000, 100));
    await until('c0 pings c2 again', () => (pingOnce(c0, c2.ip) ? true : undefined), 5000);
  }, 60_000);

  it('a dead node (daemon killed, node cut off): gone from DNS and forwarding everywhere within the TTL, its blocks freed after the grace', async () => {
    const [n0, , , n3] = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode, ClusterNode];
    const c3 = ctrs[1]!;
    expect(c3.node).toBe(n3);
    const d = daemons.get(n3)!;
    process.kill(d.pid, 'SIGKILL');
    await d.exited;
    cluster.cut(n3);
    const t0 = Date.now();
    try {
      await diagnosed(() => until('db2 gone from node 0', () => (lookup(ctrs[0]!, gatewayOf(n0, net), 'db2').length === 0 && !fdbHas(n0, c3.mac) ? true : undefined), TTL_S * 1000 + 3000, 100));
      expect(Date.now() - t0).toBeLessThan(TTL_S * 1000 + 3000);
      await until('node 3 blocks freed', () => (etcdJson(`blocks/${net}/`).some((b) => b['node'] === n3.name) ? undefined : true), (GRACE_S + 12) * 1000, 250);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(GRACE_S * 1000);
    } finally {
      cluster.heal(n3);
      daemons.delete(n3);
    }
  }, 60_000);
});

/** Runs `fn`; when it fails, prints what etcd and each daemon say, so a failure in CI can be read. */
async function diagnosed<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    console.log('etcd endpoints/', JSON.stringify(etcdJson('endpoints/')));
    console.log('etcd nodes/', cluster.etcdctl(['get', '--prefix', '--keys-only', '/shoal/v1/nodes/']).replace(/\n+/g, ' '));
    for (const [n, d] of daemons) {
      const events = d.logs.filter((l) => /cluster|peer|sync_failed/.test(String(l['event']))).slice(-15);
      console.log(`${n.name}: exit ${d.child.exitCode ?? 'running'}; stderr: ${d.stdout().split('STDERR:')[1]?.slice(0, 2000) ?? ''}\n${events.map((l) => JSON.stringify(l)).join('\n')}`);
    }
    throw err;
  }
}

/** Whether `node`'s forwarding tables know `mac` (iproute2, every device). */
function fdbHas(node: ClusterNode, mac: string): boolean {
  return (JSON.parse(cluster.exec(node, 'bridge', ['-j', 'fdb', 'show']).stdout || '[]') as Array<{ mac: string }>).some((e) => e.mac === mac);
}


/** Whether IPv4 `ip` is inside `cidr`. */
function ipInCidr(ip: string, cidr: string): boolean {
  const [base, len] = cidr.split('/') as [string, string];
  const n = (t: string) => t.split('.').reduce((a, o) => (a << 8) + Number(o), 0) >>> 0;
  const mask = Number(len) === 0 ? 0 : (~0 << (32 - Number(len))) >>> 0;
  return (n(ip) & mask) === (n(base) & mask);
}


