import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { copyPlugin, pluginBaseEnv } from '../helpers/plugin-copy.js';

/** Helpers for the 2xx-ipam integration tests: the real `dist/cni/shoal-ipam`, run as a process. */

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const builtBin = path.join(root, 'dist/cni/shoal-ipam');
/**
 * The tests run a private copy of the bundle: other suites rebuild dist/ (rm -rf first) while
 * these run, and a plugin vanishing mid-test would look like a crash. NODE_PATH lets the copy
 * find shoal-sys, which stays external to the bundle.
 */
let copyDir: string | undefined;
export let ipamBin = builtBin;

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(full) : statSync(full).mtimeMs);
  }
  return newest;
}

/** Builds the bundles unless dist/cni/shoal-ipam is newer than every source it is made of. */
export function ensureBuilt(): void {
  const sources = Math.max(...['cni', 'src/ipam', 'src/store', 'src/errors.ts'].map((p) => {
    const full = path.join(root, p);
    return statSync(full).isDirectory() ? newestMtime(full) : statSync(full).mtimeMs;
  }));
  if (!existsSync(builtBin) || statSync(builtBin).mtimeMs <= sources) {
    const build = spawnSync(process.execPath, [path.join(root, 'scripts/build.mjs')], { cwd: root, encoding: 'utf8' });
    if (build.status !== 0) throw new Error(`build failed: ${build.stderr}`);
  }
  copyDir ??= mkdtempSync(path.join(os.tmpdir(), 'shoal-ipam-bin-'));
  ipamBin = path.join(copyDir, 'shoal-ipam');
  copyPlugin('shoal-ipam', copyDir);
}

/** Removes the private copy (afterAll). */
export function removeBuiltCopy(): void {
  if (copyDir) rmSync(copyDir, { recursive: true, force: true });
  copyDir = undefined;
  ipamBin = builtBin;
}

export interface PluginRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** stdout parsed, when it is JSON. */
  json?: Record<string, unknown>;
}

export interface PluginCall {
  command: 'ADD' | 'DEL' | 'CHECK' | 'GC' | 'STATUS';
  containerId?: string;
  ifname?: string;
  cniArgs?: string;
  config: Record<string, unknown>;
}

export function startPlugin(call: PluginCall): { child: ChildProcess; done: Promise<PluginRun> } {
  const env: NodeJS.ProcessEnv = {
    ...pluginBaseEnv(),
    NODE_PATH: path.join(root, 'node_modules'),
    CNI_COMMAND: call.command,
    CNI_PATH: path.dirname(ipamBin),
  };
  if (call.containerId) env['CNI_CONTAINERID'] = call.containerId;
  if (call.command === 'ADD' || call.command === 'CHECK') env['CNI_NETNS'] = '/var/run/netns/none';
  if (call.command !== 'GC' && call.command !== 'STATUS') env['CNI_IFNAME'] = call.ifname ?? 'eth0';
  if (call.cniArgs) env['CNI_ARGS'] = call.cniArgs;
  const child = spawn(ipamBin, [], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  // A killed child closes stdin under us: that is expected in the crash tests.
  child.stdin!.on('error', () => undefined);
  child.stdin!.end(JSON.stringify(call.config));
  const done = new Promise<PluginRun>((resolve) => {
    // Without this a failed spawn (ENOENT) never settles and the test hangs until its timeout.
    child.on('error', (err) => resolve({ code: -1, signal: null, stdout, stderr: `${stderr}spawn failed: ${err.message}` }));
    child.on('close', (code, signal) => {
      const run: PluginRun = { code, signal, stdout, stderr };
      try {
        if (stdout.trim()) run.json = JSON.parse(stdout) as Record<string, unknown>;
      } catch {
        // left as text; the test will show it
      }
      resolve(run);
    });
  });
  return { child, done };
}

export function runPlugin(call: PluginCall): Promise<PluginRun> {
  return startPlugin(call).done;
}

/** A network config in `cniVersion` using shoal-ipam with `ipam` fields and the given state dir. */
export function netconf(stateDir: string, ipam: Record<string, unknown>, extra: Record<string, unknown> = {}, cniVersion = '1.1.0'): Record<string, unknown> {
  return { cniVersion, name: 'ipamtest', type: 'shoal-ipam', ipam: { type: 'shoal-ipam', stateDir, ...ipam }, ...extra };
}
