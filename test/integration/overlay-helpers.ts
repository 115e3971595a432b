/**
 * What the overlay cluster tests (815-820) share: a node's daemon joined to the test
 * cluster, `shoal` run inside a node, and the conflist a node's daemon wrote for a network, as
 * the network config a runtime hands the plugin.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { until, type ClusterNode, type TestCluster } from '../helpers/cluster.js';
import type { KernelObjects } from '../helpers/kernel-objects.js';
import { uniqueName } from '../helpers/names.js';
import { execCni } from '../e2e/helpers/cni-exec.js';
import { DIST, REPO, startDaemon, type DaemonProc } from './daemon-helpers.js';

/** The node's daemon, joined to `cluster`, writing conflists into the node's CNI config dir. */
export function startNodeDaemon(cluster: TestCluster, node: ClusterNode, args: string[] = []): Promise<DaemonProc> {
  return startDaemon({
    netns: node.netns,
    state: node.stateDir,
    run: node.runDir,
    env: { SHOAL_CNI_CONF_DIR: node.cniConfDir },
    args: ['--store', cluster.storeUrl, '--node', node.name, '--advertise-addr', node.address, '--no-firewall', ...args],
  });
}

/** `shoal <args>` inside `node`'s namespace with its SHOAL_* environment. */
export function shoalOn(cluster: TestCluster, node: ClusterNode, args: string[]) {
  const vars = Object.entries({ NODE_PATH: path.join(REPO, 'node_modules'), ...node.env }).map(([k, v]) => `${k}=${v}`);
  return cluster.exec(node, 'env', [...vars, process.execPath, path.join(DIST, 'bin/shoal'), ...args]);
}

/** The network's conflist on `node`, once its daemon wrote it. */
export function conflistOn(node: ClusterNode, network: string): Record<string, unknown> | undefined {
  const file = path.join(node.cniConfDir, `${network}.conflist`);
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>) : undefined;
}

/** The single plugin of the conflist as a network config (what libcni hands the plugin). */
export function pluginConf(list: Record<string, unknown>): Record<string, unknown> {
  const [plugin] = list['plugins'] as Array<Record<string, unknown>>;
  return { cniVersion: list['cniVersion'], name: list['name'], ...plugin };
}

export interface OverlayAttachment {
  node: ClusterNode;
  conf: Record<string, unknown>;
  id: string;
  netns: string;
}

/**
 * A container (a fresh namespace from `objects`) attached to `network` on `node` through
 * shoal-vxlan from `binDir`, with `aliases`; recorded in `attached` for the file's teardown
 * (a DEL each). Returns its namespace and addresses.
 */
export async function addOverlayContainer(o: {
  node: ClusterNode;
  network: string;
  aliases: string[];
  binDir: string;
  objects: KernelObjects;
  prefix: string;
  attached: OverlayAttachment[];
}): Promise<{ ns: { name: string; path: string }; ips: string[] }> {
  const list = await until(`conflist of ${o.network} on ${o.node.name}`, () => conflistOn(o.node, o.network), 10_000);
  const conf = { ...pluginConf(list), runtimeConfig: { aliases: { [o.network]: o.aliases } } };
  const ns = o.objects.netns();
  const id = uniqueName(o.prefix);
  const run = await execCni(
    'ip',
    { command: 'ADD', containerId: id, netns: ns.path, ifname: 'eth0', path: [o.binDir], config: conf, cniArgs: `IgnoreUnknown=1;K8S_POD_NAME=${id}` },
    ['netns', 'exec', o.node.netns, path.join(o.binDir, 'shoal-vxlan')],
  );
  expect(run.code, run.stdout + run.stderr).toBe(0);
  o.attached.push({ node: o.node, conf, id, netns: ns.path });
  return { ns, ips: (run.json!['ips'] as Array<{ address: string }>).map((i) => i.address.split('/')[0]!) };
}
