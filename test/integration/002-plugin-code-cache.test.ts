/**
 * The plugin launcher's V8 code cache (scripts/plugin-launcher.cjs): the first run of a verb
 * leaves a cache named after the build, later runs are fed it, a cache V8 refuses is replaced,
 * and none of it changes what the plugin prints. Runs VERSION, IPAM and one bridge ADD (its own
 * netns and bridge) from a private copy of the launcher and bundle, so dist/cni/lib is left alone.
 * The launcher is run directly (dist/cni/<type>, the forwarder, execs it when no daemon answers).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KernelObjects } from '../helpers/kernel-objects.js';
import { copyPlugin } from '../helpers/plugin-copy.js';

const ROOT = resolve(import.meta.dirname, '../..');
/** The Node launcher itself (dist/cni/shoal-node/<type>): the forwarder in front of it is not under test here. */
const launcher = (type: string) => join(dir, 'shoal-node', type);
const objects = new KernelObjects('cc');
let dir: string;

beforeAll(() => {
  const built = spawnSync(process.execPath, [join(ROOT, 'scripts/build.mjs')], { cwd: ROOT, encoding: 'utf8' });
  if (built.status !== 0) throw new Error(`scripts/build.mjs failed:\n${built.stderr}`);
  // Under node_modules, so the bundle finds better-sqlite3 and pino the way dist/cni does.
  mkdirSync(join(ROOT, 'node_modules/.cache'), { recursive: true });
  dir = mkdtempSync(join(ROOT, 'node_modules/.cache/shoal-code-cache-'));
  writeFileSync(join(dir, 'package.json'), '{"type":"commonjs"}\n');
  copyPlugin('shoal-ipam', dir);
}, 120_000);

afterAll(() => {
  objects.cleanup();
  if (dir) {
    chmodSync(join(dir, 'lib'), 0o755);
    rmSync(dir, { recursive: true, force: true });
  }
});

function version(extraEnv: Record<string, string> = {}) {
  const res = spawnSync(launcher('shoal-ipam'), [], {
    cwd: tmpdir(),
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', CNI_COMMAND: 'VERSION', SHOAL_CODE_CACHE: 'debug', ...extraEnv },
  });
  const status = /shoal code cache: (absent|accepted|rejected)/.exec(res.stderr)?.[1];
  return { code: res.status, stdout: res.stdout, stderr: res.stderr, status, wrote: res.stderr.includes('shoal code cache: wrote') };
}

const caches = () => readdirSync(join(dir, 'lib')).filter((f) => f.endsWith('.v8cache'));
const build = () => /const BUILD = "([0-9a-f]+)"/.exec(readFileSync(launcher('shoal-ipam'), 'utf8'))?.[1];

describe('plugin launcher', () => {
  it('starts the Node that built it by path, so a runtime PATH without node still runs the plugin', () => {
    expect(readFileSync(launcher('shoal-ipam'), 'utf8').split('\n', 1)[0]).toBe(`#!${process.execPath} --min-semi-space-size=2`);
    const res = version({ PATH: '/nonexistent', SHOAL_CODE_CACHE: 'off' });
    expect(res.code, res.stderr).toBe(0);
    expect(JSON.parse(res.stdout).supportedVersions).toContain('1.1.0');
  });
});

describe('plugin launcher code cache', () => {
  it('the first run of a verb writes a cache named after verb and build; the next run is fed it', () => {
    const first = version();
    expect(first.code).toBe(0);
    expect(first.status).toBe('absent');
    expect(first.wrote).toBe(true);
    expect(caches()).toEqual([`shoal-ipam.js.VERSION.${build()}.v8cache`]);

    const second = version();
    expect(second.status).toBe('accepted');
    expect(second.wrote).toBe(false);
    expect(second.stdout).toBe(first.stdout);
    expect(JSON.parse(second.stdout)).toMatchObject({ supportedVersions: expect.arrayContaining(['0.3.1', '1.1.0']) });
  });

  it('a cache V8 refuses (not its format) is replaced after a run that still succeeds', () => {
    const [file] = caches();
    writeFileSync(join(dir, 'lib', file!), Buffer.alloc(4096, 0x5a));
    const run = version();
    expect(run.code).toBe(0);
    expect(run.status).toBe('rejected');
    expect(run.wrote).toBe(true);
    expect(version().status).toBe('accepted');
  });

  it('SHOAL_CODE_CACHE=off neither reads nor writes a cache', () => {
    for (const f of caches()) rmSync(join(dir, 'lib', f));
    const run = version({ SHOAL_CODE_CACHE: 'off' });
    expect(run.code).toBe(0);
    expect(run.stderr).toBe('');
    expect(caches()).toEqual([]);
  });

  it('a directory it cannot write only costs the cache: same output, nothing left behind', () => {
    // As root, permission bits do not stop a write; a read-only bind mount would. Use a file in
    // the way instead: the launcher's rename target is a directory, so the write fails.
    const target = join(dir, 'lib', `shoal-ipam.js.VERSION.${build()}.v8cache`);
    mkdirSync(target);
    const run = version();
    expect(run.code).toBe(0);
    expect(run.wrote).toBe(false);
    expect(JSON.parse(run.stdout)).toHaveProperty('supportedVersions');
    expect(readdirSync(join(dir, 'lib')).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    rmSync(target, { recursive: true });
  });

  it('the bundles import() nothing (Node 20 drops the import() hook of a script from a code cache)', () => {
    for (const f of readdirSync(join(ROOT, 'dist/cni/lib')).filter((n) => n.endsWith('.js'))) {
      expect({ bundle: f, dynamicImports: readFileSync(join(ROOT, 'dist/cni/lib', f), 'utf8').match(/[^\w$.]import\(/g) ?? [] }).toEqual({ bundle: f, dynamicImports: [] });
    }
  });

  it('a real ADD and DEL with a debug log level log through pino, also when restored from the cache', () => {
    const state = join(dir, 'state');
    const conf = JSON.stringify({ cniVersion: '1.0.0', name: 'codecache', type: 'shoal-ipam', logLevel: 'debug', ipam: { type: 'shoal-ipam', subnet: '10.236.77.0/24', stateDir: state } });
    const call = (command: string, id: string) => {
      const res = spawnSync(launcher('shoal-ipam'), [], {
        encoding: 'utf8',
        input: conf,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', SHOAL_CODE_CACHE: 'debug', CNI_COMMAND: command, CNI_CONTAINERID: id, CNI_NETNS: '/run/netns/unused', CNI_IFNAME: 'eth0', CNI_PATH: dir },
      });
      expect(res.stderr).not.toContain('logging failed');
      expect(res.status).toBe(0);
      const logged = res.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { command?: string });
      expect(logged.some((r) => r.command === command)).toBe(true);
      return /shoal code cache: (\w+)/.exec(res.stderr)?.[1];
    };
    expect(call('ADD', 'cc1')).toBe('absent');
    expect(call('DEL', 'cc1')).toBe('absent');
    expect(call('ADD', 'cc2')).toBe('accepted');
    expect(call('DEL', 'cc2')).toBe('accepted');
  });

  it('a bridge ADD (libc bound, so it leaves through _exit) still writes its cache first, and its exit codes hold', () => {
    copyPlugin('shoal-bridge', dir);
    const ns = objects.netns();
    const bridge = objects.linkName();
    const conf = JSON.stringify({ cniVersion: '1.0.0', name: 'codecachebr', type: 'shoal-bridge', bridge, isGateway: true, ipam: { type: 'shoal-ipam', subnet: '10.236.78.0/24', stateDir: join(dir, 'brstate') } });
    const call = (command: string, id: string) =>
      spawnSync(launcher('shoal-bridge'), [], {
        encoding: 'utf8',
        input: conf,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', SHOAL_CODE_CACHE: 'debug', CNI_COMMAND: command, CNI_CONTAINERID: id, CNI_NETNS: ns.path, CNI_IFNAME: 'eth0', CNI_PATH: dir },
      });
    const first = call('ADD', 'br1');
    expect(first.status, first.stderr).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({ ips: [expect.objectContaining({ address: '10.236.78.2/24' })] });
    expect(first.stderr).toContain('shoal code cache: wrote');
    expect(caches()).toContain(`shoal-bridge.js.ADD.${/const BUILD = "([0-9a-f]+)"/.exec(readFileSync(launcher('shoal-bridge'), 'utf8'))?.[1]}.v8cache`);
    // A second ADD of another container into the same netns and ifname fails after the addon is
    // loaded: exit status 1 and the spec's JSON error, through the same fast exit.
    const clash = call('ADD', 'br2');
    expect(clash.stderr).toContain('shoal code cache: accepted');
    expect(clash.status).toBe(1);
    expect(JSON.parse(clash.stdout)).toMatchObject({ msg: expect.stringContaining('eth0') });
    expect(call('DEL', 'br2').status).toBe(0);
    expect(call('DEL', 'br1').status).toBe(0);
  });

  it('a plugin that fails leaves no cache (the cache is made from a successful run)', () => {
    for (const f of caches()) rmSync(join(dir, 'lib', f));
    const res = spawnSync(launcher('shoal-ipam'), [], {
      encoding: 'utf8',
      input: '{not json',
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'x', CNI_NETNS: '/run/netns/none', CNI_IFNAME: 'eth0', CNI_PATH: dir },
    });
    expect(res.status).not.toBe(0);
    expect(JSON.parse(res.stdout)).toMatchObject({ code: 6 });
    expect(caches().filter((f) => f.includes('.ADD.'))).toEqual([]);
  });
});
