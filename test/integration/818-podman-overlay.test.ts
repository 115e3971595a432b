/**
 * Podman (CNI backend) as the runtime on an overlay network across nodes (issues 14 and 16):
 * on the one-machine test cluster, podman runs in node 0's and node 1's network namespaces with the
 * node's CNI config dir (where its daemon wrote the overlay's conflist) and the node's SHOAL_*
 * environment. Two busybox httpd containers, one per node, with `--network-alias web`:
 * - each reaches the other by name across the overlay (podman wrote the node's DNS server,
 *   the gateway, into its resolv.conf from the CNI result);
 * - `shoal service create web -p 18490:80` on node 2, which runs no container, answers on
 *   node 2's 127.0.0.1 over both (the routing mesh);
 * - `podman rm` takes each replica out of the service on every node.
 * Podman keeps everything in temp dirs; host port 18490 inside node namespaces only.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster, until, type ClusterNode } from '../helpers/cluster.js';
import { uniqueName } from '../helpers/names.js';
import { IMAGE, Podman, requirePodman } from '../e2e/helpers/podman.js';
import { DIST, REPO, type DaemonProc } from './daemon-helpers.js';
import { shoalOn, startNodeDaemon } from './overlay-helpers.js';

const NET = 'podnet';
const PORT = 18490;
let cluster: TestCluster;
const daemons: DaemonProc[] = [];
const podmans: Podman[] = [];
const names = [uniqueName('pw'), uniqueName('pw')];
/** What each container left in the host (conmon, its process, its netns), removed in teardown if podman did not. */
const started: Array<{ pids: number[]; netns: string }> = [];

const curl = (node: ClusterNode, url: string) => spawnSync('ip', ['netns', 'exec', node.netns, 'curl', '-s', '--max-time', '2', url], { encoding: 'utf8' }).stdout.trim();

beforeAll(async () => {
  requirePodman();
  cluster = await TestCluster.create({ nodes: 3, etcdMembers: 3, prefix: 'pov' });
  daemons.push(...(await Promise.all(cluster.nodes.map((n) => startNodeDaemon(cluster, n)))));
  expect(shoalOn(cluster, cluster.nodes[0]!, ['network', 'create', '--driver', 'overlay', NET]).status).toBe(0);
  for (const node of cluster.nodes.slice(0, 2)) {
    await until(`conflist on ${node.name}`, () => (spawnSync('test', ['-f', path.join(node.cniConfDir, `${NET}.conflist`)]).status === 0 ? true : undefined), 10_000);
    // nsenter, not `ip netns exec`: the latter mounts a sysfs of its own, without the cgroup
    // mount runc needs; only the network namespace has to be the node's.
    const p = new Podman(path.join(DIST, 'cni'), { networkDir: node.cniConfDir, prefix: ['nsenter', `--net=/run/netns/${node.netns}`], env: { ...node.env, NODE_PATH: path.join(REPO, 'node_modules') } });
    podmans.push(p);
    p.importBusybox();
  }
}, 120_000);

afterAll(async () => {
  for (const p of podmans) p.destroy();
  // Seen here: a podman in a node namespace whose first test failed kept its container running
  // after `rm -af` (storage already gone). End what the test started, by PID, and its netns.
  for (const s of started) {
    for (const pid of s.pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    if (s.netns) spawnSync('ip', ['netns', 'del', path.basename(s.netns)], { stdio: 'ignore' });
  }
  await Promise.all(daemons.map((d) => d.stop()));
  await cluster?.destroy();
}, 120_000);

describe('podman on an overlay network across nodes', () => {
  it('containers on two nodes reach each other by name', () => {
    podmans.forEach((p, i) => {
      const r = p.run(['run', '-d', '--name', names[i]!, '--network', NET, '--network-alias', 'web', '--ulimit', 'nproc=1024:1024', '--ulimit', 'nofile=10000:10000', IMAGE, 'sh', '-c', `mkdir -p /www && echo ${names[i]} > /www/index.html && exec httpd -f -p 80 -h /www`]);
      expect(r.status, r.stderr).toBe(0);
      const info = p.run(['inspect', '--format', '{{.State.ConmonPid}} {{.State.Pid}} {{.NetworkSettings.SandboxKey}}', names[i]!]).stdout.trim().split(' ');
      started.push({ pids: info.slice(0, 2).map(Number).filter((n) => n > 0), netns: info[2] ?? '' });
    });
    // Names of the other node's container resolve through this node's DNS server (podman wrote
    // the gateway into resolv.conf) once the endpoint propagated; a TCP request by name gets the
    // other container's page. (busybox-static's wget crashes in this image: nc speaks HTTP.)
    const fetched = (i: number, j: number) => podmans[i]!.run(['exec', names[i]!, 'sh', '-c', `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 2 nc ${names[j]} 80`]).stdout;
    for (const [i, j] of [[0, 1], [1, 0]] as const) {
      let got = '';
      for (let t = 0; t < 20 && !got.includes(names[j]!); t++) {
        got = fetched(i, j);
        if (!got.includes(names[j]!)) spawnSync('sleep', ['0.2']);
      }
      expect(got, `${names[i]} asking http://${names[j]}/`).toContain(`\n${names[j]}`);
    }
  });

  it('a service created on the node without containers answers there over both', async () => {
    const n2 = cluster.nodes[2]!;
    const r = shoalOn(cluster, n2, ['service', 'create', 'web', '--network', NET, '-p', `${PORT}:80`, '--health', 'http:/', '--health-interval', '300ms', '--health-rise', '1']);
    expect(r.status, r.stderr).toBe(0);
    await until('both replicas answer on node 2', () => {
      const got = new Set([1, 2, 3, 4].map(() => curl(n2, `http://127.0.0.1:${PORT}/`)));
      return got.has(names[0]!) && got.has(names[1]!) ? got : undefined;
    }, 20_000);
    const counts = new Map<string, number>();
    for (let i = 0; i < 10; i++) {
      const body = curl(n2, `http://127.0.0.1:${PORT}/`);
      counts.set(body, (counts.get(body) ?? 0) + 1);
    }
    expect(Object.fromEntries(counts)).toEqual({ [names[0]!]: 5, [names[1]!]: 5 });
  });

  it('podman rm takes a replica out of the service on every node', async () => {
    expect(podmans[1]!.run(['rm', '-f', '-t', '0', names[1]!]).status).toBe(0);
    const n2 = cluster.nodes[2]!;
    await until('only the node 0 replica on node 2', () => {
      const ps = shoalOn(cluster, n2, ['service', 'inspect', 'web']);
      const view = JSON.parse(ps.stdout) as { replicas: unknown[] };
      return view.replicas.length === 1 ? true : undefined;
    }, 10_000);
    for (let i = 0; i < 6; i++) expect(curl(n2, `http://127.0.0.1:${PORT}/`)).toBe(names[0]);
    expect(podmans[0]!.run(['rm', '-f', '-t', '0', names[0]!]).status).toBe(0);
    expect(shoalOn(cluster, n2, ['service', 'rm', 'web']).status).toBe(0);
  });
});
