#!/usr/bin/env node
// Bundles every CNI executable and the CLI into one CommonJS file each (DESIGN.md §5: start-up
// time is a product feature; one file means one read and no module resolution walk). A plugin's
// bundle is run by a small launcher that adds a V8 code cache (scripts/plugin-launcher.cjs).
// Dynamic import() inside the sources becomes a lazy in-file require, so a verb loads only the
// code it needs. Shoal's system-call addon (native/shoal-sys, compiled here first) stays a file,
// loaded by src/kernel/sys.ts and resolved from node_modules next to dist/. The store runs on
// Node's built-in node:sqlite (no addon). pino stays external: with its helpers it is a third of a plugin bundle, and V8
// pre-parses every byte of a bundle at start-up, while a plugin loads pino only when it logs
// (errors, or a log level below warn). etcd3 (and its gRPC stack) is the daemon's alone (DESIGN.md
// §4.12: plugins never open etcd): it stays external, since it reads its .proto files from its
// own folder at run time, and a plugin bundle that reaches it, or any module of the cluster
// store, fails the build (assertNoClusterCode).
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, statSync } from 'node:fs';
import { chmod, copyFile, mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'dist');
const CNI_TYPES = [
  'shoal-bridge',
  'shoal-macvlan',
  'shoal-ipvlan',
  'shoal-vxlan',
  'shoal-ipam',
  'shoal-portmap',
  'shoal-dns',
];

const common = {
  bundle: true,
  platform: 'node',
  target: 'node24',
  format: 'cjs',
  external: ['pino', 'etcd3', '*.node'],
  legalComments: 'none',
  // ASCII output (non-ASCII escaped): scripts/plugin-launcher.cjs reads plugin bundles as latin1.
  charset: 'ascii',
  sourcemap: false,
  logLevel: 'warning',
  // Keep class names: error classes are matched by name in logs and their `name` is shown.
  keepNames: true,
  // import.meta.url has no meaning in a CJS bundle; modules that need their own location use
  // __filename through this define instead.
  define: { 'import.meta.url': 'importMetaUrl' },
  inject: [path.join(root, 'scripts/import-meta-url.js')],
};

/**
 * Compiles native/shoal-sys against the running Node's own headers (N-API, so any later Node
 * loads it too) when the addon is missing or older than its source. Written by rename: plugins
 * may be loading it while a rebuild runs.
 */
function buildAddon() {
  const dir = path.join(root, 'native', 'shoal-sys');
  const sources = ['shoal_sys.c', 'udp_batch.c', 'udp_batch.h'].map((f) => path.join(dir, f));
  const out = path.join(dir, 'build', 'shoal_sys.node');
  if (existsSync(out) && sources.every((s) => statSync(out).mtimeMs >= statSync(s).mtimeMs)) return;
  const include = path.join(path.dirname(process.execPath), '..', 'include', 'node');
  if (!existsSync(path.join(include, 'node_api.h'))) {
    throw new Error(`cannot build native/shoal-sys: Node's C headers (node_api.h) are not in ${include}; install the headers of this Node`);
  }
  const tmp = `${out}.${process.pid}.tmp`;
  mkdirSync(path.dirname(out), { recursive: true });
  const cc = process.env.CC || 'cc';
  try {
    execFileSync(cc, ['-O2', '-shared', '-fPIC', '-Wall', '-Wextra', '-Werror', `-I${include}`, '-o', tmp, ...sources.filter((s) => s.endsWith('.c'))], { stdio: 'inherit' });
  } catch (err) {
    if (err.code === 'ENOENT') throw new Error(`cannot build native/shoal-sys: no C compiler "${cc}" (install gcc, or set CC)`, { cause: err });
    throw err;
  }
  renameSync(tmp, out);
}

/**
 * Compiles native/cni-forward (the executable a runtime runs as dist/cni/<type>) with the build
 * id of this build's daemon-side plugin code compiled in: the forwarder hands requests only to a
 * daemon that announces the same id (src/daemon/cni-protocol.ts).
 */
function buildForwarder(out, buildId) {
  const source = path.join(root, 'native', 'cni-forward', 'shoal_cni_forward.c');
  const cc = process.env.CC || 'cc';
  const args = ['-O2', '-Wall', '-Wextra', '-Werror', `-DSHOAL_BUILD_ID="${buildId}"`, '-o', out, source];
  try {
    // Static when the C library allows it (Debian's libc6-dev ships libc.a): no dynamic loader
    // at each container start, about half the forwarder's start-up (measured, hyperfine).
    execFileSync(cc, ['-static', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    if (err.code === 'ENOENT') throw new Error(`cannot build native/cni-forward: no C compiler "${cc}" (install gcc, or set CC)`, { cause: err });
    execFileSync(cc, args, { stdio: 'inherit' });
  }
}

/**
 * The launchers' first line. Node itself, by absolute path, rather than `/usr/bin/env node`:
 * env is one more exec and a PATH search per plugin run (~2 ms, measured). The plugins are built
 * on the machine that runs them (scripts/setup.sh), by the Node that will run them. A path a
 * shebang cannot carry falls back to env.
 * The one option (a shebang passes one): a plugin run allocates ~1.5 MB in V8's young generation,
 * just over the default 1 MB semi-space, so it paid one scavenge (3-4 ms, and a wake-up of V8's
 * helper threads); with 2 MB an ADD, plain or with ipMasq, runs without any GC (--trace-gc).
 * Measured: 1-1.7 ms less per ADD than --single-threaded-gc, which itself saved ~2 ms.
 */
const NODE_OPTION = '--min-semi-space-size=2';

function launcherShebang() {
  const node = process.execPath;
  return /^[^\s]{1,200}$/.test(node) ? `#!${node} ${NODE_OPTION}` : `#!/usr/bin/env -S node ${NODE_OPTION}`;
}

function cliShebang() {
  const node = process.execPath;
  return /^[^\s]{1,200}$/.test(node) ? `#!${node}` : '#!/usr/bin/env node';
}

/**
 * What a CNI plugin bundle must never contain or require: the etcd client, gRPC, and Shoal's
 * etcd store and cluster modules. A plugin reads the local store only; the daemon holds the
 * etcd session. Checked on esbuild's metafile, so a dynamic import() that would load them
 * lazily counts too.
 */
const PLUGIN_FORBIDDEN = [/(^|\/)node_modules\/(etcd3|@grpc)\//, /^(etcd3|@grpc\/)/, /(^|\/)src\/store\/etcd[^/]*\.ts$/, /(^|\/)src\/cluster\//];

function assertNoClusterCode(type, metafile) {
  const reached = new Set();
  for (const [input, info] of Object.entries(metafile.inputs)) {
    if (PLUGIN_FORBIDDEN.some((re) => re.test(input))) reached.add(input);
    for (const imp of info.imports) if (PLUGIN_FORBIDDEN.some((re) => re.test(imp.path))) reached.add(`${imp.path} (imported by ${input})`);
  }
  if (reached.size) throw new Error(`${type}: the plugin bundle reaches daemon-only cluster code: ${[...reached].join(', ')}`);
}

async function main() {
  buildAddon();
  // Build into a private directory and rename each file into place: tests and runtimes may be
  // executing dist/ while a rebuild runs, and must see the old or the new file, never a gap.
  const staging = path.join(dist, `.build-${process.pid}`);
  await rm(staging, { recursive: true, force: true });
  await mkdir(path.join(dist, 'cni'), { recursive: true });
  await mkdir(path.join(dist, 'bin'), { recursive: true });
  await mkdir(staging, { recursive: true });
  // The package is "type": "module"; these bundles are CommonJS and have no extension, so a
  // package.json here tells Node how to load them whatever the parent says.
  await writeFile(path.join(dist, 'package.json'), JSON.stringify({ type: 'commonjs' }) + '\n');

  // A CNI plugin is the forwarder (native/cni-forward) in dist/cni/<type>, a small Node launcher
  // (scripts/plugin-launcher.cjs: V8 code cache, see there) in dist/cni/shoal-node/<type> that
  // the forwarder execs when no daemon answers, and its bundle in dist/cni/lib/<type>.js. The
  // daemon runs the same plugins from dist/cni/lib/shoal-cni-worker.js. The CLI is one bundle.
  for (const dir of ['lib', 'shoal-node']) {
    await mkdir(path.join(dist, 'cni', dir), { recursive: true });
    await mkdir(path.join(staging, dir), { recursive: true });
  }
  const worker = { in: path.join(root, 'src/daemon/cni-worker.ts'), staged: path.join('lib', 'shoal-cni-worker.js'), out: path.join(dist, 'cni', 'lib', 'shoal-cni-worker.js') };
  const launcher = await readFile(path.join(root, 'scripts/plugin-launcher.cjs'), 'utf8');
  const plugins = CNI_TYPES.map((type) => ({ in: path.join(root, 'cni/bin', `${type}.ts`), staged: path.join('lib', `${type}.js`), out: path.join(dist, 'cni', 'lib', `${type}.js`), type }));
  const cli = { in: path.join(root, 'src/cli/main.ts'), staged: 'shoal', out: path.join(dist, 'bin', 'shoal') };
  // The daemon's DNS worker threads run their own bundle, next to the CLI (src/dns/worker-pool.ts).
  const dnsWorker = { in: path.join(root, 'src/dns/worker-main.ts'), staged: 'dns-worker.js', out: path.join(dist, 'bin', 'dns-worker.js') };
  const moves = [];
  const builds = new Set();
  try {
    // Every build settles before the first failure is raised: the staging directory is removed
    // in `finally`, and must not be removed under builds that are still writing into it.
    const settled = await Promise.allSettled([
      ...plugins.map(async (p) => {
        const bundle = path.join(staging, p.staged);
        // Minified: the launcher reads the whole bundle into a string on every run, and half
        // the bytes is 5 ms less of an ADD (measured). keepNames (common) keeps class names.
        // Written as the CommonJS wrapper function the launcher compiles (see there), so the
        // launcher hands the file's text to V8 as read instead of building a second 150 KB string.
        const result = await build({ ...common, metafile: true, banner: { js: '(function (exports, require, module, __filename, __dirname) {' }, footer: { js: '})' }, minify: true, entryPoints: [p.in], outfile: bundle });
        assertNoClusterCode(p.type, result.metafile);
        const bytes = await readFile(bundle);
        // The launcher reads the bundle as latin1, which is exact only for ASCII.
        if (bytes.some((b) => b > 0x7f)) throw new Error(`${p.staged}: non-ASCII bytes in the bundle; the launcher reads it as latin1`);
        const hash = createHash('sha256').update(bytes).digest('hex').slice(0, 16);
        builds.add(hash);
        const staged = path.join(staging, 'shoal-node', p.type);
        const text = launcher.replace(/^#!.*/, launcherShebang()).replace("'__BUNDLE__'", JSON.stringify(`${p.type}.js`)).replace("'__BUILD__'", JSON.stringify(hash));
        await writeFile(staged, text, { mode: 0o755 });
        await chmod(staged, 0o755);
      }),
      (async () => {
        const result = await build({ ...common, metafile: true, minify: true, entryPoints: [worker.in], outfile: path.join(staging, worker.staged) });
        assertNoClusterCode('shoal-cni-worker', result.metafile);
        // The build id, computed as the daemon does (src/daemon/cni-server.ts buildIdOf).
        const buildId = createHash('sha256').update(await readFile(path.join(staging, worker.staged))).digest('hex').slice(0, 16);
        const forwarder = path.join(staging, 'cni-forward');
        buildForwarder(forwarder, buildId);
        for (const p of plugins) await copyFile(forwarder, path.join(staging, p.type));
        await rm(forwarder);
      })(),
      (async () => {
        // The CLI names the building Node too: `dist/bin/shoal` runs on Node 24 whatever PATH says.
        await build({ ...common, banner: { js: cliShebang() }, entryPoints: [cli.in], outfile: path.join(staging, cli.staged) });
        await chmod(path.join(staging, cli.staged), 0o755);
      })(),
      build({ ...common, entryPoints: [dnsWorker.in], outfile: path.join(staging, dnsWorker.staged) }),
    ]);
    const failed = settled.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    // Bundles before launchers: a launcher names its bundle's hash, so it must never be in place
    // before that bundle is. Forwarders last: they exec the launchers.
    for (const p of plugins) moves.push([path.join(staging, p.staged), p.out]);
    moves.push([path.join(staging, worker.staged), worker.out]);
    for (const p of plugins) moves.push([path.join(staging, 'shoal-node', p.type), path.join(dist, 'cni', 'shoal-node', p.type)]);
    for (const p of plugins) moves.push([path.join(staging, p.type), path.join(dist, 'cni', p.type)]);
    moves.push([path.join(staging, dnsWorker.staged), dnsWorker.out]);
    moves.push([path.join(staging, cli.staged), cli.out]);
    for (const [from, to] of moves) await rename(from, to);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
  // Code caches of earlier builds are never read again (their names carry the old hash).
  for (const f of await readdir(path.join(dist, 'cni', 'lib'))) {
    const build = f.match(/\.([0-9a-f]+)\.v8cache$/)?.[1];
    if (build && !builds.has(build)) await rm(path.join(dist, 'cni', 'lib', f), { force: true });
  }
  const built = (await readdir(path.join(dist, 'cni'))).filter((f) => f.startsWith('shoal-') && f !== 'shoal-node').sort();
  console.error(`built ${built.length} CNI plugins in dist/cni and the CLI in dist/bin/shoal`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
