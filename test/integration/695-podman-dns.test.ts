/**
 * Real runtime: podman 4 (CNI backend) with shoal-bridge + shoal-ipam + shoal-dns from dist/cni
 * and the daemon from dist/bin. A busybox container resolves another by container name and by
 * `--network-alias` with nslookup; removing the container removes its name.
 * Everything podman keeps (root, runroot, network config) lives in a temp dir.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, symlinkSync, copyFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { watchContainer, type Watch } from '../helpers/continuity.js';
import { ipQuiet } from '../helpers/kernel-objects.js';
import { uniqueName } from '../helpers/names.js';
import { requirePodman } from '../e2e/helpers/podman.js';
import { DIST, startDaemon, tempDirs, testSubnet, waitFor, type DaemonProc } from './daemon-helpers.js';

const dirs = tempDirs('695');
const netName = uniqueName('pn');
const bridge = uniqueName('pb');
const subnet = testSubnet();
const image = `localhost/${uniqueName('img')}:latest`;
const nameB = uniqueName('cb');
let daemon: DaemonProc | undefined;
let watch: Watch | undefined;

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

beforeAll(async () => {
  requirePodman();
  const rootfs = path.join(dirs.root, 'rootfs');
  mkdirSync(path.join(rootfs, 'bin'), { recursive: true });
  copyFileSync('/bin/busybox', path.join(rootfs, 'bin/busybox'));
  for (const c of ['sh', 'nslookup', 'sleep', 'cat']) symlinkSync('busybox', path.join(rootfs, 'bin', c));
  const netDir = path.join(dirs.root, 'net');
  mkdirSync(netDir);
  writeFileSync(
    path.join(dirs.root, 'containers.conf'),
    `[network]\nnetwork_backend="cni"\ncni_plugin_dirs=["${path.join(DIST, 'cni')}"]\nnetwork_config_dir="${netDir}"\n`,
  );
  writeFileSync(
    path.join(netDir, `${netName}.conflist`),
    JSON.stringify({
      cniVersion: '0.4.0',
      name: netName,
      plugins: [
        {
          type: 'shoal-bridge', bridge, isGateway: true, ipMasq: false, stateDir: dirs.state,
          ipam: { type: 'shoal-ipam', ranges: [[{ subnet: subnet.cidr, gateway: subnet.gateway }]], routes: [{ dst: '0.0.0.0/0' }] },
        },
        { type: 'shoal-dns', stateDir: dirs.state, domainName: 'pm.shoal', capabilities: { aliases: true } },
      ],
    }),
  );
  const tar = spawnSync('tar', ['-C', rootfs, '-c', '.'], { maxBuffer: 64 * 1024 * 1024 });
  const imp = podman(['import', '-', image], tar.stdout);
  if (imp.status !== 0) throw new Error(`podman import failed: ${imp.stderr}`);
  daemon = await startDaemon({ state: dirs.state, run: dirs.run });
}, 90_000);

afterAll(async () => {
  watch?.kill();
  podman(['rm', '-af', '-t', '0']);
  podman(['rmi', '-af']);
  await daemon?.stop();
  ipQuiet(['link', 'del', 'dev', bridge]);
  dirs.cleanup();
}, 90_000);

describe('695 podman resolves containers through shoal-dns and the daemon', () => {
  it('resolves B by container name and by --network-alias with nslookup', async () => {
    const b = podman(['run', '-d', '--name', nameB, '--network', netName, '--network-alias', 'bee', ...limits, image, 'sleep', '120']);
    expect(b.status, b.stderr).toBe(0);
    const bIp = podman(['inspect', '-f', `{{(index .NetworkSettings.Networks "${netName}").IPAddress}}`, nameB]).stdout.trim();
    expect(bIp.startsWith(subnet.prefix)).toBe(true);
    const a = podman(['run', '--rm', '--network', netName, ...limits, image, 'sh', '-c', `cat /etc/resolv.conf; nslookup ${nameB}; nslookup bee`]);
    expect(a.status, `${a.stdout}${a.stderr}`).toBe(0);
    expect(a.stdout).toContain(`nameserver ${subnet.gateway}`);
    expect(a.stdout).toContain('search pm.shoal');
    expect(a.stdout).toMatch(new RegExp(`Name:\\s+${nameB}\\.pm\\.shoal\\s+Address:\\s+${bIp.replace(/\./g, '\\.')}`));
    expect(a.stdout).toMatch(new RegExp(`Name:\\s+bee\\.pm\\.shoal\\s+Address:\\s+${bIp.replace(/\./g, '\\.')}`));
  }, 90_000);

  it('podman run and rm of neighbours do not interrupt a running container\'s pings and lookups through the gateway', async () => {
    const names = { steady: uniqueName('cs'), watched: uniqueName('cw') };
    for (const n of Object.values(names)) {
      const r = podman(['run', '-d', '--name', n, '--network', netName, ...limits, image, 'sleep', '120']);
      expect(r.status, r.stderr).toBe(0);
    }
    const steadyIp = podman(['inspect', '-f', `{{(index .NetworkSettings.Networks "${netName}").IPAddress}}`, names.steady]).stdout.trim();
    const sandbox = podman(['inspect', '-f', '{{.NetworkSettings.SandboxKey}}', names.watched]).stdout.trim();
    expect(sandbox).toMatch(/^\//);
    watch = await watchContainer(sandbox, { gateway: subnet.gateway, names: [{ name: `${names.steady}.pm.shoal`, address: steadyIp }] });
    // Neighbours join and leave around the watched container, as `podman run`/`podman rm` do.
    const neighbours = [uniqueName('cn'), uniqueName('cn'), uniqueName('cn'), uniqueName('cn')];
    const steps: Array<['run' | 'rm', string]> = [
      ['run', neighbours[0]!], ['run', neighbours[1]!], ['rm', neighbours[0]!], ['run', neighbours[2]!],
      ['rm', neighbours[1]!], ['run', neighbours[3]!], ['rm', neighbours[3]!], ['rm', neighbours[2]!],
    ];
    for (const [verb, n] of steps) {
      const r = verb === 'run' ? podman(['run', '-d', '--name', n, '--network', netName, ...limits, image, 'sleep', '120']) : podman(['rm', '-f', '-t', '0', n]);
      expect(r.status, `${verb} ${n}: ${r.stderr}`).toBe(0);
    }
    const report = await watch.stop();
    watch = undefined;
    expect(report.ping.lost, 'pings to the gateway without reply').toEqual([]);
    expect(report.dns!.lost, 'lookups without answer').toEqual([]);
    expect(report.dns!.wrong, 'lookups answered wrongly').toEqual([]);
    expect(report.dns!.sent).toBeGreaterThan(10);
    expect(podman(['rm', '-f', '-t', '0', names.steady, names.watched]).status).toBe(0);
  }, 120_000);

  it('podman rm removes the name (DEL through the chain)', async () => {
    expect(podman(['rm', '-f', '-t', '0', nameB]).status).toBe(0);
    await daemon!.waitLog((l) => l['event'] === 'dns_record_removed' && l['name'] === nameB, 5000);
    const a = podman(['run', '--rm', '--network', netName, ...limits, image, 'nslookup', `${nameB}.pm.shoal`]);
    expect(a.stdout).not.toMatch(new RegExp(`Name:\\s+${nameB}`));
    await waitFor('no endpoints left', () => (daemon!.logs.some((l) => l['event'] === 'dns_network_removed') ? true : undefined), 5000);
  }, 90_000);
});
