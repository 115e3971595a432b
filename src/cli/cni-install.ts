/**
 * `shoal cni install --dir DIR`: makes the plugins available in a runtime's plugin dir.
 * The bundles resolve shoal-sys and better-sqlite3 (native code) from the node_modules beside
 * dist/, so a copied bundle would not load elsewhere. Instead each installed file is a two-line
 * launcher that requires the bundle from this installation: it costs one extra file read, not a
 * second Node start-up, and upgrading Shoal upgrades the installed plugins.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

const HELP = `Usage: shoal cni install [--dir DIR]

Install launchers for every Shoal CNI plugin into DIR (default /opt/cni/bin).
`;

export function bundledPluginDir(): string {
  // In the bundle this file is dist/bin/shoal; the plugins are in dist/cni.
  return path.resolve(path.dirname(process.argv[1] ?? '.'), '..', 'cni');
}

export async function run(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === '--help' || sub === '-h' || sub === undefined) {
    process.stdout.write(HELP);
    return sub === undefined ? 2 : 0;
  }
  if (sub !== 'install') {
    process.stderr.write(`shoal cni: unknown subcommand "${sub}"; only "install" exists\n`);
    return 2;
  }
  const { values } = parseArgs({ args: rest, options: { dir: { type: 'string', default: '/opt/cni/bin' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const source = bundledPluginDir();
  if (!existsSync(source)) {
    process.stderr.write(`shoal cni install: no built plugins in "${source}"; run "npm run build" first\n`);
    return 1;
  }
  const target = path.resolve(values.dir);
  mkdirSync(target, { recursive: true });
  const plugins = readdirSync(source).filter((name) => name.startsWith('shoal-')).sort();
  for (const name of plugins) {
    // The built launcher's own first line: Node by absolute path with its one option (see
    // scripts/build.mjs), so an installed plugin starts as fast as dist/cni's.
    const shebang = readFileSync(path.join(source, name), 'latin1').split('\n', 1)[0]!;
    const launcher = `${shebang}\nrequire(${JSON.stringify(path.join(source, name))});\n`;
    // Write then rename: a runtime executing the plugin mid-install sees the old or the new file.
    const tmp = path.join(target, `.${name}.tmp-${process.pid}`);
    writeFileSync(tmp, launcher, { mode: 0o755 });
    chmodSync(tmp, 0o755);
    renameSync(tmp, path.join(target, name));
  }
  process.stdout.write(`installed ${plugins.length} plugins into ${target}: ${plugins.join(', ')}\n`);
  return 0;
}
