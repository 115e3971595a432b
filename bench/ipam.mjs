#!/usr/bin/env node
// `npm run bench -- ipam`: shoal-ipam against the reference host-local, side by side.
//
// 1. ADD+DEL latency of the executables (process start included: that is what a runtime pays),
//    median of many, for shoal-ipam (dist/cni/shoal-ipam) and /usr/lib/cni/host-local.
// 2. shoal-ipam ADD latency with 10,000 addresses in use in a /16 against an empty /16
//    (goal: within 1.2x), both for the executable and for the allocator in-process, and for the
//    worst case where the round-robin cursor sits in front of the 10,000 used addresses.
// 3. What opening the store costs (loading node:sqlite, opening the file).
//
// The allocator library is bundled on the fly with esbuild so this script can fill the pool
// through the real code rather than by writing rows it would have to know the layout of.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const builtBin = path.join(root, 'dist/cni/shoal-ipam');
const hostLocal = process.env.HOST_LOCAL ?? '/usr/lib/cni/host-local';
const ROUNDS = Number(process.env.ROUNDS ?? 40);
const tmp = mkdtempSync(path.join(os.tmpdir(), 'shoal-bench-ipam-'));
// Inside the project so bundles here resolve better-sqlite3 from node_modules like dist/ does.
const libDir = path.join(root, 'node_modules/.cache/shoal-bench-ipam');
// A private copy of the executable: a rebuild of dist/ during the run must not break it.
const shoalBin = path.join(libDir, 'shoal-ipam');
function cleanup() {
  rmSync(tmp, { recursive: true, force: true });
  rmSync(libDir, { recursive: true, force: true });
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const ms = (x) => `${x.toFixed(2)} ms`;

function runCni(bin, command, containerId, config) {
  const env = { PATH: process.env.PATH, CNI_COMMAND: command, CNI_CONTAINERID: containerId, CNI_NETNS: '/var/run/netns/bench', CNI_IFNAME: 'eth0', CNI_PATH: path.dirname(bin) };
  const start = process.hrtime.bigint();
  const run = spawnSync(bin, [], { env, input: JSON.stringify(config), encoding: 'utf8' });
  const elapsed = Number(process.hrtime.bigint() - start) / 1e6;
  if (run.status !== 0) throw new Error(`${path.basename(bin)} ${command} failed: ${run.stdout}${run.stderr}`);
  return elapsed;
}

function netconf(type, ipam) {
  return { cniVersion: '1.0.0', name: 'benchnet', type, ipam: { type, ...ipam } };
}

async function loadLibrary() {
  const outfile = path.join(libDir, 'ipam-lib.mjs');
  await build({
    stdin: {
      contents: `export * from './src/ipam/plugin.ts'; export { SqliteStore } from './src/store/sqlite.ts'; export { cursorKey } from './src/ipam/keys.ts';`,
      resolveDir: root,
      loader: 'ts',
    },
    bundle: true,
    platform: 'node',
    format: 'esm',
    outfile,
    banner: { js: "import { createRequire as __shoalCreateRequire } from 'node:module'; const require = __shoalCreateRequire(import.meta.url);" },
    logLevel: 'warning',
  });
  return import(pathToFileURL(outfile).href);
}

async function main() {
  if (!existsSync(builtBin)) {
    const built = spawnSync(process.execPath, [path.join(root, 'scripts/build.mjs')], { cwd: root, stdio: 'inherit' });
    if (built.status !== 0) process.exit(1);
  }
  mkdirSync(libDir, { recursive: true });
  writeFileSync(path.join(libDir, 'package.json'), '{"type":"commonjs"}\n');
  copyFileSync(builtBin, shoalBin);
  // The launcher runs the bundle from lib/ beside it (scripts/build.mjs); the first call writes
  // the V8 code cache there, as the first call after an install does.
  mkdirSync(path.join(libDir, 'lib'), { recursive: true });
  copyFileSync(path.join(root, 'dist/cni/lib/shoal-ipam.js'), path.join(libDir, 'lib', 'shoal-ipam.js'));
  console.log(`rounds per measurement: ${ROUNDS} (median); node ${process.version}; ${os.cpus().length} CPUs`);

  // ---- 1. side by side -----------------------------------------------------------------
  // The two plugins alternate call by call, so load from anything else on the machine falls
  // on both alike.
  const shoalConf = netconf('shoal-ipam', { stateDir: path.join(tmp, 'side'), ranges: [[{ subnet: '10.90.0.0/24' }]] });
  const refConf = netconf('host-local', { dataDir: path.join(tmp, 'host-local'), ranges: [[{ subnet: '10.90.0.0/24' }]] });
  const haveRef = existsSync(hostLocal);
  const side = { shoal: { add: [], del: [] }, ref: { add: [], del: [] } };
  const floor = [];
  for (let i = 0; i < ROUNDS; i++) {
    // What any Node process costs here, for reading the shoal-ipam numbers against.
    const start = process.hrtime.bigint();
    // Same environment as the plugin calls (see runCni): NODE_EXTRA_CA_CERTS and the like change
    // Node's start-up time, so an inherited environment would skew the floor.
    spawnSync(process.execPath, ['-e', '0'], { env: { PATH: process.env.PATH } });
    floor.push(Number(process.hrtime.bigint() - start) / 1e6);
    side.shoal.add.push(runCni(shoalBin, 'ADD', `bench${i}`, shoalConf));
    if (haveRef) side.ref.add.push(runCni(hostLocal, 'ADD', `bench${i}`, refConf));
    side.shoal.del.push(runCni(shoalBin, 'DEL', `bench${i}`, shoalConf));
    if (haveRef) side.ref.del.push(runCni(hostLocal, 'DEL', `bench${i}`, refConf));
  }
  const summary = (r) => ({ add: median(r.add), del: median(r.del), both: median(r.add.map((a, i) => a + r.del[i])) });
  console.log('\nADD+DEL latency, one process per call (median)');
  console.log('plugin        ADD          DEL          ADD+DEL');
  const row = (name, r) => console.log(`${name.padEnd(13)} ${ms(r.add).padEnd(12)} ${ms(r.del).padEnd(12)} ${ms(r.both)}`);
  row('shoal-ipam', summary(side.shoal));
  if (haveRef) row('host-local', summary(side.ref));
  else console.log(`host-local    not found at ${hostLocal} (apt-get install containernetworking-plugins)`);
  console.log(`(node -e 0, the floor for any Node executable: ${ms(median(floor))})`);

  // ---- 2. 10,000 in use vs empty -------------------------------------------------------
  const lib = await loadLibrary();
  const ipam = (dir) => ({ type: 'shoal-ipam', stateDir: dir, ranges: [[{ subnet: '10.91.0.0/16' }]] });
  const emptyDir = path.join(tmp, 'empty');
  const fullDir = path.join(tmp, 'full');
  const fullStore = new lib.SqliteStore(path.join(fullDir, 'shoal.db'));
  const emptyStore = new lib.SqliteStore(path.join(emptyDir, 'shoal.db'));
  const fillStart = process.hrtime.bigint();
  for (let i = 0; i < 10_000; i++) await lib.ipamAdd({ containerId: `fill${i}`, ifname: 'eth0', network: 'benchnet', ipam: ipam(fullDir) }, { store: fullStore });
  const fillMs = Number(process.hrtime.bigint() - fillStart) / 1e6;

  // One ADD (timed) + DEL (untimed), so the pool stays at its size. `worst` first deletes the
  // round-robin cursor, so the walk starts in front of the 10,000 used addresses.
  async function timedAdd(kind, i, viaProcess) {
    const store = kind === 'empty' ? emptyStore : fullStore;
    const dir = kind === 'empty' ? emptyDir : fullDir;
    if (kind === 'worst') await store.delete(lib.cursorKey('benchnet', 0));
    const request = { containerId: `${kind}${i}`, ifname: 'eth0', network: 'benchnet', ipam: ipam(dir) };
    let elapsed;
    if (viaProcess) {
      const config = netconf('shoal-ipam', ipam(dir));
      elapsed = runCni(shoalBin, 'ADD', request.containerId, config);
      runCni(shoalBin, 'DEL', request.containerId, config);
    } else {
      const start = process.hrtime.bigint();
      await lib.ipamAdd(request, { store });
      elapsed = Number(process.hrtime.bigint() - start) / 1e6;
      await lib.ipamDel(request, { store });
    }
    return elapsed;
  }
  const kinds = ['empty', 'full', 'worst'];
  const lib_ = { empty: [], full: [], worst: [] };
  const proc_ = { empty: [], full: [], worst: [] };
  for (let i = 0; i < ROUNDS * 5; i++) for (const kind of kinds) lib_[kind].push(await timedAdd(kind, i, false));
  for (let i = 0; i < ROUNDS; i++) for (const kind of kinds) proc_[kind].push(await timedAdd(kind, i, true));
  fullStore.close();
  emptyStore.close();
  const [lib0, lib10k, lib10kWorst] = kinds.map((k) => median(lib_[k]));
  const [proc0, proc10k, proc10kWorst] = kinds.map((k) => median(proc_[k]));

  console.log(`\nADD latency in a /16: empty vs 10,000 addresses in use (filled in ${(fillMs / 1000).toFixed(1)} s in-process)`);
  console.log('where          empty        10k in use   ratio   10k, cursor before them (worst)   ratio');
  console.log(`in-process     ${ms(lib0).padEnd(12)} ${ms(lib10k).padEnd(12)} ${(lib10k / lib0).toFixed(2)}x   ${ms(lib10kWorst).padEnd(33)} ${(lib10kWorst / lib0).toFixed(2)}x`);
  console.log(`executable     ${ms(proc0).padEnd(12)} ${ms(proc10k).padEnd(12)} ${(proc10k / proc0).toFixed(2)}x   ${ms(proc10kWorst).padEnd(33)} ${(proc10kWorst / proc0).toFixed(2)}x`);
  console.log(`goal: executable 10k/empty within 1.2x -> ${proc10k / proc0 <= 1.2 ? 'met' : 'NOT met'}`);

  // ---- 3. store open cost ----------------------------------------------------------------
  const openCost = spawnSync(
    process.execPath,
    [
      '-e',
      `const t0=process.hrtime.bigint();const {DatabaseSync:D}=require('node:sqlite');const t1=process.hrtime.bigint();
       const db=new D(${JSON.stringify(path.join(fullDir, 'shoal.db'))},{timeout:10000});db.prepare('PRAGMA journal_mode').get();db.exec('PRAGMA synchronous = NORMAL');db.prepare('PRAGMA user_version').get();
       const t2=process.hrtime.bigint();console.log(JSON.stringify({load:Number(t1-t0)/1e6,open:Number(t2-t1)/1e6}))`,
    ],
    { cwd: root, encoding: 'utf8' },
  );
  const cost = JSON.parse(openCost.stdout);
  console.log(`\nstore open cost: require('node:sqlite') ${ms(cost.load)}, open + pragmas ${ms(cost.open)}`);
  cleanup();
}

main().catch((err) => {
  console.error(err);
  cleanup();
  process.exit(1);
});
