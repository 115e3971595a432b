#!/usr/bin/env node
// Overlay benchmark (issue 14) on a test cluster of network namespaces (DESIGN §7; the test
// harness test/helpers/cluster.ts, bundled with esbuild): 10 nodes on one underlay bridge, a
// 3-member etcd, one daemon per node, one overlay network.
//
// 1. Propagation: a container added on node k % 10 -> its name answered by the DNS server of
//    every node (a poller inside a probe container on each node asks its own gateway every
//    5 ms). Reported: the time from the ADD's exit to the last node answering, p50/p99 over the
//    samples (goal p99 <= 1 s with 10 nodes).
// 2. Throughput: iperf3 TCP between a container on node 1 and one on node 2 across the
//    overlay, against the same two node namespaces over the bare underlay; rounds alternate
//    (overlay, underlay, overlay, ...), same duration. Goal >= 0.9x.
//
//   npm run bench -- overlay
//   BENCH_NODES=10 BENCH_SAMPLES=40 BENCH_ROUNDS=3 BENCH_SECONDS=5 node bench/overlay.mjs
//
// Every process is a child of this one, killed by its PID; every namespace goes with the cluster.

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const NODES = Number(process.env.BENCH_NODES ?? 10);
const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 40);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const SHOAL = path.join(root, 'dist/bin/shoal');
const VXLAN = path.join(root, 'dist/cni/shoal-vxlan');
const work = mkdtempSync(path.join(tmpdir(), 'shoal-bench-overlay-'));
const children = new Set();
const containerNs = [];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function must(cmd, args, input) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input, timeout: 60_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.status} ${r.stderr}`);
  return r.stdout;
}

function quantile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

function child(cmd, args, opts = {}) {
  const c = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'inherit'], ...opts });
  children.add(c);
  c.on('exit', () => children.delete(c));
  return c;
}

/** A DNS poller inside a probe container: reads names on stdin, prints "name epoch-ms" once each answers with an A record. */
const POLLER = `
const dgram = require('dgram');
const [server] = process.argv.slice(1);
const sock = dgram.createSocket('udp4');
const pending = new Map();
let id = 0;
function query(name, qid) {
  const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  const head = Buffer.alloc(12); head.writeUInt16BE(qid, 0); head.writeUInt16BE(0x0100, 2); head.writeUInt16BE(1, 4);
  return Buffer.concat([head, ...labels, Buffer.from([0, 0, 1, 0, 1])]);
}
sock.on('message', (m) => {
  const name = pending.get(m.readUInt16BE(0));
  if (name === undefined) return;
  pending.delete(m.readUInt16BE(0));
  if ((m.readUInt16BE(2) & 0xf) === 0 && m.readUInt16BE(6) > 0) { done.add(name); process.stdout.write(name + ' ' + Date.now() + '\\n'); }
});
const done = new Set();
const wanted = new Set();
setInterval(() => { for (const n of wanted) { if (done.has(n)) { wanted.delete(n); continue; } const q = (id = (id + 1) & 0xffff); pending.set(q, n); sock.send(query(n, q), 53, server); } }, 5);
let buf = '';
process.stdin.on('data', (d) => { buf += d; let i; while ((i = buf.indexOf('\\n')) >= 0) { wanted.add(buf.slice(0, i)); buf = buf.slice(i + 1); } });
`;

async function main() {
  for (const tool of ['etcd', 'iperf3', 'dig']) if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) throw new Error(`bench overlay needs ${tool} (scripts/setup.sh installs it)`);
  if (!existsSync(VXLAN)) throw new Error('run "npm run build" first');
  await build({ entryPoints: [path.join(root, 'test/helpers/cluster.ts')], bundle: true, platform: 'node', format: 'esm', target: 'node24', outfile: path.join(work, 'cluster.mjs'), logLevel: 'error' });
  const { TestCluster } = await import(pathToFileURL(path.join(work, 'cluster.mjs')).href);
  const resolvConf = path.join(work, 'resolv.conf');
  writeFileSync(resolvConf, 'nameserver 192.0.2.53\n');
  const cluster = await TestCluster.create({ nodes: NODES, etcdMembers: 3, prefix: 'bov' });
  try {
    for (const node of cluster.nodes) {
      const d = child('ip', ['netns', 'exec', node.netns, process.execPath, SHOAL, 'daemon', '--store', cluster.storeUrl, '--node', node.name, '--advertise-addr', node.address, '--no-firewall', '--metrics-addr', 'off', '--log-level', 'warn', '--resolv-conf', resolvConf], { env: { ...process.env, ...node.env } });
      d.stdout.resume();
    }
    const sock = (n) => path.join(n.runDir, 'shoald.sock');
    for (const node of cluster.nodes) for (let i = 0; !existsSync(sock(node)); i++) { if (i > 300) throw new Error(`daemon on ${node.name} did not start`); await sleep(50); }
    const net = `bov${process.pid}`;
    must('ip', ['netns', 'exec', cluster.nodes[0].netns, 'env', ...Object.entries(cluster.nodes[0].env).map(([k, v]) => `${k}=${v}`), process.execPath, SHOAL, 'network', 'create', '--driver', 'overlay', net]);
    const confs = [];
    for (const node of cluster.nodes) {
      const file = path.join(node.cniConfDir, `${net}.conflist`);
      for (let i = 0; !existsSync(file); i++) { if (i > 200) throw new Error(`no conflist on ${node.name}`); await sleep(50); }
      const list = JSON.parse(readFileSync(file, 'utf8'));
      confs.push({ cniVersion: list.cniVersion, name: list.name, ...list.plugins[0] });
    }
    const gateway = confs[0].ipam.ranges[0][0].gateway;

    let seq = 0;
    /** ADD a container named `name` on node n; resolves {ns, ip, ms} once the plugin exited. */
    const add = (n, name) =>
      new Promise((resolve, reject) => {
        const ns = `bovc${process.pid}x${seq++}`;
        must('ip', ['netns', 'add', ns]);
        containerNs.push(ns);
        const env = { ...process.env, CNI_COMMAND: 'ADD', CNI_CONTAINERID: ns, CNI_NETNS: `/run/netns/${ns}`, CNI_IFNAME: 'eth0', CNI_PATH: path.dirname(VXLAN), CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAME=${name}` };
        const t0 = performance.now();
        const p = spawn('ip', ['netns', 'exec', cluster.nodes[n].netns, VXLAN], { env, stdio: ['pipe', 'pipe', 'pipe'] });
        let out = '';
        p.stdout.on('data', (d) => (out += d));
        p.on('close', (code) => {
          const at = Date.now();
          if (code !== 0) return reject(new Error(`ADD ${name} on node ${n}: ${out}`));
          resolve({ ns, ip: JSON.parse(out).ips[0].address.split('/')[0], at, ms: performance.now() - t0 });
        });
        p.stdin.end(JSON.stringify(confs[n]));
      });

    // A probe container per node, each with a poller asking its own node's DNS.
    const pollers = [];
    for (let n = 0; n < NODES; n++) {
      const probe = await add(n, `probe${n}`);
      const p = child('ip', ['netns', 'exec', probe.ns, process.execPath, '-e', POLLER, gateway]);
      const seen = new Map();
      let buf = '';
      p.stdout.on('data', (d) => {
        buf += d;
        for (let i; (i = buf.indexOf('\n')) >= 0; buf = buf.slice(i + 1)) {
          const [name, at] = buf.slice(0, i).split(' ');
          seen.set(name, Number(at));
        }
      });
      pollers.push({ p, seen });
    }

    // 1. Propagation.
    const spreads = [];
    const addMs = [];
    for (let k = 0; k < SAMPLES; k++) {
      const name = `ep${k}`;
      for (const { p } of pollers) p.stdin.write(`${name}\n`);
      const r = await add(k % NODES, name);
      addMs.push(r.ms);
      for (let i = 0; pollers.some(({ seen }) => !seen.has(name)); i++) {
        if (i > 1000) {
          const missing = pollers.map(({ seen }, n) => (seen.has(name) ? undefined : n)).filter((n) => n !== undefined);
          const probeNs = containerNs[missing[0]];
          const dig = spawnSync('ip', ['netns', 'exec', probeNs, 'dig', '+time=1', '+tries=1', `@${gateway}`, name, 'A'], { encoding: 'utf8' }).stdout;
          throw new Error(`${name} never resolved on nodes ${missing.join(', ')}; dig from node ${missing[0]}: ${dig}`);
        }
        await sleep(5);
      }
      spreads.push(Math.max(0, ...pollers.map(({ seen }) => seen.get(name) - r.at)));
    }
    spreads.sort((a, b) => a - b);
    addMs.sort((a, b) => a - b);
    console.log(`propagation, ${NODES} nodes, ${SAMPLES} endpoints: ADD exited -> name answered on every node`);
    console.log(`  p50 ${quantile(spreads, 0.5)} ms  p99 ${quantile(spreads, 0.99)} ms  min ${spreads[0]} ms  max ${spreads.at(-1)} ms  (goal p99 <= 1000 ms)`);
    console.log(`  shoal-vxlan ADD itself: p50 ${quantile(addMs, 0.5).toFixed(0)} ms  p99 ${quantile(addMs, 0.99).toFixed(0)} ms`);

    // 2. Throughput: overlay vs underlay between nodes 1 and 2, rounds alternating.
    const a = await add(1, 'iperfa');
    const b = await add(2, 'iperfb');
    const [n1, n2] = [cluster.nodes[1], cluster.nodes[2]];
    const iperf = (clientNs, serverNs, serverIp) => {
      const srv = child('ip', ['netns', 'exec', serverNs, 'iperf3', '-s', '-1', '-B', serverIp, '-p', '5301']);
      srv.stdout.resume();
      spawnSync('sleep', ['0.3']);
      const r = spawnSync('ip', ['netns', 'exec', clientNs, 'iperf3', '-c', serverIp, '-p', '5301', '-t', String(SECONDS), '-J'], { encoding: 'utf8', timeout: (SECONDS + 20) * 1000 });
      srv.kill('SIGKILL');
      const doc = JSON.parse(r.stdout);
      return doc.end.sum_received.bits_per_second / 1e9;
    };
    const overlay = [];
    const underlay = [];
    for (let round = 0; round < ROUNDS; round++) {
      overlay.push(iperf(a.ns, b.ns, b.ip));
      underlay.push(iperf(n1.netns, n2.netns, n2.address));
    }
    const med = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
    const fmt = (xs) => `median ${med(xs).toFixed(2)} Gbit/s (${xs.map((x) => x.toFixed(2)).join(', ')})`;
    console.log(`throughput, iperf3 TCP ${SECONDS} s x ${ROUNDS} rounds alternating, node 1 -> node 2:`);
    console.log(`  overlay  ${fmt(overlay)}`);
    console.log(`  underlay ${fmt(underlay)}`);
    console.log(`  overlay / underlay = ${(med(overlay) / med(underlay)).toFixed(2)} (goal >= 0.90)`);
  } finally {
    for (const c of children) c.kill('SIGKILL');
    for (const ns of containerNs) spawnSync('ip', ['netns', 'del', ns]);
    await cluster.destroy();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  for (const c of children) c.kill('SIGKILL');
  for (const ns of containerNs) spawnSync('ip', ['netns', 'del', ns]);
  console.error(err);
  process.exit(1);
});
