#!/usr/bin/env node
// `npm run bench -- podman-run`: `podman run --rm` of a trivial container (busybox `true`) on
// networks side by side in one run, rounds interleaved so machine load hits all alike:
//
//   shoal       the conflist `shoal network create` writes: one plugin, shoal-bridge running
//               shoal-ipam, port publishing and DNS registration in-process (1 Node start-up
//               per ADD and per DEL)
//   shoal-chain the same network as the chain shoal-bridge -> shoal-portmap -> shoal-dns (the
//               form `shoal network create` wrote before issue 7: 3 start-ups each)
//   shoal-l2    shoal-bridge + shoal-ipam alone (1 start-up, no isolate, no ports, no DNS: no
//               rules left to clean up after the bench): where the floor is
//   reference   the reference plugins from /usr/lib/cni: bridge + host-local + portmap
//   none        --network none: podman's own cost, no CNI at all
//
// Reports median and mean wall time per run, and each network's difference to the reference
// (goal for "shoal": at most 100 ms more). Plus `node -e 0` for scale. ROUNDS (default 12).
// Everything lives in a temp dir (podman root, state, conflists) and is removed at the end.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { removeNewSkeletons, shoalTables } from './lib/shoal-tables.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SHOAL = path.join(root, 'dist/bin/shoal');
const ROUNDS = Number(process.env.ROUNDS ?? 12);
const IMAGE = 'localhost/shoal-bench-bb:latest';
const tmp = mkdtempSync(path.join(os.tmpdir(), 'shoal-bench-podman-'));
const netDir = path.join(tmp, 'networks');
const state = path.join(tmp, 'state');
const conf = path.join(tmp, 'containers.conf');
const tag = String(process.pid % 10000);
const third = 10 + (process.pid % 200);
const NETS = { shoal: `bshoal${tag}`, 'shoal-chain': `bchain${tag}`, 'shoal-l2': `bl2${tag}`, reference: `bref${tag}` };
const env = { ...process.env, CONTAINERS_CONF: conf, SHOAL_STATE_DIR: state, SHOAL_RUN_DIR: path.join(tmp, 'run') };
const tablesBefore = new Set(shoalTables());
const podmanArgs = ['--root', path.join(tmp, 'root'), '--runroot', path.join(tmp, 'runroot'), '--runtime', 'runc', '--cgroup-manager', 'cgroupfs', '--events-backend', 'none'];

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env, ...opts });
  if (r.status !== 0 && !opts.allowFail) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr || r.error}`);
  return r;
}
const podman = (args, opts) => sh('podman', [...podmanArgs, ...args], opts);

function setup() {
  mkdirSync(netDir);
  writeFileSync(
    conf,
    ['[network]', 'network_backend = "cni"', `cni_plugin_dirs = ["${path.join(root, 'dist/cni')}", "/usr/lib/cni"]`, `network_config_dir = "${netDir}"`, '[engine]', 'events_logger = "none"', ''].join('\n'),
  );
  const rootfs = path.join(tmp, 'rootfs');
  mkdirSync(path.join(rootfs, 'bin'), { recursive: true });
  for (const d of ['etc', 'proc', 'sys', 'dev', 'tmp']) mkdirSync(path.join(rootfs, d));
  copyFileSync('/bin/busybox', path.join(rootfs, 'bin/busybox'));
  for (const a of ['sh', 'true']) symlinkSync('busybox', path.join(rootfs, 'bin', a));
  sh('sh', ['-c', `tar -C ${rootfs} -c . | podman ${podmanArgs.join(' ')} import - ${IMAGE}`]);
  sh(process.execPath, [SHOAL, 'network', 'create', '--cni-conf-dir', netDir, '--subnet', `10.246.${third}.0/24`, NETS.shoal]);
  // Made by the CLI too (so `network rm` cleans it up), then rewritten into the chained form.
  sh(process.execPath, [SHOAL, 'network', 'create', '--cni-conf-dir', netDir, '--subnet', `10.245.${third}.0/24`, NETS['shoal-chain']]);
  const chainFile = path.join(netDir, `${NETS['shoal-chain']}.conflist`);
  writeFileSync(chainFile, JSON.stringify(chained(JSON.parse(readFileSync(chainFile, 'utf8')))));
  const l2 = {
    cniVersion: '1.0.0',
    name: NETS['shoal-l2'],
    plugins: [{ type: 'shoal-bridge', bridge: `bl2br${tag}`, isGateway: true, ipMasq: true, hairpinMode: true, stateDir: state, ipam: { type: 'shoal-ipam', ranges: [[{ subnet: `10.247.${third}.0/24` }]], routes: [{ dst: '0.0.0.0/0' }], stateDir: state } }],
  };
  const ref = {
    cniVersion: '0.4.0',
    name: NETS.reference,
    plugins: [
      { type: 'bridge', bridge: `brefbr${tag}`, isGateway: true, ipMasq: true, hairpinMode: true, ipam: { type: 'host-local', ranges: [[{ subnet: `10.248.${third}.0/24` }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: path.join(tmp, 'host-local') } },
      { type: 'portmap', capabilities: { portMappings: true } },
    ],
  };
  writeFileSync(path.join(netDir, `${l2.name}.conflist`), JSON.stringify(l2));
  writeFileSync(path.join(netDir, `${ref.name}.conflist`), JSON.stringify(ref));
}

/** The one-plugin bridge conflist as the chain bridge -> shoal-portmap -> shoal-dns (the old form). */
function chained(list) {
  const [{ capabilities: _caps, portmap, discovery, ...bridge }] = list.plugins;
  if (!portmap || !discovery) return list;
  return {
    ...list,
    plugins: [
      bridge,
      { type: 'shoal-portmap', capabilities: { portMappings: true }, ...portmap, stateDir: bridge.stateDir },
      { type: 'shoal-dns', capabilities: { aliases: true }, ...discovery, stateDir: bridge.stateDir },
    ],
  };
}

function cleanup() {
  podman(['rm', '-af', '-t', '0'], { allowFail: true });
  podman(['system', 'reset', '-f'], { allowFail: true });
  sh(process.execPath, [SHOAL, 'network', 'rm', '--force', NETS.shoal, NETS['shoal-chain']], { allowFail: true });
  for (const br of [`bl2br${tag}`, `brefbr${tag}`]) sh('ip', ['link', 'del', br], { allowFail: true });
  // The reference ipMasq rules live in iptables chains named CNI-<hash>; podman's DEL removes them.
  removeNewSkeletons(tablesBefore);
  sh('umount', ['-R', path.join(tmp, 'root')], { allowFail: true });
  rmSync(tmp, { recursive: true, force: true });
}

function timeRun(network) {
  const t0 = process.hrtime.bigint();
  podman(['run', '--rm', '--network', network, '--ulimit', 'nproc=1024:1024', '--ulimit', 'nofile=10000:10000', IMAGE, 'true']);
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const f = (x) => `${x.toFixed(0).padStart(5)} ms`;

try {
  setup();
  const order = { shoal: NETS.shoal, 'shoal-chain': NETS['shoal-chain'], 'shoal-l2': NETS['shoal-l2'], reference: NETS.reference, none: 'none' };
  const times = Object.fromEntries(Object.keys(order).map((k) => [k, []]));
  for (const net of Object.values(order)) timeRun(net); // warm-up: image layers, bridges, page cache
  for (let i = 0; i < ROUNDS; i++) for (const [k, net] of Object.entries(order)) times[k].push(timeRun(net));
  const nodeStart = [];
  for (let i = 0; i < 10; i++) {
    const t0 = process.hrtime.bigint();
    sh(process.execPath, ['-e', '0']);
    nodeStart.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  const ref = median(times.reference);
  console.log(`podman run --rm busybox true, ${ROUNDS} rounds interleaved (${os.cpus().length} CPUs, load ${os.loadavg()[0].toFixed(1)})\n`);
  console.log(`${'network'.padEnd(12)} ${'median'.padStart(8)} ${'mean'.padStart(8)}   vs reference (median)`);
  for (const k of Object.keys(order)) {
    const m = median(times[k]);
    const diff = k === 'reference' ? '' : `${m - ref >= 0 ? '+' : ''}${(m - ref).toFixed(0)} ms`;
    console.log(`${k.padEnd(12)} ${f(m)} ${f(mean(times[k]))}   ${diff}`);
  }
  console.log(`\nnode -e 0 median: ${median(nodeStart).toFixed(0)} ms (a Node start-up; "shoal" and "shoal-l2" pay 1 per ADD and 1 per DEL, "shoal-chain" 3 each)`);
  const over = median(times.shoal) - ref;
  console.log(`goal (shoal at most +100 ms over reference): ${over <= 100 ? 'met' : 'NOT met'} (+${over.toFixed(0)} ms)`);
} finally {
  cleanup();
}
