#!/usr/bin/env node
// A 3-node Shoal cluster on one machine (DESIGN §7): three network namespaces on one underlay
// bridge, a 3-member etcd, one `shoal daemon --store etcd://...` per node. It creates an overlay
// network from node 0, attaches a container on node 0 and one on node 2, and shows them
// reaching each other by IP and by name through their own node's DNS; then a service created on
// node 2 over web servers on nodes 0 and 1, answering on node 2's 127.0.0.1 (the routing mesh);
// then removes everything.
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
  const web = await sc.add(0, 'demo', 'web', ['site']);
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
  step('a second web server on node 1; both answer for the alias "site"');
  const web2 = await sc.add(1, 'demo', 'web2', ['site']);
  for (const [c, where] of [[web, 'node 0'], [web2, 'node 1']]) {
    sc.spawn('ip', ['netns', 'exec', c.ns, process.execPath, '-e', `require('node:http').createServer((q, s) => s.end('hello from ${c.ip} on ${where}\\n')).listen(80)`]);
  }
  step('shoal service create site --network demo -p 8080:80 (on node 2, which runs no replica)');
  process.stdout.write(sc.shoal(2, ['service', 'create', 'site', '--network', 'demo', '-p', '8080:80', '--health-interval', '500ms']));
  let served = [];
  for (let i = 0; i < 40 && new Set(served).size < 2; i++) {
    await new Promise((r) => setTimeout(r, 250));
    served = [1, 2, 3, 4].map(() => inNs(sc.nodes[2].netns, 'curl', ['-s', '--max-time', '2', 'http://127.0.0.1:8080/']).stdout.trim()).filter(Boolean);
  }
  step('curl http://127.0.0.1:8080/ on node 2, four times: the mesh balances over nodes 0 and 1');
  console.log(served.join('\n'));
  process.stdout.write(sc.shoal(2, ['service', 'ps', 'site']));
  if (new Set(served).size < 2) process.exitCode = 1;
} catch (err) {
  console.error(err);
  process.exitCode = 1;
} finally {
  step('removing the cluster');
  await sc.stop();
}
