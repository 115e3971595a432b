#!/usr/bin/env node
// `npm run bench -- podman-run`: `podman run --rm` of a trivial container (busybox `true`) on
// networks side by side in one run, rounds interleaved so machine load hits all alike:
//
//   shoal       the conflist `shoal network create` writes: one plugin, shoal-bridge running
//               shoal-ipam, port publishing and DNS registration in-process, its requests served
//               by the running daemon (issue 17: dist/cni/<type> forwards to <run dir>/cni.sock;
//               the daemon is started here, temp dirs)
//   shoal-nodaemon the same network with no daemon to answer: the forwarder execs the Node
//               plugin (1 Node start-up per ADD and per DEL)
//   shoal-chain the same network as the chain shoal-bridge -> shoal-portmap -> shoal-dns (the
//               form `shoal network create` wrote before issue 7: 3 start-ups each)
//   shoal-l2    shoal-bridge + shoal-ipam alone (1 start-up, no isolate, no ports, no DNS: no
//               rules left to clean up after the bench): where the floor is
//   reference   podman's default chain, the reference plugins from /usr/lib/cni: bridge +
//               host-local, portmap, firewall, tuning
//   none        --network none: podman's own cost, no CNI at all
//
// Reports median, interquartile range and mean wall time per run, and each network's ratio to
// the reference (goal for "shoal", issue 17: at most 0.9x). Plus `node -e 0` for scale. ROUNDS
// (default 12); BENCH_NET16 (default: 10.245-10.248 per network) puts every network in one /16.
// Everything lives in a temp dir (podman root, state, conflists) and is removed at the end.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startBenchDaemon } from './lib/daemon.mjs';
import { removeNewSkeletons, shoalTables } from './lib/shoal-tables.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SHOAL = path.join(root, 'dist/bin/shoal');
const ROUNDS = Number(process.env.ROUNDS ?? 12);
const IMAGE = 'localhost/shoal-bench-bb:latest';
const tmp = mkdtempSync(path.join(os.tmpdir(), 'shoal-bench-podman-'));
const netDir = path.join(tmp, 'networks');
const state = path.join(tmp, 'state');
/**
 * Each variant runs with a containers.conf of its own: its own network config dir holding only
 * its network (podman execs VERSION of every plugin of every network in the dir on each run and
 * on each cleanup: with all five in one dir, every run paid ~8 probes of the others' plugins),
 * and `[engine] env` carrying SHOAL_RUN_DIR, because podman's cleanup process (started by
 * conmon, which does the DEL after the container exits) does not inherit podman's environment:
 * it looked for the daemon at the default /run/shoal, found none, and ran the Node fallback.
 * A real host's daemon is at that default, so every process finds it; here the bench daemon's
 * temp run dir has to be passed on.
 */
const confOf = (key) => path.join(tmp, `containers-${key}.conf`);
const netDirOf = (key) => path.join(tmp, `networks-${key}`);
const tag = String(process.pid % 10000);
const third = 10 + (process.pid % 200);
const NETS = { shoal: `bshoal${tag}`, 'shoal-chain': `bchain${tag}`, 'shoal-l2': `bl2${tag}`, reference: `bref${tag}` };
const VARIANTS = ['shoal', 'shoal-nodaemon', 'shoal-chain', 'shoal-l2', 'reference', 'none'];
/** The network each variant runs on (shoal-nodaemon: the shoal network with no daemon). */
const networkOf = (key) => (key === 'none' ? 'none' : NETS[key === 'shoal-nodaemon' ? 'shoal' : key]);
const runDirOf = (key) => path.join(tmp, key === 'shoal-nodaemon' ? 'run-none' : 'run');
const env = { ...process.env, SHOAL_STATE_DIR: state, SHOAL_RUN_DIR: runDirOf('shoal') };
/** podman passes its environment to the plugins (and containers.conf's to its cleanup). */
const envOf = (key) => ({ ...env, CONTAINERS_CONF: confOf(key), SHOAL_RUN_DIR: runDirOf(key) });
const NET16 = process.env.BENCH_NET16;
/** The /24 of network `i` (0-3): 10.24x.<third>.0/24, or in BENCH_NET16. */
const subnet = (second, i) => (NET16 ? `${NET16}.${(third + 60 * i) % 250}.0/24` : `10.${second}.${third}.0/24`);
let daemon;
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
  for (const key of VARIANTS) {
    mkdirSync(netDirOf(key));
    writeFileSync(
      confOf(key),
      ['[network]', 'network_backend = "cni"', `cni_plugin_dirs = ["${path.join(root, 'dist/cni')}", "/usr/lib/cni"]`, `network_config_dir = "${netDirOf(key)}"`, '[engine]', 'events_logger = "none"', `env = ["SHOAL_RUN_DIR=${runDirOf(key)}", "SHOAL_STATE_DIR=${state}"]`, ''].join('\n'),
    );
  }
  const rootfs = path.join(tmp, 'rootfs');
  mkdirSync(path.join(rootfs, 'bin'), { recursive: true });
  for (const d of ['etc', 'proc', 'sys', 'dev', 'tmp']) mkdirSync(path.join(rootfs, d));
  copyFileSync('/bin/busybox', path.join(rootfs, 'bin/busybox'));
  for (const a of ['sh', 'true']) symlinkSync('busybox', path.join(rootfs, 'bin', a));
  sh('sh', ['-c', `tar -C ${rootfs} -c . | podman ${podmanArgs.join(' ')} import - ${IMAGE}`], { env: envOf('none') });
  sh(process.execPath, [SHOAL, 'network', 'create', '--cni-conf-dir', netDir, '--subnet', subnet(246, 0), NETS.shoal]);
  // Made by the CLI too (so `network rm` cleans it up), then rewritten into the chained form.
  sh(process.execPath, [SHOAL, 'network', 'create', '--cni-conf-dir', netDir, '--subnet', subnet(245, 1), NETS['shoal-chain']]);
  const chainFile = path.join(netDir, `${NETS['shoal-chain']}.conflist`);
  writeFileSync(chainFile, JSON.stringify(chained(JSON.parse(readFileSync(chainFile, 'utf8')))));
  const l2 = {
    cniVersion: '1.0.0',
    name: NETS['shoal-l2'],
    plugins: [{ type: 'shoal-bridge', bridge: `bl2br${tag}`, isGateway: true, ipMasq: true, hairpinMode: true, stateDir: state, ipam: { type: 'shoal-ipam', ranges: [[{ subnet: subnet(247, 2) }]], routes: [{ dst: '0.0.0.0/0' }], stateDir: state } }],
  };
  const ref = {
    cniVersion: '0.4.0',
    name: NETS.reference,
    plugins: [
      { type: 'bridge', bridge: `brefbr${tag}`, isGateway: true, ipMasq: true, hairpinMode: true, ipam: { type: 'host-local', ranges: [[{ subnet: subnet(248, 3) }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: path.join(tmp, 'host-local') } },
      { type: 'portmap', capabilities: { portMappings: true } },
      { type: 'firewall' },
      { type: 'tuning' },
    ],
  };
  writeFileSync(path.join(netDir, `${l2.name}.conflist`), JSON.stringify(l2));
  writeFileSync(path.join(netDir, `${ref.name}.conflist`), JSON.stringify(ref));
  for (const key of VARIANTS) {
    if (key !== 'none') copyFileSync(path.join(netDir, `${networkOf(key)}.conflist`), path.join(netDirOf(key), `${networkOf(key)}.conflist`));
  }
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

async function cleanup() {
  await daemon?.stop();
  podman(['rm', '-af', '-t', '0'], { allowFail: true, env: envOf('none') });
  podman(['system', 'reset', '-f'], { allowFail: true, env: envOf('none') });
  sh(process.execPath, [SHOAL, 'network', 'rm', '--force', NETS.shoal, NETS['shoal-chain']], { allowFail: true });
  for (const br of [`bl2br${tag}`, `brefbr${tag}`]) sh('ip', ['link', 'del', br], { allowFail: true });
  // The reference ipMasq rules live in iptables chains named CNI-<hash>; podman's DEL removes them.
  removeNewSkeletons(tablesBefore);
  sh('umount', ['-R', path.join(tmp, 'root')], { allowFail: true });
  rmSync(tmp, { recursive: true, force: true });
}

function timeRun(network, runEnv = env) {
  const t0 = process.hrtime.bigint();
  podman(['run', '--rm', '--network', network, '--ulimit', 'nproc=1024:1024', '--ulimit', 'nofile=10000:10000', IMAGE, 'true'], { env: runEnv });
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const f = (x) => `${x.toFixed(0).padStart(5)} ms`;

const quantile = (xs, q) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const i = (sorted.length - 1) * q;
  return sorted[Math.floor(i)] + (sorted[Math.ceil(i)] - sorted[Math.floor(i)]) * (i - Math.floor(i));
};

try {
  setup();
  daemon = await startBenchDaemon(root, { run: env.SHOAL_RUN_DIR, state });
  const order = Object.fromEntries(VARIANTS.map((key) => [key, [networkOf(key), envOf(key)]]));
  const times = Object.fromEntries(Object.keys(order).map((k) => [k, []]));
  for (const [net, runEnv] of Object.values(order)) timeRun(net, runEnv); // warm-up: image layers, bridges, page cache
  const servedBefore = daemon.served();
  for (let i = 0; i < ROUNDS; i++) for (const [k, [net, runEnv]] of Object.entries(order)) times[k].push(timeRun(net, runEnv));
  const nodeStart = [];
  for (let i = 0; i < 10; i++) {
    const t0 = process.hrtime.bigint();
    sh(process.execPath, ['-e', '0']);
    nodeStart.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  const ref = median(times.reference);
  console.log(`podman run --rm busybox true, ${ROUNDS} rounds interleaved (${os.cpus().length} CPUs, load ${os.loadavg()[0].toFixed(1)}); the daemon served ${daemon.served() - servedBefore} CNI requests in the timed rounds\n`);
  console.log(`${'network'.padEnd(15)} ${'median'.padStart(8)} ${'p25-p75'.padStart(13)} ${'mean'.padStart(8)}   vs reference (median)`);
  for (const k of Object.keys(order)) {
    const m = median(times[k]);
    const diff = k === 'reference' ? '' : `${m - ref >= 0 ? '+' : ''}${(m - ref).toFixed(0)} ms, ${(m / ref).toFixed(2)}x`;
    console.log(`${k.padEnd(15)} ${f(m)} ${`${quantile(times[k], 0.25).toFixed(0)}-${quantile(times[k], 0.75).toFixed(0)} ms`.padStart(13)} ${f(mean(times[k]))}   ${diff}`);
  }
  console.log(`\nnode -e 0 median: ${median(nodeStart).toFixed(0)} ms (a Node start-up: "shoal-nodaemon" pays 1 per ADD and 1 per DEL)`);
  const ratio = median(times.shoal) / ref;
  console.log(`goal (shoal at most 0.9x the reference): ${ratio <= 0.9 ? 'met' : 'NOT met'} (${ratio.toFixed(2)}x)`);
} finally {
  await cleanup();
}
