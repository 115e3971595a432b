#!/usr/bin/env node
// A 3-node Shoal cluster on one machine (DESIGN §7): three network namespaces on one underlay
// bridge, a 3-member etcd, one `shoal daemon --store etcd://...` per node. It creates an overlay
// network from node 0, attaches a container on node 0 and one on node 2, and shows them
// reaching each other by IP and by name through their own node's DNS; then removes everything.
//
//   bash scripts/node-env.sh node scripts/cluster-demo.mjs      (as root, after npm run build)
import { spawnSync } from 'node:child_process';
import { ShoalCluster } from '../bench/lib/cluster-run.mjs';

const step = (text) => console.log(`\n== ${text}`);
const inNs = (ns, cmd, args) => spawnSync('ip', ['netns', 'exec', ns, cmd, ...args], { encoding: 'utf8' });

const sc = await ShoalCluster.start({ nodes: 3, prefix: 'demo' });
try {
  step('shoal node ls (on node 0)');
  process.stdout.write(sc.shoal(0, ['node', 'ls']));
  step('shoal network create --driver overlay demo (on node 0); shoal network ls (on node 2)');
  sc.shoal(0, ['network', 'create', '--driver', 'overlay', 'demo']);
  await sc.conf(2, 'demo');
  process.stdout.write(sc.shoal(2, ['network', 'ls']));
  step('a container "web" on node 0, a container "db" on node 2 (shoal-vxlan ADD inside each node)');
  const web = await sc.add(0, 'demo', 'web');
  const db = await sc.add(2, 'demo', 'db');
  console.log(`web ${web.ip} on node 0, db ${db.ip} on node 2, gateway ${web.gateway} on every node`);
  step('web pings db across the overlay');
  let ping;
  for (let i = 0; i < 20 && (ping = inNs(web.ns, 'ping', ['-c', '2', '-W', '1', db.ip])).status !== 0; i++) await new Promise((r) => setTimeout(r, 100));
  process.stdout.write(ping.stdout);
  step('web asks its own node for "db"; db asks its own node for "web"');
  process.stdout.write(`db  -> ${inNs(web.ns, 'dig', ['+short', `@${web.gateway}`, 'db']).stdout}`);
  process.stdout.write(`web -> ${inNs(db.ns, 'dig', ['+short', `@${db.gateway}`, 'web']).stdout}`);
  if (ping.status !== 0) process.exitCode = 1;
} catch (err) {
  console.error(err);
  process.exitCode = 1;
} finally {
  step('removing the cluster');
  await sc.stop();
}
