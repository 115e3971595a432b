/**
 * Podman 4 with the CNI backend, fully isolated in temp dirs: its own storage root and run
 * root, a containers.conf pointing `cni_plugin_dirs` at our bundles and `network_config_dir`
 * at a test dir, and a busybox-static image made with `podman import`. Verified on this
 * machine: runc needs explicit --ulimit flags, cgroupfs, and no events backend.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, copyFileSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const BUSYBOX = '/bin/busybox';
export const IMAGE = 'localhost/shoal-l2-bb:latest';

/**
 * Throws, naming what is missing, unless podman, runc and busybox-static are there. The podman
 * suites call it first in beforeAll: scripts/setup.sh installs all three, so a machine without
 * them is a broken setup and its podman tests fail with the reason (they never skip).
 */
export function requirePodman(): void {
  const missing: string[] = [];
  if (spawnSync('podman', ['--version'], { stdio: 'ignore' }).status !== 0) missing.push('podman does not run (Debian package "podman")');
  if (spawnSync('runc', ['--version'], { stdio: 'ignore' }).status !== 0) missing.push('runc does not run (Debian package "runc")');
  if (!existsSync(BUSYBOX)) missing.push(`${BUSYBOX} is missing (Debian package "busybox-static")`);
  if (missing.length) throw new Error(`podman tests cannot run: ${missing.join('; ')}; scripts/setup.sh installs them`);
}

export class Podman {
  readonly dir: string;
  readonly networkDir: string;
  private readonly conf: string;

  /**
   * `networkDir`: podman's network config dir (default: one of its own); `prefix`: a command it
   * runs under (a test cluster node's `ip netns exec <node>`); `env`: added to its environment,
   * which podman passes on to the plugins (a node's SHOAL_* dirs).
   */
  constructor(
    pluginDir: string,
    private readonly opts: { networkDir?: string; prefix?: string[]; env?: Record<string, string> } = {},
  ) {
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'shoal-podman-'));
    this.networkDir = opts.networkDir ?? path.join(this.dir, 'networks');
    if (!opts.networkDir) mkdirSync(this.networkDir);
    this.conf = path.join(this.dir, 'containers.conf');
    writeFileSync(
      this.conf,
      [
        '[containers]',
        'default_ulimits = ["nofile=10000:10000"]',
        '[network]',
        'network_backend = "cni"',
        `cni_plugin_dirs = ["${pluginDir}"]`,
        `network_config_dir = "${this.networkDir}"`,
        '[engine]',
        'events_logger = "none"',
        '',
      ].join('\n'),
    );
  }

  run(args: string[], timeout = 60_000): { status: number | null; stdout: string; stderr: string } {
    const [cmd, ...pre] = [...(this.opts.prefix ?? []), 'podman'];
    const res = spawnSync(
      cmd!,
      [...pre, '--root', path.join(this.dir, 'root'), '--runroot', path.join(this.dir, 'runroot'), '--runtime', 'runc', '--cgroup-manager', 'cgroupfs', '--events-backend', 'none', ...args],
      { encoding: 'utf8', timeout, env: { ...process.env, ...this.opts.env, CONTAINERS_CONF: this.conf } },
    );
    return { status: res.status, stdout: res.stdout ?? '', stderr: res.stderr ?? '' };
  }

  /** Imports a busybox-static rootfs as IMAGE. */
  importBusybox(): void {
    const rootfs = path.join(this.dir, 'rootfs');
    mkdirSync(path.join(rootfs, 'bin'), { recursive: true });
    for (const d of ['etc', 'proc', 'sys', 'dev', 'tmp']) mkdirSync(path.join(rootfs, d), { recursive: true });
    copyFileSync(BUSYBOX, path.join(rootfs, 'bin/busybox'));
    for (const applet of ['sh', 'ping', 'sleep', 'ip', 'wget', 'cat', 'ls', 'timeout', 'httpd', 'nslookup', 'nc', 'printf']) symlinkSync('busybox', path.join(rootfs, 'bin', applet));
    const tar = spawnSync('sh', ['-c', `tar -C ${rootfs} -c . | CONTAINERS_CONF=${this.conf} podman --root ${path.join(this.dir, 'root')} --runroot ${path.join(this.dir, 'runroot')} --events-backend none import - ${IMAGE}`], { encoding: 'utf8' });
    if (tar.status !== 0) throw new Error(`podman import failed: ${tar.stderr}`);
  }

  /** Removes every container and the storage (best effort), then the temp dir. */
  destroy(): void {
    const rm = this.run(['rm', '-af', '-t', '0']);
    if (rm.status !== 0) console.error(`podman rm -af failed (${rm.status}): ${rm.stderr}`);
    this.run(['system', 'reset', '-f']);
    spawnSync('umount', ['-R', path.join(this.dir, 'root')], { stdio: 'ignore' });
    rmSync(this.dir, { recursive: true, force: true });
  }
}
