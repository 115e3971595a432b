/**
 * Podman (CNI backend) as the runtime: three busybox httpd containers run with
 * `--network-alias web` on a network made by `shoal network create` (its conflist written into
 * podman's network config dir), then `shoal service create web -p 18382:80`: 127.0.0.1:18382
 * answers round-robin over the three. Everything podman keeps lives in a temp dir.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeNetworkLeftovers } from '../helpers/cli-networks.js';
import { testRunId, uniqueName } from '../helpers/names.js';
import { requirePodman } from '../e2e/helpers/podman.js';
import { DIST, startDaemon, tempDirs, waitFor, type DaemonProc } from './daemon-helpers.js';
import { serviceReplicas, serviceSubnet, shoalCli, tally } from './service-helpers.js';

const dirs = tempDirs('520');
const NET = `sv52n${testRunId()}`;
const subnet = serviceSubnet();
const image = `localhost/${uniqueName('img')}:latest`;
const PORT = 18382;
const names = [uniqueName('web'), uniqueName('web'), uniqueName('web')];
let daemon: DaemonProc | undefined;
let env: NodeJS.ProcessEnv;
const netDir = path.join(dirs.root, 'net');

function podman(args: string[], input?: string | Buffer) {
  const base = ['--root', path.join(dirs.root, 'root'), '--runroot', path.join(dirs.root, 'runroot'), '--runtime', 'runc', '--cgroup-manager', 'cgroupfs', '--events-backend', 'none'];
  return spawnSync('podman', [...base, ...args], {
    input,
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, CONTAINERS_CONF: path.join(dirs.root, 'containers.conf'), NODE_PATH: path.resolve(DIST, '../node_modules') },
  });
}

const limits = ['--ulimit', 'nproc=1024:1024', '--ulimit', 'nofile=10000:10000'];

async function httpGet(url: string): Promise<string> {
  try {
    const res = await fetch(url, { headers: { connection: 'close' }, signal: AbortSignal.timeout(3000) });
    return (await res.text()).trim();
  } catch (err) {
    return `ERR:${(err as Error).message}`;
  }
}

beforeAll(async () => {
  requirePodman();
  const rootfs = path.join(dirs.root, 'rootfs');
  mkdirSync(path.join(rootfs, 'bin'), { recursive: true });
  copyFileSync('/bin/busybox', path.join(rootfs, 'bin/busybox'));
  for (const c of ['sh', 'httpd', 'mkdir', 'echo', 'sleep']) symlinkSync('busybox', path.join(rootfs, 'bin', c));
  mkdirSync(netDir);
  writeFileSync(path.join(dirs.root, 'containers.conf'), `[network]\nnetwork_backend="cni"\ncni_plugin_dirs=["${path.join(DIST, 'cni')}"]\nnetwork_config_dir="${netDir}"\n`);
  env = { SHOAL_STATE_DIR: dirs.state, SHOAL_RUN_DIR: dirs.run, SHOAL_CNI_CONF_DIR: netDir };
  const created = shoalCli(env, 'network', 'create', '--subnet', subnet.cidr, NET);
  expect(created.status, created.stderr).toBe(0);
  const tar = spawnSync('tar', ['-C', rootfs, '-c', '.'], { maxBuffer: 64 * 1024 * 1024 });
  const imp = podman(['import', '-', image], tar.stdout);
  if (imp.status !== 0) throw new Error(`podman import failed: ${imp.stderr}`);
  daemon = await startDaemon({ state: dirs.state, run: dirs.run });
}, 120_000);

afterAll(async () => {
  if (env) shoalCli(env, 'service', 'rm', 'web');
  podman(['rm', '-af', '-t', '0']);
  podman(['rmi', '-af']);
  await daemon?.stop();
  if (env) shoalCli(env, 'network', 'rm', '--force', NET);
  removeNetworkLeftovers([NET]);
  dirs.cleanup();
}, 120_000);

describe('520 podman containers behind a service', () => {
  it('three --network-alias web containers answer 127.0.0.1:18382 round-robin', async () => {
    for (const n of names) {
      const r = podman(['run', '-d', '--name', n, '--network', NET, '--network-alias', 'web', ...limits, image, 'sh', '-c', `mkdir -p /www && echo ${n} > /www/index.html && exec httpd -f -p 80 -h /www`]);
      expect(r.status, r.stderr).toBe(0);
    }
    const svc = shoalCli(env, 'service', 'create', 'web', '--network', NET, '-p', `${PORT}:80`, '--health-interval', '300ms');
    expect(svc.status, svc.stderr).toBe(0);
    await waitFor('three healthy replicas', async () => ((await serviceReplicas(daemon!.socket, 'web')).filter((r) => r.health === 'up').length === 3 ? true : undefined), 15_000, 50);
    const bodies: string[] = [];
    for (let i = 0; i < 30; i += 1) bodies.push(await httpGet(`http://127.0.0.1:${PORT}/`));
    const counts = tally(bodies);
    expect(Object.keys(counts).sort(), JSON.stringify(counts)).toEqual([...names].sort());
    for (const n of Object.values(counts)) expect(n).toBeGreaterThanOrEqual(7);
  }, 120_000);
});
