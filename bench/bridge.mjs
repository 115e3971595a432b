#!/usr/bin/env node
// `npm run bench -- bridge`: shoal-bridge + shoal-ipam (in-process) against the reference
// bridge + host-local (/usr/lib/cni), and bare `node -e 0`, side by side in one run.
//
// Each round creates a fresh netns (untimed), then times ADD and DEL of each implementation as
// a runtime pays them (process start included), interleaved so machine load hits all alike.
// Two configs: plain L2 (isGateway, no masquerade) and with ipMasq (nft for us, iptables for
// the reference). Goal (issue 4): our ADD minus bare node start-up <= the reference ADD.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { removeNewSkeletons, shoalTables } from './lib/shoal-tables.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const REF_DIR = process.env.REFERENCE_CNI_DIR ?? '/usr/lib/cni';
const ROUNDS = Number(process.env.ROUNDS ?? 20);
const tmp = mkdtempSync(path.join(os.tmpdir(), 'shoal-bench-bridge-'));
// A private copy of the bundles inside node_modules (so shoal-sys / better-sqlite3 resolve).
const binDir = path.join(root, 'node_modules/.cache', `shoal-bench-bridge-${process.pid}`);
const tag = Math.random().toString(16).slice(2, 6);
const bridges = { shoal: `l2bs${tag}`, ref: `l2br${tag}` };
const made = { netns: new Set(), links: new Set(Object.values(bridges)) };

const tablesBefore = new Set(shoalTables());

function cleanup() {
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

function timed(file, args, env, input) {
  const t0 = process.hrtime.bigint();
  const res = spawnSync(file, args, { env, input, encoding: 'utf8' });
  const took = Number(process.hrtime.bigint() - t0) / 1e6;
  if (res.status !== 0) throw new Error(`${file} ${env?.CNI_COMMAND ?? ''} failed: ${res.stdout}${res.stderr}`);
  return took;
}

function cni(bin, command, id, netns, config, pathDirs) {
  const env = { PATH: process.env.PATH, CNI_COMMAND: command, CNI_CONTAINERID: id, CNI_NETNS: `/run/netns/${netns}`, CNI_IFNAME: 'eth0', CNI_PATH: pathDirs.join(':') };
  return timed(bin, [], env, JSON.stringify(config));
}

function main() {
  const built = spawnSync(process.execPath, [path.join(root, 'scripts/build.mjs')], { cwd: root, encoding: 'utf8' });
  if (built.status !== 0) throw new Error(`build failed: ${built.stderr}`);
  mkdirSync(binDir, { recursive: true });
  writeFileSync(path.join(binDir, 'package.json'), '{"type":"commonjs"}\n');
  // Launcher and bundle, without any V8 code cache: the first ADD pays for compiling and leaves
  // the cache (scripts/plugin-launcher.cjs), as the first ADD after an install does.
  mkdirSync(path.join(binDir, 'lib'), { recursive: true });
  for (const t of ['shoal-bridge', 'shoal-ipam']) {
    copyFileSync(path.join(root, 'dist/cni', t), path.join(binDir, t));
    copyFileSync(path.join(root, 'dist/cni/lib', `${t}.js`), path.join(binDir, 'lib', `${t}.js`));
  }

  const impls = {
    shoal: { bin: path.join(binDir, 'shoal-bridge'), path: [binDir], ipam: (sub) => ({ type: 'shoal-ipam', subnet: sub, stateDir: path.join(tmp, 'shoal-state') }), bridge: bridges.shoal, subnet: '10.238.1.0/24' },
    reference: { bin: path.join(REF_DIR, 'bridge'), path: [REF_DIR], ipam: (sub) => ({ type: 'host-local', subnet: sub, dataDir: path.join(tmp, 'host-local') }), bridge: bridges.ref, subnet: '10.238.2.0/24' },
  };
  const variants = [
    { label: 'plain (isGateway)', extra: { isGateway: true } },
    { label: 'ipMasq', extra: { isGateway: true, ipMasq: true } },
  ];
  const nodeTimes = [];
  const rows = [];
  for (const variant of variants) {
    const times = { shoal: { add: [], del: [] }, reference: { add: [], del: [] } };
    const nodeRound = [];
    for (let round = 0; round < ROUNDS; round++) {
      // With the environment the plugins get (PATH and CNI_* only): Node start-up depends on the
      // environment (NODE_EXTRA_CA_CERTS alone adds ~40 ms here), so an inherited one would make
      // the floor look higher than what the plugins pay.
      nodeRound.push(timed(process.execPath, ['-e', '0'], { PATH: process.env.PATH }));
      nodeTimes.push(nodeRound.at(-1));
      for (const [name, impl] of Object.entries(impls)) {
        const ns = `l2bn${tag}${name[0]}${round}`;
        spawnSync('ip', ['netns', 'add', ns]);
        made.netns.add(ns);
        const config = { cniVersion: '1.0.0', name: `l2bench${tag}${name[0]}`, type: name === 'shoal' ? 'shoal-bridge' : 'bridge', bridge: impl.bridge, ...variant.extra, ipam: impl.ipam(impl.subnet) };
        const id = `bench${round}`;
        times[name].add.push(cni(impl.bin, 'ADD', id, ns, config, impl.path));
        times[name].del.push(cni(impl.bin, 'DEL', id, ns, config, impl.path));
        spawnSync('ip', ['netns', 'del', ns]);
        made.netns.delete(ns);
      }
    }
    rows.push({ variant: variant.label, times, nodeRound });
  }
  const node = median(nodeTimes);
  const firstAdd = rows[0].times.shoal.add[0];
  console.log(`rounds: ${ROUNDS} per config; medians; node -e 0: ${ms(node)}`);
  // "paired": the median over rounds of (ADD - node -e 0 of the same round), which cancels the
  // machine's slow drifts that shift both; a cross-check of the medians' difference.
  console.log('config              | impl                     | ADD       | DEL       | ADD - node | paired');
  for (const { variant, times, nodeRound } of rows) {
    for (const [name, t] of Object.entries(times)) {
      const label = name === 'shoal' ? 'shoal-bridge+shoal-ipam' : 'bridge+host-local (ref)';
      const add = median(t.add);
      const paired = median(t.add.map((x, i) => x - nodeRound[i]));
      console.log(`${variant.padEnd(19)} | ${label.padEnd(24)} | ${ms(add).padStart(9)} | ${ms(median(t.del)).padStart(9)} | ${name === 'shoal' ? `${ms(add - node).padStart(10)} | ${ms(paired)}` : ''}`);
    }
    const goal = median(times.shoal.add) - node <= median(times.reference.add);
    console.log(`${variant.padEnd(19)} | goal (ADD - node <= reference ADD): ${goal ? 'met' : 'NOT met'}`);
  }
  console.log(`first shoal ADD after install (no V8 code cache yet, compiles and writes it): ${ms(firstAdd)}`);
}

try {
  main();
} finally {
  cleanup();
}
