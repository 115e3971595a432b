// The overlay for the crash campaign: two cluster nodes (test/helpers/cluster.ts through
// bench/lib/cluster-run.mjs: namespaces on an underlay bridge, a one-member etcd, a daemon per
// node), one overlay network, and an anchor container on node 1 so that node 1 has the network's
// VXLAN device and its daemon programs node 0's containers as remote peers. The campaign's
// containers are all on node 0; the readers below say what of them is left anywhere: node 0's
// bridge ports, rules and store rows, their endpoints in etcd, and node 1's FDB and neighbour
// entries for them.
import { spawnSync } from 'node:child_process';
import { ShoalCluster } from '../../bench/lib/cluster-run.mjs';
import { nftMentions, storeRows } from './common.mjs';

/** Shoal's mark on the neighbour entries it programs (src/overlay/names.ts SHOAL_NEIGH_PROTOCOL). */
const SHOAL_NEIGH_PROTOCOL = 83;

const json = (cmd, args) => JSON.parse(spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20 }).stdout || '[]');

export async function startOverlay({ prefix, network, subnet }) {
  const c = await ShoalCluster.start({ nodes: 2, etcdMembers: 1, prefix });
  try {
    c.shoal(0, ['network', 'create', '--driver', 'overlay', '--subnet', subnet, network]);
    const conf = await c.conf(0, network);
    await c.conf(1, network);
    await c.add(1, network, 'anchor');
    const [node0, node1] = c.nodes;
    return {
      cluster: c,
      node: node0,
      conf,
      /** Store, run and CNI config dirs of node 0, for the plugin's environment. */
      env: node0.env,
      /** Node 0's bridge ports other than the VXLAN device (the containers' host veths). */
      /** Macvlans in node 0 itself other than the network's (the gateway, lb-…): a container's link is made inside the container, never here. */
      hostLinks: () => json('ip', ['-n', node0.netns, '-j', 'link', 'show', 'type', 'macvlan']).filter((l) => l.ifname !== conf.bridge && !l.ifname.startsWith('lb-')).map((l) => l.ifname),
      rulesMentioning: (needle) => nftMentions(needle, node0.netns),
      rowsMentioning: (needle) => storeRows(node0.stateDir, needle),
      /** etcd keys (any prefix) naming `needle`: endpoints the node 0 daemon published. */
      etcdKeysMentioning: (needle) => c.cluster.etcdctl(['get', '', '--prefix', '--keys-only']).split('\n').filter((k) => k.includes(needle)),
      /** Node 1's entries pointing at node 0's containers: FDB entries with node 0 as VTEP, Shoal's neighbours. */
      remoteEntries: () => [
        ...json('bridge', ['-n', node1.netns, '-j', 'fdb', 'show']).filter((e) => e.dst === node0.address).map((e) => `fdb ${e.mac} dst ${e.dst} dev ${e.ifname}`),
        ...json('ip', ['-n', node1.netns, '-j', 'neigh', 'show', 'proto', String(SHOAL_NEIGH_PROTOCOL)]).map((n) => `neigh ${n.dst} ${n.lladdr} dev ${n.dev}`),
      ],
      stop: () => c.stop(),
    };
  } catch (err) {
    await c.stop();
    throw err;
  }
}
