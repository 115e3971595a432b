/**
 * A real runtime on Shoal: containerd's `ctr run --cni` (Debian's containerd 1.6) with a
 * conflist of shoal-bridge + shoal-ipam + the bridge's `discovery` section (shoal-dns in the
 * same process), and the daemon from dist. Two containers reach each other by IP, and each
 * resolves the other through the gateway by the id ctr hands the plugins, `<containerd
 * namespace>-<container id>` (`default-<id>`): containerd's ids are not hex, so shoal-dns
 * registers them whole. `ctr task kill` ends the foreground `ctr run --cni --rm`, which then runs
 * CNI DEL and removes the container.
 *
 * Everything is private to the test:
 * - containerd: its own config, --root, --state and socket in a temp dir, with the CRI and opt
 *   plugins off, in its own mount namespace with a tmpfs on /run: its shims' sockets and runc's
 *   state go to /run/containerd/{s,runc} whatever --state says, and stay out of the host's /run.
 * - ctr: `ctr run --cni` has no option for the CNI dirs. It reads the first conflist of
 *   /etc/cni/net.d, finds plugins in /opt/cni/bin (Debian's build: then /usr/lib/cni) and caches
 *   results in /var/lib/cni (go-cni's and libcni's defaults). So every ctr that may run CNI
 *   (`run`; `task kill` too in containerd 1.7) runs in its own mount namespace in which the
 *   test's dirs are bind-mounted over those paths; one that does not exist on the host is made
 *   inside an overlay of its parent, in that namespace only. The host's dirs are not touched.
 * - ctr ignores the CNI result's `dns`: the containers get /etc/resolv.conf by `--mount` from a
 *   file naming the gateway, as a ctr user does; the test checks that the result said the same.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deleteAttachmentRules, removeNetworkPolicy } from '../../src/bridge/firewall.js';
import { ipamNetworkStats } from '../../src/ipam/stats.js';
import { closeStateStores, openStateStore } from '../../src/store/open.js';
import { shoalRulesOwnedBy } from '../e2e/helpers/cni-exec.js';
import { ipJson, ipQuiet } from '../helpers/kernel-objects.js';
import { uniqueName } from '../helpers/names.js';
import { DIST, REPO, execCni, sleep, startDaemon, tempDirs, testSubnet, waitFor, type DaemonProc } from './daemon-helpers.js';

const dirs = tempDirs('196');
const at = (...p: string[]) => path.join(dirs.root, ...p);
const ctrd = { config: at('containerd.toml'), root: at('containerd/root'), state: at('containerd/state'), sock: at('containerd.sock') };
const cni = { conf: at('cni/net.d'), bin: at('cni/bin'), cache: at('cni/cache'), overlay: at('cni/overlay') };
const fifoDir = at('fifo');
const resolvConf = at('resolv.conf');
const IMAGE = 'localhost/shoal-busybox:196';
const NAMESPACE = 'default';
const DOMAIN = 'ctr.shoal';
const netName = uniqueName('ctn');
const bridge = uniqueName('ctb');
const subnet = testSubnet();
// What a user passes to `ctr run`; the plugins see `default-<id>` (17 characters: longer than
// the 12 an id used to be cut to).
const ids = { a: uniqueName('cweb'), b: uniqueName('cdb') };
const cniId = (id: string) => `${NAMESPACE}-${id}`;

/** The tools the test drives, and the Debian package of each. */
function missingTools(): string[] {
  const need: Array<[string, string]> = [
    ['containerd', 'containerd'],
    ['ctr', 'containerd'],
    ['containerd-shim-runc-v2', 'containerd'],
    ['runc', 'runc'],
    ['unshare', 'util-linux'],
    ['tar', 'tar'],
  ];
  const missing = need.filter(([cmd]) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status !== 0).map(([cmd, pkg]) => `${cmd} (Debian package "${pkg}")`);
  if (!existsSync('/bin/busybox')) missing.push('/bin/busybox (Debian package "busybox-static")');
  return missing;
}

/**
 * `sh -c` script: `ctr "$@"` with the test's CNI dirs over the paths ctr has built in. Run in a
 * fresh mount namespace (`unshare --mount --propagation private`), so nothing leaks to the host.
 */
const CTR_WITH_PRIVATE_CNI = `set -eu
conf=$1 bin=$2 cache=$3 ov=$4; shift 4
graft() {
  if [ ! -d "$1" ]; then
    parent=$(dirname "$1")
    while [ ! -d "$parent" ]; do parent=$(dirname "$parent"); done
    mkdir -p "$ov/$3/upper" "$ov/$3/work"
    mount -t overlay "shoal-$3" -o "lowerdir=$parent,upperdir=$ov/$3/upper,workdir=$ov/$3/work" "$parent"
    mkdir -p "$1"
  fi
  mount --bind "$2" "$1"
}
graft /etc/cni/net.d "$conf" conf
graft /opt/cni/bin "$bin" bin
if [ -d /usr/lib/cni ]; then mount --bind "$bin" /usr/lib/cni; fi
graft /var/lib/cni "$cache" cache
exec ctr "$@"
`;

const pluginEnv = () => ({ ...process.env, SHOAL_STATE_DIR: dirs.state, SHOAL_RUN_DIR: dirs.run, NODE_PATH: path.join(REPO, 'node_modules') });

function ctrCniArgv(args: string[]): string[] {
  return ['--mount', '--propagation', 'private', '--', 'sh', '-c', CTR_WITH_PRIVATE_CNI, 'ctr-cni', cni.conf, cni.bin, cni.cache, cni.overlay, '--address', ctrd.sock, ...args];
}

/** ctr against the private containerd; `withCni` for the commands that may run CNI plugins. */
function ctr(args: string[], opts: { withCni?: boolean; timeout?: number } = {}) {
  const [cmd, argv] = opts.withCni ? ['unshare', ctrCniArgv(args)] : ['ctr', ['--address', ctrd.sock, ...args]];
  const r = spawnSync(cmd, argv, { encoding: 'utf8', timeout: opts.timeout ?? 30_000, env: pluginEnv() });
  return { status: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

interface Running {
  id: string;
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}
const running = new Map<string, Running>();

/** `ctr run --cni --rm IMAGE ID sleep 600` in the foreground, as its user would run it. */
function ctrRun(id: string): Running {
  const args = ['run', '--cni', '--rm', '--fifo-dir', fifoDir, '--mount', `type=bind,src=${resolvConf},dst=/etc/resolv.conf,options=rbind:ro`, IMAGE, id, 'sleep', '600'];
  const child = spawn('unshare', ctrCniArgv(args), { env: pluginEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const r: Running = { id, child, output: () => out, exited };
  running.set(id, r);
  return r;
}

const alive = (c: ChildProcess) => c.exitCode === null && c.signalCode === null;

function taskStatus(id: string): string | undefined {
  const ls = ctr(['task', 'ls']);
  return ls.out.split('\n').map((l) => l.trim().split(/\s+/)).find((c) => c[0] === id)?.[2];
}

let execSeq = 0;
function exec(id: string, cmd: string[], timeout = 20_000) {
  execSeq += 1;
  return ctr(['task', 'exec', '--exec-id', `e${execSeq}`, '--fifo-dir', fifoDir, id, ...cmd], { timeout });
}

/** libcni's cache of an attachment, which ctr writes on ADD and removes on DEL. */
const cacheFile = (id: string) => path.join(cni.cache, 'results', `${netName}-${cniId(id)}-eth0`);

/** Pids of processes whose command line names our containerd socket (its shims). */
function processesUsing(sock: string): number[] {
  const pids: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${p}/cmdline`, 'latin1').split('\0').includes(sock)) pids.push(Number(p));
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

/** A docker-archive (manifest.json + config + one layer) of a busybox-static rootfs. */
function buildImageArchive(): string {
  const img = at('image');
  const rootfs = path.join(img, 'rootfs');
  for (const d of ['bin', 'etc', 'proc', 'sys', 'dev', 'tmp']) mkdirSync(path.join(rootfs, d), { recursive: true });
  copyFileSync('/bin/busybox', path.join(rootfs, 'bin/busybox'));
  for (const applet of ['sh', 'ping', 'nslookup', 'sleep', 'ip', 'cat']) symlinkSync('busybox', path.join(rootfs, 'bin', applet));
  writeFileSync(path.join(rootfs, 'etc/resolv.conf'), '');
  const layer = spawnSync('tar', ['--numeric-owner', '-C', rootfs, '-cf', path.join(img, 'layer.tar'), '.']);
  if (layer.status !== 0) throw new Error(`tar of the rootfs failed: ${layer.stderr.toString()}`);
  const diffId = createHash('sha256').update(readFileSync(path.join(img, 'layer.tar'))).digest('hex');
  const config = { architecture: 'amd64', os: 'linux', config: { Env: ['PATH=/bin'], Cmd: ['sh'] }, rootfs: { type: 'layers', diff_ids: [`sha256:${diffId}`] } };
  writeFileSync(path.join(img, 'config.json'), JSON.stringify(config));
  writeFileSync(path.join(img, 'manifest.json'), JSON.stringify([{ Config: 'config.json', RepoTags: [IMAGE], Layers: ['layer.tar'] }]));
  const archive = at('image.tar');
  const tar = spawnSync('tar', ['-C', img, '-cf', archive, 'manifest.json', 'config.json', 'layer.tar']);
  if (tar.status !== 0) throw new Error(`tar of the image failed: ${tar.stderr.toString()}`);
  return archive;
}

let containerd: { child: ChildProcess; exited: Promise<unknown>; log: () => string } | undefined;
let daemon: DaemonProc | undefined;
let setupError: Error | undefined;
const ips: Record<string, string> = {};

function startContainerd(): void {
  for (const d of [ctrd.root, ctrd.state]) mkdirSync(d, { recursive: true });
  writeFileSync(
    ctrd.config,
    [
      'version = 2',
      `root = "${ctrd.root}"`,
      `state = "${ctrd.state}"`,
      // CRI would read its own CNI config; opt would write /opt/containerd; the others are
      // snapshotters this kernel or filesystem does not have.
      'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]',
      '[grpc]',
      `  address = "${ctrd.sock}"`,
      '[ttrpc]',
      `  address = "${ctrd.sock}.ttrpc"`,
      '',
    ].join('\n'),
  );
  const script = 'mount -t tmpfs -o mode=0755 shoal-containerd-run /run && exec containerd "$@"';
  const args = ['--mount', '--propagation', 'private', '--', 'sh', '-c', script, 'containerd', '--config', ctrd.config, '--root', ctrd.root, '--state', ctrd.state, '--address', ctrd.sock];
  // unshare and sh exec: the child's pid is containerd's.
  const child = spawn('unshare', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  containerd = { child, exited, log: () => log.slice(-2000) };
}

async function setUp(): Promise<void> {
  const missing = missingTools();
  if (missing.length) throw new Error(`containerd e2e needs ${missing.join(', ')}: scripts/setup.sh installs them`);
  for (const d of [...Object.values(cni), fifoDir, dirs.state, dirs.run]) mkdirSync(d, { recursive: true });
  startContainerd();
  await waitFor('containerd to answer on its private socket', () => (alive(containerd!.child) ? ctr(['version']).status === 0 : Promise.reject(new Error(`containerd exited: ${containerd!.log()}`))), 15_000, 100);
  const imp = ctr(['images', 'import', buildImageArchive()], { timeout: 60_000 });
  if (imp.status !== 0) throw new Error(`ctr images import failed: ${imp.out}`);

  // The plugins as `shoal cni install` puts them into a runtime's plugin dir: launchers that
  // load dist/cni by absolute path (dist/cni itself, seen through a bind mount, would look for
  // its addons beside the mount point).
  const install = spawnSync(process.execPath, [path.join(DIST, 'bin/shoal'), 'cni', 'install', '--dir', cni.bin], { encoding: 'utf8' });
  if (install.status !== 0) throw new Error(`shoal cni install failed: ${install.stderr}`);
  // What `shoal network create` writes for a bridge network, minus port publishing.
  const conflist = {
    cniVersion: '1.0.0',
    name: netName,
    plugins: [
      {
        type: 'shoal-bridge',
        bridge,
        isGateway: true,
        ipMasq: true,
        hairpinMode: true,
        isolate: true,
        stateDir: dirs.state,
        capabilities: { aliases: true },
        ipam: { type: 'shoal-ipam', ranges: [[{ subnet: subnet.cidr, gateway: subnet.gateway }]], routes: [{ dst: '0.0.0.0/0' }] },
        discovery: { domainName: DOMAIN },
      },
    ],
  };
  writeFileSync(path.join(cni.conf, `${netName}.conflist`), JSON.stringify(conflist, null, 2));
  writeFileSync(resolvConf, `nameserver ${subnet.gateway}\nsearch ${DOMAIN}\n`);
  daemon = await startDaemon({ state: dirs.state, run: dirs.run });
}

function ready(): void {
  if (setupError) throw setupError;
}

/** `ctr task kill`, then the foreground `ctr run` runs DEL and removes the container. */
async function stopContainer(id: string, ms = 20_000): Promise<{ code: number | null | undefined; output: string }> {
  const r = running.get(id);
  if (!r) return { code: undefined, output: '' };
  if (alive(r.child)) ctr(['task', 'kill', '-s', 'KILL', id], { withCni: true });
  const code = await Promise.race([r.exited, sleep(ms).then(() => undefined)]);
  return { code, output: r.output() };
}

beforeAll(async () => {
  try {
    await setUp();
  } catch (e) {
    setupError = e as Error;
  }
}, 120_000);

afterAll(async () => {
  for (const id of running.keys()) {
    const r = running.get(id)!;
    await stopContainer(id, 15_000);
    if (alive(r.child)) process.kill(r.child.pid!, 'SIGKILL');
    // Whatever ctr could not finish: the task, the container, and (from its cache) the DEL.
    ctr(['task', 'rm', '-f', id]);
    ctr(['container', 'rm', id]);
    if (existsSync(cacheFile(id))) {
      const list = JSON.parse(readFileSync(path.join(cni.conf, `${netName}.conflist`), 'utf8')) as { cniVersion: string; name: string; plugins: object[] };
      const env = { CNI_COMMAND: 'DEL', CNI_CONTAINERID: cniId(id), CNI_NETNS: '', CNI_IFNAME: 'eth0', CNI_PATH: cni.bin, ...pluginEnv() } as Record<string, string>;
      await execCni(path.join(cni.bin, 'shoal-bridge'), env, { cniVersion: list.cniVersion, name: list.name, ...list.plugins[0] });
    }
  }
  if (containerd && alive(containerd.child)) {
    process.kill(containerd.child.pid!, 'SIGTERM');
    if ((await Promise.race([containerd.exited.then(() => true), sleep(10_000).then(() => false)])) === false) process.kill(containerd.child.pid!, 'SIGKILL');
    await containerd.exited;
  }
  // Shims of our containerd outlive it by design; ours are the ones naming its socket.
  for (const pid of processesUsing(ctrd.sock)) process.kill(pid, 'SIGKILL');
  await daemon?.stop();
  deleteAttachmentRules((o) => o.startsWith(`${netName}/`));
  removeNetworkPolicy(bridge);
  ipQuiet(['link', 'del', 'dev', bridge]);
  closeStateStores();
  dirs.cleanup();
}, 120_000);

describe('196 containerd (ctr run --cni) on a Shoal network', () => {
  it('ctr run --cni attaches two containers: addresses from shoal-ipam, the gateway as their nameserver', async () => {
    ready();
    for (const id of [ids.a, ids.b]) {
      const r = ctrRun(id);
      // ctr starts the task only after the CNI ADD succeeded.
      await waitFor(`task ${id} running`, () => (alive(r.child) ? taskStatus(id) === 'RUNNING' : Promise.reject(new Error(`ctr run ${id} exited: ${r.output()}`))), 30_000, 100);
      const addr = exec(id, ['ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0']);
      expect(addr.status, addr.out).toBe(0);
      ips[id] = /inet (\d+\.\d+\.\d+\.\d+)\//.exec(addr.out)?.[1] ?? '';
      expect(ips[id]!.startsWith(subnet.prefix), addr.out).toBe(true);
      // ctr's own record of the ADD result: shoal-dns put the gateway there.
      const cached = JSON.parse(readFileSync(cacheFile(id), 'utf8')) as { containerId: string; result: { dns?: { nameservers?: string[]; search?: string[] } } };
      expect(cached.containerId).toBe(cniId(id));
      expect(cached.result.dns).toMatchObject({ nameservers: [subnet.gateway], search: [DOMAIN] });
    }
    expect(ips[ids.a]).not.toBe(ips[ids.b]);
    expect(ipJson<unknown[]>(['link', 'show', 'master', bridge])).toHaveLength(2);
    // The daemon sees a record on its next store poll (every 25 ms).
    for (const id of [ids.a, ids.b]) {
      const ep = await daemon!.waitLog((l) => l['event'] === 'dns_record_added' && l['containerId'] === cniId(id), 5000);
      expect(ep['name'], `registered name of ${cniId(id)}`).toBe(cniId(id));
    }
  }, 90_000);

  it('the two containers reach each other by IP (ping through ctr task exec)', () => {
    ready();
    for (const [from, to] of [[ids.a, ids.b], [ids.b, ids.a]] as const) {
      const ping = exec(from, ['ping', '-c', '2', '-W', '2', ips[to]!]);
      expect(ping.status, `${from} -> ${to}: ${ping.out}`).toBe(0);
    }
  }, 60_000);

  it('each resolves the other by its containerd id through the gateway, and pings it by that name', async () => {
    ready();
    for (const [from, to] of [[ids.a, ids.b], [ids.b, ids.a]] as const) {
      const name = cniId(to);
      const esc = (s: string) => s.replace(/\./g, '\\.');
      const answer = new RegExp(`Name:\\s+${esc(name)}(\\.${esc(DOMAIN)})?\\s+Address:\\s+${esc(ips[to]!)}\\b`);
      // The daemon opens the gateway listener within ~30 ms of the first ADD; allow for it.
      const lookup = await waitFor(`${from} to resolve ${name}`, () => {
        const r = exec(from, ['nslookup', name]);
        return answer.test(r.out) ? r : undefined;
      }, 10_000, 200).catch(() => exec(from, ['nslookup', name]));
      expect(lookup.out).toMatch(new RegExp(`Server:\\s+${esc(subnet.gateway)}`));
      expect(lookup.out).toMatch(answer);
      const ping = exec(from, ['ping', '-c', '1', '-W', '2', name]);
      expect(ping.status, ping.out).toBe(0);
      expect(ping.out).toContain(`PING ${name} (${ips[to]})`);
    }
  }, 60_000);

  it('ctr task kill ends ctr run, which runs DEL: name, veth, rules and address go, the container is removed', async () => {
    ready();
    const b = await stopContainer(ids.b);
    expect(b.code, `ctr run ${ids.b} did not end: ${b.output}`).not.toBeUndefined();
    expect(b.output).not.toMatch(/level=error/);
    expect(existsSync(cacheFile(ids.b)), 'libcni cache entry (removed by a successful DEL)').toBe(false);
    await daemon!.waitLog((l) => l['event'] === 'dns_record_removed' && l['containerId'] === cniId(ids.b), 5000);
    const gone = exec(ids.a, ['nslookup', cniId(ids.b)]);
    expect(gone.out).not.toMatch(new RegExp(`Address:\\s+${ips[ids.b]!.replace(/\./g, '\\.')}\\b`));
    expect(ctr(['container', 'ls', '-q']).out.split('\n')).not.toContain(ids.b);
    expect(ipJson<unknown[]>(['link', 'show', 'master', bridge])).toHaveLength(1);
    expect(shoalRulesOwnedBy(`${netName}/${cniId(ids.b)}/`)).toEqual([]);

    const a = await stopContainer(ids.a);
    expect(a.code, `ctr run ${ids.a} did not end: ${a.output}`).not.toBeUndefined();
    expect(a.output).not.toMatch(/level=error/);
    expect(ctr(['container', 'ls', '-q']).out.trim()).toBe('');
    expect(ipJson<unknown[]>(['link', 'show', 'master', bridge])).toEqual([]);
    expect(shoalRulesOwnedBy(`${netName}/`)).toEqual([]);
    const store = await openStateStore(dirs.state);
    expect((await ipamNetworkStats(store, netName)).allocated).toBe(0);
    await daemon!.waitLog((l) => l['event'] === 'dns_network_removed' && l['network'] === netName, 5000);
  }, 90_000);
});
