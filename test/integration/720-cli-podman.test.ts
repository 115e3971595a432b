/**
 * Podman (CNI backend) on a network made by `shoal network create`: the conflist is used as is.
 * A busybox httpd container published with -p answers on 127.0.0.1, a second container reaches
 * it by name through the Shoal daemon, `shoal network inspect` lists podman's containers, and
 * `podman rm` leaves no attachment. Isolated podman root, state, run and conf dirs.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeNetworkLeftovers } from '../helpers/cli-networks.js';
import { testRunId } from '../helpers/names.js';
import { IMAGE, Podman, requirePodman } from '../e2e/helpers/podman.js';

const root = path.resolve(__dirname, '../..');
const SHOAL = path.join(root, 'dist/bin/shoal');
const ID = testRunId();
const NET = `cli7p${ID}`;
const third = 1 + Math.floor(Math.random() * 250);
const SUBNET = `10.255.${third}.0/24`;
const PORT = 40000 + Math.floor(Math.random() * 8000);
let podman: Podman;
let dir: string;
let env: NodeJS.ProcessEnv;
let daemon: ChildProcess | undefined;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function shoal(...args: string[]) {
  const r = spawnSync(process.execPath, [SHOAL, ...args], { encoding: 'utf8', timeout: 60_000, env });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('podman on a network made by shoal network create', () => {
  beforeAll(async () => {
    requirePodman();
    podman = new Podman(path.join(root, 'dist/cni'));
    podman.importBusybox();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shoal-cli7p-'));
    env = { ...process.env, SHOAL_STATE_DIR: path.join(dir, 'state'), SHOAL_RUN_DIR: path.join(dir, 'run') };
    const c = shoal('network', 'create', '--cni-conf-dir', podman.networkDir, '--subnet', SUBNET, NET);
    if (c.status !== 0) throw new Error(c.stderr);
    daemon = spawn(process.execPath, [SHOAL, 'daemon', '--metrics-addr', 'off', '--log-level', 'warn'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
    await sleep(1500);
  }, 240_000);

  afterAll(async () => {
    podman?.destroy();
    if (dir) {
      shoal('network', 'rm', '--force', NET);
      removeNetworkLeftovers([NET]);
      if (daemon?.pid) process.kill(daemon.pid, 'SIGTERM');
      await sleep(300);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('runs containers with published ports and names, and cleans up on rm', async () => {
    const ulimits = ['--ulimit', 'nproc=1024:1024', '--ulimit', 'nofile=10000:10000'];
    const web = podman.run(['run', '-d', '--name', `web${ID}`, '--network', NET, '--network-alias', 'www', '-p', `${PORT}:80`, ...ulimits, IMAGE, 'httpd', '-f', '-p', '80', '-h', '/etc'], 120_000);
    expect(web.status, web.stderr).toBe(0);
    let page = '';
    for (let i = 0; i < 20 && !page; i++) {
      page = spawnSync('timeout', ['5', 'busybox', 'wget', '-qO-', `http://127.0.0.1:${PORT}/hostname`], { encoding: 'utf8' }).stdout;
      if (!page) await sleep(200);
    }
    expect(page.trim()).not.toBe('');
    const [info] = JSON.parse(shoal('network', 'inspect', NET).stdout);
    expect(info.containers).toEqual([expect.objectContaining({ name: `web${ID}`, addresses: [expect.stringMatching(new RegExp(`^10\\.255\\.${third}\\.\\d+/24$`))] })]);

    const client = podman.run(['run', '--rm', '--network', NET, ...ulimits, IMAGE, 'sh', '-c', `timeout 5 wget -qO- http://www/hostname && timeout 5 wget -qO- http://web${ID}/hostname`], 120_000);
    expect(client.status, client.stderr).toBe(0);
    // /etc/hostname (the web container's short id) once through the alias, once through the name.
    expect(client.stdout.trim()).toMatch(/^([0-9a-f]{12})\n?\1$/);

    const rm = podman.run(['rm', '-f', '-t', '0', `web${ID}`], 120_000);
    expect(rm.status, rm.stderr).toBe(0);
    expect(JSON.parse(shoal('network', 'inspect', NET).stdout)[0].containers).toEqual([]);
  }, 300_000);
});
