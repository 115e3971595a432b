// A test cluster with Shoal on it, for benchmarks and the cluster demo: the test harness
// (test/helpers/cluster.ts, bundled with esbuild), one daemon per node, overlay networks and
// containers attached by running a node's conflist inside that node. Every process started here
// is tracked and killed by its PID in `stop`; every namespace goes with the cluster or `stop`.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SHOAL = path.join(root, 'dist/bin/shoal');
const VXLAN = path.join(root, 'dist/cni/shoal-vxlan');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function must(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000, ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.status} ${r.stderr}`);
  return r.stdout;
}

async function waitFor(what, fn, ms = 15_000) {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(50)) {
    const v = fn();
    if (v) return v;
  }
  throw new Error(`${what}: not within ${ms} ms`);
}

export class ShoalCluster {
  children = new Set();
  containers = [];
  seq = 0;

  /** `nodes` node namespaces, an etcd of `etcdMembers` (default 3) on the first nodes, a daemon on each node (DNS upstream unreachable on purpose: nothing leaves the machine). */
  static async start({ nodes, prefix, daemonArgs = [], etcdMembers = 3 }) {
    if (!existsSync(VXLAN)) throw new Error('run "npm run build" first');
    const c = new ShoalCluster();
    c.work = mkdtempSync(path.join(tmpdir(), 'shoal-cluster-run-'));
    await build({ entryPoints: [path.join(root, 'test/helpers/cluster.ts')], bundle: true, platform: 'node', format: 'esm', target: 'node24', outfile: path.join(c.work, 'cluster.mjs'), logLevel: 'error' });
    const { TestCluster } = await import(pathToFileURL(path.join(c.work, 'cluster.mjs')).href);
    const resolvConf = path.join(c.work, 'resolv.conf');
    writeFileSync(resolvConf, 'nameserver 192.0.2.53\n');
    c.cluster = await TestCluster.create({ nodes, etcdMembers, prefix });
    for (const node of c.cluster.nodes) {
      const args = ['netns', 'exec', node.netns, process.execPath, SHOAL, 'daemon', '--store', c.cluster.storeUrl, '--node', node.name, '--advertise-addr', node.address, '--no-firewall', '--metrics-addr', 'off', '--log-level', 'warn', '--resolv-conf', resolvConf, ...daemonArgs];
      c.spawn('ip', args, { env: { ...process.env, ...node.env } }).stdout.resume();
    }
    for (const node of c.cluster.nodes) await waitFor(`daemon on ${node.name}`, () => existsSync(path.join(node.runDir, 'shoald.sock')));
    return c;
  }

  get nodes() {
    return this.cluster.nodes;
  }

  spawn(cmd, args, opts = {}) {
    const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'inherit'], ...opts });
    this.children.add(p);
    p.on('exit', () => this.children.delete(p));
    return p;
  }

  /** `shoal <args>` on node `n` (its SHOAL_* environment, inside its namespace). */
  shoal(n, args) {
    const node = this.nodes[n];
    return must('ip', ['netns', 'exec', node.netns, 'env', ...Object.entries(node.env).map(([k, v]) => `${k}=${v}`), process.execPath, SHOAL, ...args]);
  }

  /** The network's plugin config on node `n`, once its daemon wrote the conflist. */
  async conf(n, network) {
    const file = path.join(this.nodes[n].cniConfDir, `${network}.conflist`);
    await waitFor(`conflist of ${network} on node ${n}`, () => existsSync(file));
    const list = JSON.parse(readFileSync(file, 'utf8'));
    return { cniVersion: list.cniVersion, name: list.name, ...list.plugins[0] };
  }

  /** ADD a container named `name` (with DNS `aliases`) on node `n`: {ns, ip, at (epoch ms of the plugin's exit), ms}. */
  async add(n, network, name, aliases = []) {
    const conf = await this.conf(n, network);
    if (aliases.length) conf.runtimeConfig = { aliases: { [network]: aliases } };
    const ns = `${this.cluster.nodes[0].name}c${this.seq++}`;
    must('ip', ['netns', 'add', ns]);
    this.containers.push(ns);
    const env = { ...process.env, CNI_COMMAND: 'ADD', CNI_CONTAINERID: ns, CNI_NETNS: `/run/netns/${ns}`, CNI_IFNAME: 'eth0', CNI_PATH: path.dirname(VXLAN), CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAME=${name}` };
    const t0 = performance.now();
    return new Promise((resolve, reject) => {
      const p = spawn('ip', ['netns', 'exec', this.nodes[n].netns, VXLAN], { env, stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      p.stdout.on('data', (d) => (out += d));
      p.on('close', (code) => {
        const at = Date.now();
        if (code !== 0) return reject(new Error(`ADD ${name} on node ${n}: ${out}`));
        const result = JSON.parse(out);
        resolve({ ns, ip: result.ips[0].address.split('/')[0], gateway: result.ips[0].gateway, at, ms: performance.now() - t0 });
      });
      p.stdin.end(JSON.stringify(conf));
    });
  }

  async stop() {
    for (const p of this.children) p.kill('SIGKILL');
    for (const ns of this.containers) spawnSync('ip', ['netns', 'del', ns]);
    await this.cluster?.destroy();
    if (this.work) rmSync(this.work, { recursive: true, force: true });
  }
}
