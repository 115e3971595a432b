#!/usr/bin/env node
// `npm run bench -- bridge`: shoal-bridge + shoal-ipam (in-process) against the reference
// bridge + host-local (/usr/lib/cni), and bare `node -e 0`, side by side in one run.
//
// Each round creates a fresh netns (untimed), then times ADD and DEL of each implementation as
// a runtime pays them (process start included), interleaved so machine load hits all alike.
// Shoal three ways (issue 17): "daemon", dist/cni/<type> handing the request to a running
// daemon (started here, temp dirs); "fallback", the same executable with no daemon to answer,
// so it execs the Node plugin; "node", the Node plugin run directly (the plugins before the
// forwarder existed). Two configs: plain L2 (isGateway, no masquerade) and with ipMasq (nft for
// us, iptables for the reference). Goals (issue 17): daemon ADD <= 0.5x the reference ADD and
// DEL <= 0.5x the reference DEL; the fallback no slower than the Node plugin.
// Medians with the interquartile range (p25-p75); BENCH_NET16 (default 10.238) picks the /16
// the networks are made in; ROUNDS (default 20).
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startBenchDaemon } from './lib/daemon.mjs';
import { removeNewSkeletons, shoalTables } from './lib/shoal-tables.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const REF_DIR = process.env.REFERENCE_CNI_DIR ?? '/usr/lib/cni';
const ROUNDS = Number(process.env.ROUNDS ?? 20);
const tmp = mkdtempSync(path.join(os.tmpdir(), 'shoal-bench-bridge-'));
// A private copy of the bundles inside node_modules (so shoal-sys / better-sqlite3 resolve).
const binDir = path.join(root, 'node_modules/.cache', `shoal-bench-bridge-${process.pid}`);
const tag = Math.random().toString(16).slice(2, 6);
const NET16 = process.env.BENCH_NET16 ?? '10.238';
const bridges = { daemon: `l2bd${tag}`, fallback: `l2bf${tag}`, node: `l2bs${tag}`, ref: `l2br${tag}` };
const made = { netns: new Set(), links: new Set(Object.values(bridges)) };

const tablesBefore = new Set(shoalTables());

let daemon;

async function cleanup() {
  await daemon?.stop();
  for (const ns of made.netns) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  for (const l of made.links) spawnSync('ip', ['link', 'del', l], { stdio: 'ignore' });
  // Our network's masquerade rules are deleted by DEL; the reference's iptables chains by its DEL.
  removeNewSkeletons(tablesBefore);
  rmSync(tmp, { recursive: true, force: true });
  rmSync(binDir, { recursive: true, force: true });
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const ms = (x) => `${x.toFixed(1)} ms`;
const quantile = (xs, q) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const i = (sorted.length - 1) * q;
  return sorted[Math.floor(i)] + (sorted[Math.ceil(i)] - sorted[Math.floor(i)]) * (i - Math.floor(i));
};
/** "median (p25-p75)" */
const spread = (xs) => `${median(xs).toFixed(1)} (${quantile(xs, 0.25).toFixed(1)}-${quantile(xs, 0.75).toFixed(1)})`;

function timed(file, args, env, input) {
  const t0 = process.hrtime.bigint();
  const res = spawnSync(file, args, { env, input, encoding: 'utf8' });
  const took = Number(process.hrtime.bigint() - t0) / 1e6;
  if (res.status !== 0) throw new Error(`${file} ${env?.CNI_COMMAND ?? ''} failed: ${res.stdout}${res.stderr}`);
  return took;
}

function cni(impl, command, id, netns, config) {
  const env = { PATH: process.env.PATH, ...impl.env, CNI_COMMAND: command, CNI_CONTAINERID: id, CNI_NETNS: `/run/netns/${netns}`, CNI_IFNAME: 'eth0', CNI_PATH: impl.path.join(':') };
  return timed(impl.bin, [], env, JSON.stringify(config));
}

async function main() {
  const built = spawnSync(process.execPath, [path.join(root, 'scripts/build.mjs')], { cwd: root, encoding: 'utf8' });
  if (built.status !== 0) throw new Error(`build failed: ${built.stderr}`);
  mkdirSync(binDir, { recursive: true });
  writeFileSync(path.join(binDir, 'package.json'), '{"type":"commonjs"}\n');
  // Forwarder, Node launcher and bundle, without any V8 code cache: the first Node ADD pays for
  // compiling and leaves the cache (scripts/plugin-launcher.cjs), as the first ADD after an
  // install does.
  for (const dir of ['lib', 'shoal-node']) mkdirSync(path.join(binDir, dir), { recursive: true });
  for (const t of ['shoal-bridge', 'shoal-ipam']) {
    copyFileSync(path.join(root, 'dist/cni', t), path.join(binDir, t));
    copyFileSync(path.join(root, 'dist/cni/shoal-node', t), path.join(binDir, 'shoal-node', t));
    copyFileSync(path.join(root, 'dist/cni/lib', `${t}.js`), path.join(binDir, 'lib', `${t}.js`));
  }
  const run = path.join(tmp, 'run');
  const state = path.join(tmp, 'shoal-state');
  daemon = await startBenchDaemon(root, { run, state });

  const shoal = (name, bin, env, bridge, third) => ({ name, bin, env, path: [binDir], ipam: (sub) => ({ type: 'shoal-ipam', subnet: sub, stateDir: state }), bridge, subnet: `${NET16}.${third}.0/24` });
  const impls = {
    daemon: shoal('shoal via daemon', path.join(binDir, 'shoal-bridge'), { SHOAL_RUN_DIR: run }, bridges.daemon, 1),
    fallback: shoal('shoal, no daemon', path.join(binDir, 'shoal-bridge'), { SHOAL_RUN_DIR: path.join(tmp, 'no-daemon') }, bridges.fallback, 3),
    node: shoal('shoal Node plugin', path.join(binDir, 'shoal-node', 'shoal-bridge'), {}, bridges.node, 4),
    reference: { name: 'bridge+host-local (ref)', bin: path.join(REF_DIR, 'bridge'), env: {}, path: [REF_DIR], ipam: (sub) => ({ type: 'host-local', subnet: sub, dataDir: path.join(tmp, 'host-local') }), bridge: bridges.ref, subnet: `${NET16}.2.0/24` },
  };
  const variants = [
    { label: 'plain (isGateway)', extra: { isGateway: true } },
    { label: 'ipMasq', extra: { isGateway: true, ipMasq: true } },
  ];
  const nodeTimes = [];
  const rows = [];
  for (const variant of variants) {
    const times = Object.fromEntries(Object.keys(impls).map((k) => [k, { add: [], del: [] }]));
    for (let round = 0; round < ROUNDS; round++) {
      // With the environment the plugins get (PATH and CNI_* only): Node start-up depends on the
      // environment (NODE_EXTRA_CA_CERTS alone adds ~40 ms here), so an inherited one would make
      // the floor look higher than what the plugins pay.
      nodeTimes.push(timed(process.execPath, ['-e', '0'], { PATH: process.env.PATH }));
      for (const [key, impl] of Object.entries(impls)) {
        const ns = `l2bn${tag}${key[0]}${round}`;
        spawnSync('ip', ['netns', 'add', ns]);
        made.netns.add(ns);
        const config = { cniVersion: '1.0.0', name: `l2bench${tag}${key[0]}`, type: key === 'reference' ? 'bridge' : 'shoal-bridge', bridge: impl.bridge, ...variant.extra, ipam: impl.ipam(impl.subnet) };
        const id = `bench${round}`;
        times[key].add.push(cni(impl, 'ADD', id, ns, config));
        times[key].del.push(cni(impl, 'DEL', id, ns, config));
        spawnSync('ip', ['netns', 'del', ns]);
        made.netns.delete(ns);
      }
    }
    rows.push({ variant: variant.label, times });
  }
  console.log(`rounds: ${ROUNDS} per config, interleaved; median (p25-p75) in ms; node -e 0: ${spread(nodeTimes)}; daemon served ${daemon.served()} requests`);
  console.log('config              | impl                     | ADD                  | DEL                  | ADD / ref | DEL / ref');
  for (const { variant, times } of rows) {
    const ref = times.reference;
    for (const [key, t] of Object.entries(times)) {
      const ratio = (a, b) => (median(a) / median(b)).toFixed(2).padStart(9);
      console.log(`${variant.padEnd(19)} | ${impls[key].name.padEnd(24)} | ${spread(t.add).padEnd(20)} | ${spread(t.del).padEnd(20)} | ${ratio(t.add, ref.add)} | ${ratio(t.del, ref.del)}`);
    }
    const met = (ok) => (ok ? 'met' : 'NOT met');
    console.log(`${variant.padEnd(19)} | goals: daemon ADD <= 0.5x ref ${met(median(times.daemon.add) <= 0.5 * median(ref.add))}, daemon DEL <= 0.5x ref ${met(median(times.daemon.del) <= 0.5 * median(ref.del))}; fallback - Node plugin (paired median): ADD ${ms(median(times.fallback.add.map((x, i) => x - times.node.add[i])))}, DEL ${ms(median(times.fallback.del.map((x, i) => x - times.node.del[i])))}`);
  }
}

try {
  await main();
} finally {
  await cleanup();
}
