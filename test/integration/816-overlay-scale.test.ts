/**
 * Ten nodes with twenty containers each on one overlay (issue 14, "10 nodes × 20 containers all
 * reach each other"), on the one-machine test cluster: 200 containers attached by running each
 * node's conflist inside that node, ten at a time per node. Every container then pings one
 * container on each of the nine other nodes (1,800 pairs, every node pair in both directions
 * many times over) and every node's DNS resolves names of containers on the other nodes. What
 * the kernel and etcd hold is checked with iproute2 and etcdctl.
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster, until } from '../helpers/cluster.js';
import { KernelObjects } from '../helpers/kernel-objects.js';
import { uniqueName } from '../helpers/names.js';
import { execCni, privateBundles } from '../e2e/helpers/cni-exec.js';
import type { DaemonProc } from './daemon-helpers.js';
import { conflistOn, pluginConf, shoalOn, startNodeDaemon } from './overlay-helpers.js';

const NODES = Number(process.env['SHOAL_816_NODES'] ?? 10);
const PER_NODE = Number(process.env['SHOAL_816_PER_NODE'] ?? 20);
const PREFIX = 'ovs';

let cluster: TestCluster;
let bin: { dir: string; remove(): void };
const objects = new KernelObjects(PREFIX);
const daemons: DaemonProc[] = [];

interface Ctr {
  node: number;
  name: string;
  ns: { name: string; path: string };
  ip: string;
}

/** Runs `cmd` and resolves with its exit status and output (many at once, unlike spawnSync). */
function run(cmd: string, args: string[]): Promise<{ status: number | null; stdout: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'ignore'] });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.on('close', (status) => resolve({ status, stdout }));
  });
}

/** Runs `jobs` with at most `width` in flight. */
async function pool<T, R>(items: readonly T[], width: number, job: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await job(items[i]!);
      }
    }),
  );
  return out;
}

/**
 * The simulated nodes share one kernel, and the kernel's ARP table is one table for every
 * namespace: 200 containers each talking to ten neighbours outgrow its default limit (1,024
 * entries, "neighbor table overflow" in dmesg), which ten real hosts would each stay far below.
 * So the limit is raised for this file and put back after it.
 */
const GC_THRESH = ['gc_thresh2', 'gc_thresh3'].map((k) => `/proc/sys/net/ipv4/neigh/default/${k}`);
let savedThresh: string[] = [];

beforeAll(async () => {
  savedThresh = GC_THRESH.map((f) => readFileSync(f, 'utf8').trim());
  GC_THRESH.forEach((f, i) => writeFileSync(f, String(Math.max(Number(savedThresh[i]), i === 0 ? 4096 : 8192))));
  bin = privateBundles(['shoal-vxlan']);
  const resolvConf = path.join(bin.dir, 'resolv.conf');
  writeFileSync(resolvConf, 'nameserver 192.0.2.53\n');
  cluster = await TestCluster.create({ nodes: NODES, etcdMembers: 3, prefix: 'ovs' });
  for (const node of cluster.nodes) {
    daemons.push(await startNodeDaemon(cluster, node, ['--node-ttl', '5', '--log-level', 'info', '--resolv-conf', resolvConf]));
  }
}, 120_000);

afterAll(async () => {
  await Promise.all(daemons.map((d) => d.stop()));
  objects.cleanup();
  await cluster?.destroy();
  bin?.remove();
  // gc_thresh3 before gc_thresh2: the kernel keeps thresh2 <= thresh3.
  for (const i of [1, 0]) if (savedThresh[i]) writeFileSync(GC_THRESH[i]!, savedThresh[i]!);
}, 120_000);

describe(`${NODES} nodes × ${PER_NODE} containers on one overlay`, () => {
  it('every container reaches a container on every other node by IP, and names resolve on every node', async () => {
    const net = uniqueName('ovs');
    const created = shoalOn(cluster, cluster.nodes[0]!, ['network', 'create', '--driver', 'overlay', net]);
    expect(created.status, created.stderr).toBe(0);
    const confs = await Promise.all(cluster.nodes.map(async (node) => pluginConf(await until(`conflist on ${node.name}`, () => conflistOn(node, net), 10_000))));

    const t0 = Date.now();
    // Round robin over the nodes, as a scheduler spreading replicas would: every node claims its
    // first block at about the same time.
    const wanted = Array.from({ length: PER_NODE }, (_, i) => cluster.nodes.map((node, n) => ({ node, n, name: `c${n}x${i}` }))).flat();
    // Ten ADDs in flight at a time: a runtime starting many containers at once, bounded for 2 cores.
    const ctrs: Ctr[] = await pool(wanted, 10, async ({ node, n, name }) => {
      const ns = objects.netns();
      const r = await execCni(
        'ip',
        { command: 'ADD', containerId: uniqueName(PREFIX), netns: ns.path, ifname: 'eth0', path: [bin.dir], config: confs[n]!, cniArgs: `IgnoreUnknown=1;K8S_POD_NAME=${name}` },
        ['netns', 'exec', node.netns, path.join(bin.dir, 'shoal-vxlan')],
      );
      if (r.code !== 0) {
        const claims = daemons.flatMap((d) => d.logs.filter((l) => String(l['event']).startsWith('cluster_block') || l['event'] === 'api_error'));
        console.log(claims.map((l) => JSON.stringify(l)).join('\n'));
      }
      expect(r.code, `${name} on ${node.name}: ${r.stdout}${r.stderr}`).toBe(0);
      return { node: n, name, ns, ip: (r.json!['ips'] as Array<{ address: string }>)[0]!.address.split('/')[0]! };
    });
    const addSeconds = (Date.now() - t0) / 1000;
    expect(new Set(ctrs.map((c) => c.ip)).size, 'no address handed out twice').toBe(NODES * PER_NODE);

    // Every container's node has programmed every remote container (three entries each).
    const remote = NODES * PER_NODE - PER_NODE;
    for (const node of cluster.nodes) {
      await until(
        `peers on ${node.name}`,
        () => {
          const neigh = JSON.parse(cluster.exec(node, 'ip', ['-j', 'neigh', 'show', 'proto', '83']).stdout || '[]') as unknown[];
          return neigh.length === remote ? true : undefined;
        },
        20_000,
        250,
      );
    }

    // Container i on node n pings container i on each other node: 9 targets each, 1,800 in all.
    const t1 = Date.now();
    const failures = (
      await pool(ctrs, 20, async (c) => {
        const targets = ctrs.filter((o) => o.node !== c.node && o.name.endsWith(`x${c.name.split('x')[1]}`)).map((o) => o.ip);
        const script = `for ip in ${targets.join(' ')}; do ping -c1 -W2 -q $ip >/dev/null 2>&1 || echo $ip; done`;
        const r = await run('ip', ['netns', 'exec', c.ns.name, 'sh', '-c', script]);
        return r.stdout.split('\n').filter(Boolean).map((ip) => `${c.name}->${ip}`);
      })
    ).flat();
    const pingSeconds = (Date.now() - t1) / 1000;
    expect(failures).toEqual([]);

    // From the first container of every node, names of containers on three other nodes.
    const gateway = ((confs[0] as Record<string, unknown>)['ipam'] as { ranges: Array<Array<{ gateway: string }>> }).ranges[0]![0]!.gateway;
    for (let n = 0; n < NODES; n++) {
      const from = ctrs.find((c) => c.node === n)!;
      for (const other of [(n + 1) % NODES, (n + 4) % NODES, (n + 7) % NODES]) {
        const target = ctrs.find((c) => c.node === other && c.name.endsWith(`x${Math.min(5, PER_NODE - 1)}`))!;
        const r = spawnSync('ip', ['netns', 'exec', from.ns.name, 'dig', '+short', '+time=2', '+tries=1', `@${gateway}`, target.name, 'A'], { encoding: 'utf8' });
        expect(r.stdout.trim(), `${target.name} from node ${n}`).toBe(target.ip);
      }
    }
    const claims = daemons.flatMap((d) => d.logs.filter((l) => l['event'] === 'cluster_block_claimed').map((l) => Number(l['ms'])));
    console.log(`816: block claims ${claims.length}, ms: ${claims.sort((a, b) => a - b).join(' ')}`);
    console.log(`816: ${NODES * PER_NODE} ADDs in ${addSeconds.toFixed(1)} s, ${ctrs.length * (NODES - 1)} cross-node pings in ${pingSeconds.toFixed(1)} s`);
  }, 600_000);
});
