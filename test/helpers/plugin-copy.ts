/**
 * A built CNI plugin copied elsewhere, as scripts/build.mjs lays it out in dist/cni: the
 * forwarder `<dir>/<type>` (native/cni-forward), the Node launcher it falls back to,
 * `<dir>/shoal-node/<type>`, and the bundle `<dir>/lib/<type>.js`. Tests run private copies
 * because other suites rebuild dist/ while they run.
 */
import { copyFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export function copyPlugin(type: string, dir: string, dist = path.join(root, 'dist')): void {
  mkdirSync(path.join(dir, 'lib'), { recursive: true });
  mkdirSync(path.join(dir, 'shoal-node'), { recursive: true });
  copyFileSync(path.join(dist, 'cni', type), path.join(dir, type));
  copyFileSync(path.join(dist, 'cni', 'shoal-node', type), path.join(dir, 'shoal-node', type));
  copyFileSync(path.join(dist, 'cni', 'lib', `${type}.js`), path.join(dir, 'lib', `${type}.js`));
}

/**
 * The variables a test passes to a plugin besides CNI_*: PATH, and SHOAL_RUN_DIR when the run
 * serves CNI requests from a daemon (SHOAL_TEST_CNI_DAEMON=1, test/integration/cni-daemon-setup.ts),
 * so the forwarders reach it; without it they find no daemon and run their Node plugin.
 */
export function pluginBaseEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env['PATH'] };
  if (process.env['SHOAL_TEST_CNI_RUN_DIR']) env['SHOAL_RUN_DIR'] = process.env['SHOAL_TEST_CNI_RUN_DIR'];
  return env;
}
