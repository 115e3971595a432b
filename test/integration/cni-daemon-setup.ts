/**
 * SHOAL_TEST_CNI_DAEMON=1 runs the integration files against the daemon's CNI fast path: one
 * daemon for the run, with its own temp run and state dirs, and SHOAL_TEST_CNI_RUN_DIR set for
 * the test processes, whose plugin helpers (test/helpers/plugin-copy.ts pluginBaseEnv) hand it
 * to the forwarders as SHOAL_RUN_DIR. Without the variable nothing starts and the forwarders
 * find no daemon: the same files then test the Node plugins (the fallback). The daemon is
 * stopped by its PID at the end, and the number of requests it served is printed, so a run
 * that silently fell back is visible.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export default async function setup(): Promise<(() => Promise<void>) | undefined> {
  if (process.env['SHOAL_TEST_CNI_DAEMON'] !== '1') return undefined;
  const built = spawnSync(process.execPath, [path.join(REPO, 'scripts/build.mjs')], { cwd: REPO, encoding: 'utf8' });
  if (built.status !== 0) throw new Error(`scripts/build.mjs failed:\n${built.stderr}`);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'shoal-cni-daemon-'));
  const run = path.join(tmp, 'run');
  const child = spawn(
    process.execPath,
    [path.join(REPO, 'dist/bin/shoal'), 'daemon', '--metrics-addr', 'off', '--no-firewall', '--dns-port', String(20000 + (process.pid % 20000)), '--log-level', 'debug'],
    { env: { ...process.env, SHOAL_RUN_DIR: run, SHOAL_STATE_DIR: path.join(tmp, 'state') }, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let served = 0;
  let log = '';
  child.stdout!.on('data', (d: Buffer) => {
    log += d.toString();
    const lines = log.split('\n');
    log = lines.pop() ?? '';
    served += lines.filter((l) => l.includes('"event":"cni_request"')).length;
  });
  const deadline = Date.now() + 15_000;
  while (!existsSync(path.join(run, 'cni.sock'))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error('the test CNI daemon did not come up');
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  process.env['SHOAL_TEST_CNI_RUN_DIR'] = run;
  return async () => {
    const exited = new Promise((r) => child.once('exit', r));
    if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, 'SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 8000))]);
    if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    console.error(`CNI fast-path daemon served ${served} requests`);
    rmSync(tmp, { recursive: true, force: true });
  };
}
