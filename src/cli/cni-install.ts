/**
 * `shoal cni install --dir DIR`: makes the plugins available in a runtime's plugin dir, both
 * halves of each: DIR/<type> is a copy of the forwarder (native/cni-forward, a small C program
 * that hands the request to the running daemon), and DIR/shoal-node/<type> the Node plugin it
 * execs when no daemon answers. The Node bundles resolve shoal-sys (native code) from the
 * node_modules beside dist/, so a copied bundle would not load elsewhere: the installed Node
 * plugin is a two-line launcher that requires dist/cni/shoal-node/<type> from this installation.
 * It costs one extra file read, not a second Node start-up, and upgrading Shoal upgrades it.
 * The forwarder is a copy (it finds its Node plugin beside itself); rebuilding Shoal without
 * installing again leaves the old forwarders, which then fall back to the (new) Node plugins
 * whenever the daemon runs another build: slower, never wrong.
 */
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

const HELP = `Usage: shoal cni install [--dir DIR]

Install every Shoal CNI plugin into DIR (default /opt/cni/bin): the executable a runtime\nruns (it hands requests to the running daemon) and, in DIR/shoal-node, the Node plugin it\nruns when no daemon answers.
`;

/** Where the forwarder looks for its Node plugin (native/cni-forward). */
const NODE_DIR = 'shoal-node';

/** Write then rename: a runtime executing the plugin mid-install sees the old or the new file. */
function replaceFile(file: string, write: (tmp: string) => void): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}`);
  write(tmp);
  chmodSync(tmp, 0o755);
  renameSync(tmp, file);
}

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
  mkdirSync(path.join(target, NODE_DIR), { recursive: true });
  const plugins = readdirSync(source).filter((name) => name.startsWith('shoal-') && statSync(path.join(source, name)).isFile()).sort();
  for (const name of plugins) {
    // The built launcher's own first line: Node by absolute path with its one option (see
    // scripts/build.mjs), so an installed plugin starts as fast as dist/cni's.
    const nodePlugin = path.join(source, NODE_DIR, name);
    const shebang = readFileSync(nodePlugin, 'latin1').split('\n', 1)[0]!;
    // The Node plugin first: the forwarder execs it.
    replaceFile(path.join(target, NODE_DIR, name), (tmp) => writeFileSync(tmp, `${shebang}\nrequire(${JSON.stringify(nodePlugin)});\n`, { mode: 0o755 }));
    replaceFile(path.join(target, name), (tmp) => copyFileSync(path.join(source, name), tmp));
  }
  process.stdout.write(`installed ${plugins.length} plugins into ${target}: ${plugins.join(', ')}\n`);
  return 0;
}
