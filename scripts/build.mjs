#!/usr/bin/env node
// Bundles every CNI executable and the CLI into one CommonJS file each (DESIGN.md §5: start-up
// time is a product feature; one file means one read and no module resolution walk).
// Dynamic import() inside the sources becomes a lazy in-file require, so a verb loads only the
// code it needs. koffi stays external (its addon is loaded by src/kernel/koffi.ts). better-sqlite3's
// JavaScript is bundled (required from node_modules it is eight files to resolve and compile,
// ~7 ms of a plugin start-up) while its addon stays a file: src/store/sqlite.ts hands its path
// in as `nativeBinding`, so the `bindings` path prober is never called and stays out. Both
// addons are resolved from node_modules next to dist/. pino stays external too: with its helpers it is a
// third of a plugin bundle, and V8 pre-parses every byte of a bundle at start-up, while a plugin
// loads pino only when it logs (errors, or a log level below warn).
import { build } from 'esbuild';
import { chmod, mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
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
  target: 'node20',
  format: 'cjs',
  external: ['koffi', 'pino', 'bindings', '*.node'],
  banner: { js: '#!/usr/bin/env node' },
  legalComments: 'none',
  sourcemap: false,
  logLevel: 'warning',
  // Keep class names: error classes are matched by name in logs and their `name` is shown.
  keepNames: true,
  // import.meta.url has no meaning in a CJS bundle; modules that need their own location use
  // __filename through this define instead.
  define: { 'import.meta.url': 'importMetaUrl' },
  inject: [path.join(root, 'scripts/import-meta-url.js')],
};

async function main() {
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

  const entries = [
    ...CNI_TYPES.map((type) => ({ in: path.join(root, 'cni/bin', `${type}.ts`), out: path.join(dist, 'cni', type) })),
    { in: path.join(root, 'src/cli/main.ts'), out: path.join(dist, 'bin', 'shoal') },
  ];
  try {
    await Promise.all(
      entries.map(async (entry) => {
        const tmp = path.join(staging, path.basename(entry.out));
        await build({ ...common, entryPoints: [entry.in], outfile: tmp });
        await chmod(tmp, 0o755);
      }),
    );
    for (const entry of entries) await rename(path.join(staging, path.basename(entry.out)), entry.out);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
  const built = (await readdir(path.join(dist, 'cni'))).filter((f) => !f.startsWith('.')).sort();
  console.error(`built ${built.length} CNI plugins in dist/cni and the CLI in dist/bin/shoal`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
