/**
 * `shoal run` sandboxes end to end through the built CLI and plugins, with the daemon for DNS:
 * none/host/network modes and the /etc files, a detached web server published on a host port
 * and reached by name from a second sandbox and from 127.0.0.1, ps/logs/stop, exit codes, bad
 * input and port conflicts leaving nothing behind, SIGTERM of a foreground run, kill -9 + gc.
 * Subnet 10.254.x.0/24, random high ports; every process is killed by pid in afterAll.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeNetworkLeftovers } from '../helpers/cli-networks.js';
import { testRunId } from '../helpers/names.js';

const root = path.resolve(__dirname, '../..');
const SHOAL = path.join(root, 'dist/bin/shoal');
const ID = testRunId();
const NET = `cli7r${ID}`;
const third = 1 + Math.floor(Math.random() * 250);
const SUBNET = `10.254.${third}.0/24`;
const PORT = 31000 + Math.floor(Math.random() * 8000);
let dir: string;
let env: NodeJS.ProcessEnv;
let daemon: ChildProcess | undefined;

function shoal(...args: string[]) {
  const r = spawnSync(process.execPath, [SHOAL, ...args], { encoding: 'utf8', timeout: 60_000, env });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const sandboxNetns = () => (fs.existsSync('/run/netns') ? fs.readdirSync('/run/netns') : []).filter((n) => n.startsWith('shoal-'));
const records = () => JSON.parse(shoal('ps', '-a', '--format', 'json').stdout) as Array<{ name: string; id: string; pid: number; supervisorPid: number; status: string }>;
const cacheFiles = () => (fs.existsSync(path.join(dir, 'state/cni-results')) ? fs.readdirSync(path.join(dir, 'state/cni-results')) : []);
const nftMentions = (port: number) => spawnSync('nft', ['list', 'ruleset'], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l.includes(String(port)));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function hostFetch(port: number): Promise<string> {
  for (let i = 0; i < 20; i++) {
    const r = spawnSync('timeout', ['5', 'busybox', 'wget', '-qO-', `http://127.0.0.1:${port}/`], { encoding: 'utf8' });
    if (r.status === 0) return r.stdout;
    await sleep(200);
  }
  return '';
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shoal-cli7r-'));
  env = { ...process.env, SHOAL_STATE_DIR: path.join(dir, 'state'), SHOAL_RUN_DIR: path.join(dir, 'run') };
  fs.mkdirSync(path.join(dir, 'www'));
  fs.writeFileSync(path.join(dir, 'www/index.html'), `hello ${ID}\n`);
  const c = shoal('network', 'create', '--cni-conf-dir', path.join(dir, 'conf'), '--subnet', SUBNET, NET);
  if (c.status !== 0) throw new Error(c.stderr);
  daemon = spawn(process.execPath, [SHOAL, 'daemon', '--metrics-addr', 'off', '--log-level', 'warn'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  await sleep(1500);
}, 120_000);

afterAll(async () => {
  if (!dir) return;
  for (const r of records()) {
    for (const pid of [r.pid, r.supervisorPid]) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
  await sleep(300);
  shoal('gc');
  shoal('network', 'rm', '--force', NET);
  removeNetworkLeftovers([NET]);
  if (daemon?.pid) process.kill(daemon.pid, 'SIGTERM');
  await sleep(300);
  fs.rmSync(dir, { recursive: true, force: true });
}, 120_000);

describe('shoal run', () => {
  it('--network none: loopback only, own hostname and /etc files, exit status passed through', () => {
    const r = shoal('run', '--hostname', 'boxy', '--add-host', 'db:192.0.2.9', '--', 'sh', '-c', 'hostname; cat /etc/hostname /etc/hosts; echo --links--; ls /sys/class/net; exit 3');
    expect(r.status, r.stderr).toBe(3);
    expect(r.stdout).toMatch(/^boxy\nboxy\n/);
    expect(r.stdout).toContain('192.0.2.9\tdb');
    // The sandbox's own sysfs: exactly its loopback, whatever links the host has meanwhile.
    expect(r.stdout.split('--links--\n')[1]).toBe('lo\n');
    expect(spawnSync('hostname', { encoding: 'utf8' }).stdout.trim()).not.toBe('boxy');
    expect(sandboxNetns()).toEqual([]);
    expect(shoal('run', '--', `/nonexistent-${ID}`).status).toBe(127);
  });

  it('--network host shares the host network', () => {
    const r = shoal('run', '--network', 'host', '--', 'sh', '-c', 'ls /sys/class/net | wc -l');
    expect(r.status, r.stderr).toBe(0);
    expect(Number(r.stdout.trim())).toBe(fs.readdirSync('/sys/class/net').length);
  });

  it('a detached web server is reached by name from another sandbox and on 127.0.0.1', async () => {
    const d = shoal('run', '-d', '--network', NET, '--name', `web${ID}`, '--network-alias', 'www', '-p', `${PORT}:80`, '--', 'busybox', 'httpd', '-f', '-v', '-p', '80', '-h', path.join(dir, 'www'));
    expect(d.status, d.stderr).toBe(0);
    expect(d.stdout.trim()).toMatch(/^[0-9a-f]{64}$/);
    const ps = shoal('ps');
    expect(ps.stdout).toMatch(new RegExp(`web${ID}\\s+${NET}\\s+10\\.254\\.${third}\\.\\d+/24\\s+${PORT}->80/tcp`));
    expect(shoal('port', `web${ID}`).stdout.trim()).toBe(`80/tcp -> 0.0.0.0:${PORT}`);
    let out = '';
    for (let i = 0; i < 10 && !out.includes(`hello ${ID}`); i++) {
      out = shoal('run', '--network', NET, '--', 'sh', '-c', 'cat /etc/resolv.conf; timeout 5 wget -qO- http://www/ ; timeout 5 wget -qO- http://web' + ID + '/').stdout;
      if (!out.includes(`hello ${ID}`)) await sleep(200);
    }
    expect(out).toContain(`nameserver 10.254.${third}.1`);
    expect(out.split(`hello ${ID}`)).toHaveLength(3);
    expect(await hostFetch(PORT)).toBe(`hello ${ID}\n`);
    expect(shoal('logs', `web${ID}`).stdout).toMatch(/GET|10\.254/);
  }, 60_000);

  it('-p without a host port gets a free ephemeral one; a host range skips a port a host socket holds', async () => {
    // A host listener on the first port of the range: the choice must go past it.
    const first = PORT + 10;
    const holder = net.createServer();
    await new Promise<void>((ok, fail) => holder.once('error', fail).listen(first, '127.0.0.1', ok));
    try {
      const d = shoal('run', '-d', '--network', NET, '--name', `rnd${ID}`, '-p', '80', '-p', `${first}-${first + 5}:80/tcp`, '--', 'busybox', 'httpd', '-f', '-p', '80', '-h', path.join(dir, 'www'));
      expect(d.status, d.stderr).toBe(0);
      const ports = shoal('port', `rnd${ID}`).stdout.trim().split('\n');
      expect(ports).toHaveLength(2);
      const chosen = ports.map((l) => Number(/^80\/tcp -> 0\.0\.0\.0:(\d+)$/.exec(l)?.[1]));
      const [lo, hi] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
      const ephemeral = chosen.find((p) => p < first || p > first + 5)!;
      expect(ephemeral).toBeGreaterThanOrEqual(lo!);
      expect(ephemeral).toBeLessThanOrEqual(hi!);
      expect(chosen).toContain(first + 1);
      expect(await hostFetch(ephemeral)).toBe(`hello ${ID}\n`);
      expect(await hostFetch(first + 1)).toBe(`hello ${ID}\n`);
      expect(shoal('stop', '-t', '2', `rnd${ID}`).status).toBe(0);
      expect(nftMentions(ephemeral)).toEqual([]);
    } finally {
      holder.close();
    }
  }, 60_000);

  it('bad input and port conflicts leave nothing behind', () => {
    const before = { ns: sandboxNetns(), cache: cacheFiles(), recs: records().length };
    const bad = shoal('run', '--network', NET, '-p', '80:80/icmp', '--', 'true');
    expect(bad.status).toBe(2);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/invalid port spec "80:80\/icmp"/);
    const unknown = shoal('run', '--network', `nosuch${ID}`, '--', 'true');
    expect(unknown.status).toBe(125);
    expect(unknown.stderr.trim()).toBe(`shoal run: network "nosuch${ID}" not found`);
    const taken = shoal('run', '--network', NET, '--name', `web${ID}`, '--', 'true');
    expect(taken.status).toBe(125);
    expect(taken.stderr).toMatch(/already in use/);
    const conflict = shoal('run', '--network', NET, '-p', `${PORT}:81`, '--', 'true');
    expect(conflict.status).toBe(125);
    expect(conflict.stderr).toMatch(new RegExp(`${PORT}/tcp is already published`));
    expect({ ns: sandboxNetns(), cache: cacheFiles(), recs: records().length }).toEqual(before);
  }, 60_000);

  it('stop detaches the sandbox and removes its rules, address and netns', () => {
    const s = shoal('stop', '-t', '2', `web${ID}`);
    expect(s.status, s.stderr).toBe(0);
    expect(records().find((r) => r.name === `web${ID}`)?.status).toBe('exited');
    expect(sandboxNetns()).toEqual([]);
    expect(cacheFiles()).toEqual([]);
    expect(nftMentions(PORT)).toEqual([]);
    expect(JSON.parse(shoal('network', 'inspect', NET).stdout)[0].containers).toEqual([]);
  }, 60_000);

  it('SIGTERM to a foreground run cleans up', async () => {
    const child = spawn(process.execPath, [SHOAL, 'run', '--network', NET, '-p', `${PORT + 1}:80`, '--', 'sleep', '60'], { env, stdio: 'ignore' });
    for (let i = 0; i < 100 && !records().some((r) => r.status === 'running'); i++) await sleep(100);
    expect(sandboxNetns()).toHaveLength(1);
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    expect(code).toBe(143);
    expect(sandboxNetns()).toEqual([]);
    expect(cacheFiles()).toEqual([]);
    expect(nftMentions(PORT + 1)).toEqual([]);
  }, 60_000);

  it('gc cleans up after kill -9 of a sandbox and its supervisor', async () => {
    const d = shoal('run', '-d', '--network', NET, '--name', `k9${ID}`, '-p', `${PORT + 2}:80`, '--', 'sleep', '600');
    expect(d.status, d.stderr).toBe(0);
    const rec = records().find((r) => r.name === `k9${ID}`)!;
    process.kill(rec.supervisorPid, 'SIGKILL');
    process.kill(rec.pid, 'SIGKILL');
    await sleep(300);
    expect(nftMentions(PORT + 2).length).toBeGreaterThan(0);
    const g = shoal('gc');
    expect(g.status, g.stderr).toBe(0);
    expect(g.stdout).toContain(`removed sandbox k9${ID}`);
    expect(sandboxNetns()).toEqual([]);
    expect(cacheFiles()).toEqual([]);
    expect(nftMentions(PORT + 2)).toEqual([]);
    expect(JSON.parse(shoal('network', 'inspect', NET).stdout)[0].containers).toEqual([]);
    expect(records().find((r) => r.name === `k9${ID}`)).toBeUndefined();
  }, 60_000);
});
