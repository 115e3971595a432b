/**
 * What the overlay cluster tests (815, 816, 820) share: a node's daemon joined to the test
 * cluster, `shoal` run inside a node, and the conflist a node's daemon wrote for a network, as
 * the network config a runtime hands the plugin.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { ClusterNode, TestCluster } from '../helpers/cluster.js';
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
