/**
 * `shoal daemon --store etcd://...` joins a cluster (DESIGN.md §7) on the one-machine test
 * cluster (helpers/cluster.ts): three node namespaces with an etcd member each, one daemon per
 * node started inside its namespace with the node's SHOAL_STATE_DIR / SHOAL_RUN_DIR.
 * `shoal node ls` runs inside node 0 against node 0's daemon; what etcd holds is also read with
 * etcdctl, a path that does not go through the code under test.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster, until, type ClusterNode } from '../helpers/cluster.js';
import { api, DIST, metricValue, REPO, startDaemon, tempDirs, type DaemonProc } from './daemon-helpers.js';

const TTL_S = 2;
const SHOAL = path.join(DIST, 'bin/shoal');

let cluster: TestCluster;
const daemons = new Map<ClusterNode, DaemonProc>();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


function startNodeDaemon(node: ClusterNode, extra: string[] = []): Promise<DaemonProc> {
  return startDaemon({
    netns: node.netns,
    state: node.stateDir,
    run: node.runDir,
    args: ['--store', cluster.storeUrl, '--node', node.name, '--advertise-addr', node.address, '--node-ttl', String(TTL_S), '--no-firewall', ...extra],
  });
}

/** `shoal <args>` inside `node`'s namespace with its SHOAL_* environment. */
function shoal(node: ClusterNode, args: string[], env: Record<string, string> = {}) {
  const vars = Object.entries({ NODE_PATH: path.join(REPO, 'node_modules'), ...env }).map(([k, v]) => `${k}=${v}`);
  return cluster.exec(node, 'env', [...vars, process.execPath, SHOAL, ...args]);
}

interface Row {
  name: string;
  address: string;
  state: string;
  leaseAgeSeconds: number;
  self: boolean;
}

function nodeLs(): Row[] {
  const r = shoal(cluster.nodes[0]!, ['node', 'ls', '--format', 'json']);
  if (r.status !== 0) throw new Error(`shoal node ls failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout) as Row[];
}

const names = () => nodeLs().map((n) => n.name);

/** The daemon on `node`'s /metrics (scraped inside its namespace). */
function metrics(node: ClusterNode): string {
  const d = daemons.get(node)!;
  const r = cluster.exec(node, 'curl', ['-sf', `http://127.0.0.1:${d.metricsPort}/metrics`]);
  if (r.status !== 0) throw new Error(`metrics of ${node.name}: curl ${r.status} ${r.stderr}`);
  return r.stdout;
}

/** `shoal_cluster_nodes{state="ready"}` of the daemon on `node`. */
function readyGauge(node: ClusterNode): number {
  return metricValue(metrics(node), 'shoal_cluster_nodes', { state: 'ready' });
}

function etcdNodeKeys(): string[] {
  return cluster
    .etcdctl(['get', '--prefix', '--keys-only', '/shoal/v1/nodes/'])
    .split('\n')
    .filter(Boolean)
    .map((k) => k.slice('/shoal/v1/nodes/'.length));
}

beforeAll(async () => {
  cluster = await TestCluster.create({ nodes: 3, etcdMembers: 3, prefix: 'join' });
  const started = await Promise.all(cluster.nodes.map((n) => startNodeDaemon(n)));
  cluster.nodes.forEach((n, i) => daemons.set(n, started[i]!));
}, 45_000);

afterAll(async () => {
  await Promise.all([...daemons.values()].map((d) => d.stop()));
  await cluster?.destroy();
}, 30_000);

describe('shoal daemon joins a cluster', () => {
  it('registers every node under its lease; shoal node ls lists them, ready, with address and lease age', async () => {
    const [n0, n1, n2] = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode];
    for (const n of cluster.nodes) {
      const joined = await daemons.get(n)!.waitLog((l) => l['event'] === 'cluster_joined');
      expect(joined).toMatchObject({ node: n.name, address: n.address, ttlSeconds: TTL_S });
    }
    expect(etcdNodeKeys().sort()).toEqual([n0.name, n1.name, n2.name].sort());
    const rows = nodeLs();
    expect(rows.map((r) => [r.name, r.address, r.state, r.self])).toEqual(
      [n0, n1, n2].map((n) => [n.name, n.address, 'ready', n === n0]).sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
    );
    for (const r of rows) expect(r.leaseAgeSeconds).toBeLessThan(60);
    const table = shoal(n0, ['node', 'ls']);
    expect(table.status).toBe(0);
    expect(table.stdout.split('\n')[0]).toMatch(/^NAME\s+ADDRESS\s+STATE\s+LEASE AGE\s+VERSION$/);
    expect(table.stdout).toContain(`${n0.name} *`);
    expect(table.stdout).toMatch(new RegExp(`${n1.name}\\s+${n1.address.replace(/\./g, '\\.')}\\s+ready\\s+\\d+s`));
    // The gauge follows a watch on nodes/, on every node.
    for (const n of cluster.nodes) await until(`gauge on ${n.name}`, () => (readyGauge(n) === 3 ? true : undefined), 3000);
    const text = metrics(n0);
    expect(text).toMatch(/^# TYPE shoal_cluster_nodes gauge$/m);
    expect(metricValue(text, 'shoal_store_requests_total', { op: 'lease_grant', result: 'ok' })).toBe(1);
    const lint = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(lint.stdout + lint.stderr).toBe('');
    const status = await api(daemons.get(n0)!.socket, '/v1/status');
    expect(status.body).toMatchObject({ store: { kind: 'sqlite' }, cluster: { node: n0.name, lease: { state: 'alive', ttlSeconds: TTL_S } } });
  });

  it('SIGTERM leaves the lease to run out: a restart within the TTL takes it over (the node never leaves), without one the node leaves within the TTL', async () => {
    const n2 = cluster.nodes[2]!;
    const d = daemons.get(n2)!;
    const lease = (await d.waitLog((l) => l['event'] === 'cluster_joined'))['lease'];
    expect(await d.stop()).toEqual({ code: 0, signal: null });
    expect(d.logs.some((l) => l['event'] === 'cluster_paused')).toBe(true);
    expect(etcdNodeKeys()).toContain(n2.name);
    const restarted = await startNodeDaemon(n2);
    const joined = await restarted.waitLog((l) => l['event'] === 'cluster_joined');
    expect(joined).toMatchObject({ lease, adopted: true });
    expect(etcdNodeKeys()).toContain(n2.name);
    expect(await restarted.stop()).toEqual({ code: 0, signal: null });
    const t0 = Date.now();
    await until('node 2 gone', () => (etcdNodeKeys().includes(n2.name) ? undefined : true), TTL_S * 1000 + 1500, 100);
    expect(Date.now() - t0).toBeLessThanOrEqual(TTL_S * 1000 + 1500);
    await until('gauge 2 on node 0', () => (readyGauge(cluster.nodes[0]!) === 2 ? true : undefined), 2000);
    daemons.delete(n2);
  });

  it('kill -9: the node is gone within its TTL (etcd expires the lease)', async () => {
    const n1 = cluster.nodes[1]!;
    const d = daemons.get(n1)!;
    process.kill(d.pid, 'SIGKILL');
    await d.exited;
    const t0 = Date.now();
    expect(names()).toContain(n1.name); // nobody revoked it
    await until('node 1 gone', () => (names().includes(n1.name) ? undefined : true), TTL_S * 1000 + 1500, 100);
    const gone = Date.now() - t0;
    expect(gone).toBeLessThanOrEqual(TTL_S * 1000 + 1500);
    await until('gauge 1 on node 0', () => (readyGauge(cluster.nodes[0]!) === 1 ? true : undefined), 2000);
    daemons.delete(n1);
  });

  it('a daemon cut off the underlay longer than its TTL loses its lease, and registers again after healing', async () => {
    const [n0, n1] = cluster.nodes as [ClusterNode, ClusterNode];
    // Node 1 again (its pid file and socket are stale after the kill -9: taken over).
    const d = await startNodeDaemon(n1);
    daemons.set(n1, d);
    await until('node 1 back', () => (names().includes(n1.name) ? true : undefined), 3000);
    await until('gauge 2 on node 0', () => (readyGauge(n0) === 2 ? true : undefined), 2000);
    cluster.cut(n1);
    try {
      const lost = await d.waitLog((l) => l['event'] === 'cluster_lease_lost', TTL_S * 1000 + 3000);
      expect(lost).toMatchObject({ node: n1.name });
      await until('node 1 expired', () => (names().includes(n1.name) ? undefined : true), TTL_S * 1000 + 4000, 100);
      await until('gauge 1 on node 0', () => (readyGauge(n0) === 1 ? true : undefined), 2000);
      await sleep(500); // cut longer than the TTL
    } finally {
      cluster.heal(n1);
    }
    const again = await d.waitLog((l) => l['event'] === 'cluster_lease_regranted', 15_000);
    expect(again).toMatchObject({ node: n1.name });
    const row = await until('node 1 registered again', () => nodeLs().find((r) => r.name === n1.name), 5000);
    expect(row).toMatchObject({ address: n1.address, state: 'ready' });
    expect(row.leaseAgeSeconds).toBeLessThan(5); // a new lease
    await until('gauge 2 on node 0', () => (readyGauge(n0) === 2 ? true : undefined), 2000);
    await until('gauge 2 on node 1', () => (readyGauge(n1) === 2 ? true : undefined), 5000, 200);
  }, 40_000);

  it('--advertise-addr defaults to the source address of the default route', async () => {
    const n2 = cluster.nodes[2]!;
    // A default route in node 2's namespace (the harness's own namespace, gone with it).
    const r = cluster.exec(n2, 'ip', ['route', 'add', 'default', 'via', `${cluster.subnetBase}.1`, 'dev', 'ul0']);
    expect(r.stderr).toBe('');
    const d = await startDaemon({
      netns: n2.netns,
      state: n2.stateDir,
      run: n2.runDir,
      args: ['--store', cluster.storeUrl, '--node', n2.name, '--node-ttl', String(TTL_S), '--no-firewall'],
    });
    daemons.set(n2, d);
    expect(await d.waitLog((l) => l['event'] === 'cluster_joined')).toMatchObject({ node: n2.name, address: n2.address });
    await until('node 2 back', () => nodeLs().find((row) => row.name === n2.name), 3000);
    expect(nodeLs().find((row) => row.name === n2.name)).toMatchObject({ address: n2.address, state: 'ready' });
  });

  it('without a daemon joined to a cluster, shoal node ls fails with one line, exit 1', async () => {
    const n0 = cluster.nodes[0]!;
    const none = tempDirs('810n');
    try {
      const r = shoal(n0, ['node', 'ls'], { SHOAL_RUN_DIR: none.run });
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/^shoal node ls: failed to reach the daemon at ".*shoald\.sock": no daemon is running there/);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      // A daemon on the local store only: the API says so, and so does the CLI.
      const local = await startDaemon({ netns: n0.netns, state: none.state, run: none.run, args: ['--no-firewall'] });
      try {
        expect((await api(local.socket, '/v1/nodes')).status).toBe(409);
        const r2 = shoal(n0, ['node', 'ls'], { SHOAL_RUN_DIR: none.run });
        expect(r2.status).toBe(1);
        expect(r2.stderr).toBe('shoal node ls: this daemon has not joined a cluster (it was started without --store etcd://...)\n');
      } finally {
        await local.stop();
      }
      // No default route in a node namespace: --advertise-addr must be given, and the error says so.
      const noAddr = await startDaemon({ netns: n0.netns, state: none.state, run: none.run, args: ['--store', cluster.storeUrl], waitReady: false });
      expect((await noAddr.exited).code).toBe(2);
      expect(noAddr.stdout()).toMatch(/"--advertise-addr": not given, and there is no default route/);
    } finally {
      none.cleanup();
    }
  });
});
