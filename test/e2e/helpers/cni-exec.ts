/**
 * Runs the built CNI executables the way a runtime does (env + stdin, one process per call),
 * for the 1xx L2 integration tests, the podman e2e test and the benchmark's checks.
 *
 * The tests run private copies of the bundles: other suites rebuild dist/ (rm -rf first) while
 * these run. NODE_PATH lets the copies find shoal-sys (external to the bundles).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { copyPlugin, pluginBaseEnv } from '../../helpers/plugin-copy.js';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const REFERENCE_CNI_DIR = '/usr/lib/cni';
export const CNI_VERSIONS = ['0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;

function newestMtime(p: string): number {
  const st = statSync(p);
  if (!st.isDirectory()) return st.mtimeMs;
  let newest = 0;
  for (const entry of readdirSync(p)) newest = Math.max(newest, newestMtime(path.join(p, entry)));
  return newest;
}

/**
 * Builds dist/ when a source is newer than the bundles, then copies `types` to a private dir
 * (under `parent`, default the system temp dir). A package.json there marks the extension-less
 * bundles as CommonJS, as dist/package.json does.
 */
export function privateBundles(types: string[], parent = os.tmpdir()): { dir: string; remove(): void } {
  const sources = Math.max(...['cni', 'src'].map((p) => newestMtime(path.join(root, p))));
  const stale = types.some((t) => !existsSync(path.join(root, 'dist/cni', t)) || statSync(path.join(root, 'dist/cni', t)).mtimeMs <= sources);
  if (stale) {
    const build = spawnSync(process.execPath, [path.join(root, 'scripts/build.mjs')], { cwd: root, encoding: 'utf8' });
    if (build.status !== 0) throw new Error(`build failed: ${build.stderr}`);
  }
  mkdirSync(parent, { recursive: true });
  const dir = mkdtempSync(path.join(parent, 'shoal-l2-bin-'));
  writeFileSync(path.join(dir, 'package.json'), '{"type":"commonjs"}\n');
  // Each plugin is a forwarder, a Node launcher and its bundle (scripts/build.mjs).
  for (const t of types) copyPlugin(t, dir);
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface CniCall {
  command: 'ADD' | 'DEL' | 'CHECK' | 'STATUS' | 'GC' | 'VERSION';
  containerId?: string;
  netns?: string;
  ifname?: string;
  cniArgs?: string;
  /** CNI_PATH directories. */
  path: string[];
  config: Record<string, unknown>;
}

export interface CniRun {
  code: number | null;
  stdout: string;
  stderr: string;
  json?: Record<string, unknown>;
}

/** Runs one CNI executable with a runtime's environment and stdin. */
export function execCni(executable: string, call: CniCall, args: string[] = []): Promise<CniRun> {
  const env: NodeJS.ProcessEnv = {
    ...pluginBaseEnv(),
    NODE_PATH: path.join(root, 'node_modules'),
    CNI_COMMAND: call.command,
    CNI_PATH: call.path.join(':'),
  };
  if (call.containerId !== undefined) env['CNI_CONTAINERID'] = call.containerId;
  if (call.netns !== undefined) env['CNI_NETNS'] = call.netns;
  if (call.ifname !== undefined) env['CNI_IFNAME'] = call.ifname;
  if (call.cniArgs !== undefined) env['CNI_ARGS'] = call.cniArgs;
  return new Promise((resolve, reject) => {
    const child = spawn(executable, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      let json: Record<string, unknown> | undefined;
      try {
        json = stdout.trim() ? (JSON.parse(stdout) as Record<string, unknown>) : undefined;
      } catch {
        json = undefined;
      }
      resolve({ code, stdout, stderr, json });
    });
    child.stdin.end(JSON.stringify(call.config));
  });
}

/** iputils `ping` when installed, else busybox's applet (busybox-static is a test dependency). */
const PING: string[] = spawnSync('sh', ['-c', 'command -v ping'], { stdio: 'ignore' }).status === 0 ? ['ping'] : ['busybox', 'ping'];

/** `ip netns exec <ns> ping -c1 -W1 <addr>`: true when one reply came back. */
export function ping(netnsName: string, address: string, count = 1): boolean {
  const res = spawnSync('ip', ['netns', 'exec', netnsName, ...PING, '-c', String(count), '-W', '1', address], { stdio: 'ignore', timeout: 10_000 });
  return res.status === 0;
}

/** Pings until one succeeds or `tries` are used (the first packet may wait for ARP/ND). */
export function pingEventually(netnsName: string, address: string, tries = 3): boolean {
  for (let i = 0; i < tries; i++) if (ping(netnsName, address)) return true;
  return false;
}

/** `nft -j list ruleset` rules of Shoal tables whose comment starts with `prefix`. */
export function shoalRulesOwnedBy(prefix: string): Array<{ table: string; family: string; chain: string; comment: string }> {
  const res = spawnSync('nft', ['-j', 'list', 'ruleset'], { encoding: 'utf8' });
  const items = (JSON.parse(res.stdout || '{"nftables":[]}') as { nftables: Array<Record<string, Record<string, unknown>>> }).nftables;
  const out: Array<{ table: string; family: string; chain: string; comment: string }> = [];
  for (const item of items) {
    const r = item['rule'];
    if (!r || typeof r['comment'] !== 'string' || !String(r['table']).startsWith('shoal')) continue;
    if ((r['comment'] as string).startsWith(prefix)) out.push({ table: String(r['table']), family: String(r['family']), chain: String(r['chain']), comment: r['comment'] as string });
  }
  return out;
}
