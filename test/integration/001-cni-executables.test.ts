/**
 * The bundled CNI executables as a runtime sees them: run from another working directory with
 * only the CNI_* variables and PATH, JSON on stdout and nothing else, a non-zero exit on error.
 * Needs no root and no kernel objects.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pluginBaseEnv } from '../helpers/plugin-copy.js';

const ROOT = resolve(import.meta.dirname, '../..');
const TYPES = ['shoal-bridge', 'shoal-macvlan', 'shoal-ipvlan', 'shoal-vxlan', 'shoal-ipam', 'shoal-portmap', 'shoal-dns'];
const VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];

let binDir: string;
let cwd: string;

/** The real build (scripts/build.mjs, the bundling half of `npm run build`). */
beforeAll(async () => {
  cwd = await mkdtemp(join(tmpdir(), 'shoal-cni-cwd-'));
  const built = spawnSync(process.execPath, [join(ROOT, 'scripts/build.mjs')], { cwd: ROOT, encoding: 'utf8' });
  if (built.status !== 0) throw new Error(`scripts/build.mjs failed:\n${built.stderr}`);
  binDir = join(ROOT, 'dist/cni');
}, 120_000);

afterAll(async () => {
  await rm(cwd, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(type: string, env: Record<string, string>, stdin = ''): Promise<Run> {
  return new Promise((done, fail) => {
    const child = spawn(join(binDir, type), [], { cwd, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...pluginBaseEnv(), ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', fail);
    child.on('close', (code) => done({ code, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

/** stdout must be exactly one JSON document: no logs, no stack traces. */
function onlyJson(r: Run): Record<string, unknown> {
  expect(r.stdout.trim().split('\n')).toHaveLength(1);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

const ADD_ENV = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'itest1', CNI_NETNS: '/var/run/netns/none', CNI_IFNAME: 'eth0', CNI_PATH: '/nonexistent' };
const conf = (cniVersion: string) => JSON.stringify({ cniVersion, name: 'itest', type: 'shoal-bridge' });

describe.each(TYPES)('%s', (type) => {
  it('is an executable file', () => {
    expect(existsSync(join(binDir, type))).toBe(true);
  });

  it('VERSION with empty stdin lists all five versions', async () => {
    const r = await run(type, { CNI_COMMAND: 'VERSION' });
    expect(r.code).toBe(0);
    expect(onlyJson(r)).toEqual({ cniVersion: '1.1.0', supportedVersions: VERSIONS });
  });

  it('VERSION answers in each requested version', async () => {
    const runs = await Promise.all(VERSIONS.map((v) => run(type, { CNI_COMMAND: 'VERSION' }, JSON.stringify({ cniVersion: v }))));
    expect(runs.map((r) => onlyJson(r).cniVersion)).toEqual(VERSIONS);
    expect(runs.every((r) => r.code === 0)).toBe(true);
  });

  it('bad JSON is code 6', async () => {
    const r = await run(type, ADD_ENV, '{"cniVersion": ');
    expect(r.code).not.toBe(0);
    expect(onlyJson(r)).toMatchObject({ code: 6 });
  });

  it('missing CNI_COMMAND is code 4 naming it', async () => {
    const r = await run(type, {}, conf('1.0.0'));
    expect(r.code).not.toBe(0);
    expect(onlyJson(r)).toMatchObject({ code: 4, msg: expect.stringContaining('CNI_COMMAND') });
  });

  it('missing CNI_CONTAINERID is code 4 naming it', async () => {
    const { CNI_CONTAINERID: _omit, ...env } = ADD_ENV;
    const r = await run(type, env, conf('1.0.0'));
    expect(r.code).not.toBe(0);
    expect(onlyJson(r)).toMatchObject({ code: 4, msg: expect.stringContaining('CNI_CONTAINERID') });
  });

  it('an unsupported version is code 1 naming it', async () => {
    const r = await run(type, ADD_ENV, conf('0.2.0'));
    expect(r.code).not.toBe(0);
    const json = onlyJson(r);
    expect(json).toMatchObject({ code: 1, msg: expect.stringContaining('0.2.0') });
    expect(Object.keys(json).sort()).toEqual(['cniVersion', 'code', 'details', 'msg']);
  });
});

describe('shoal-vxlan', () => {
  it('ADD without a vni is code 7 naming the field, before touching anything; DEL of the same config succeeds silently', async () => {
    const config = JSON.stringify({ cniVersion: '1.0.0', name: 'itest', type: 'shoal-vxlan', stateDir: cwd, ipam: { type: 'shoal-ipam', subnet: '10.197.0.0/24' } });
    const add = await run('shoal-vxlan', ADD_ENV, config);
    expect(add.code).not.toBe(0);
    expect(onlyJson(add)).toMatchObject({ cniVersion: '1.0.0', code: 7, msg: 'invalid network config: field "vni" is required' });
    // A runtime cleans up after the refused ADD with the same config: that DEL must succeed.
    const del = await run('shoal-vxlan', { ...ADD_ENV, CNI_COMMAND: 'DEL' }, config);
    expect(del.code, del.stdout + del.stderr).toBe(0);
    expect(del.stdout).toBe('');
  });
});
