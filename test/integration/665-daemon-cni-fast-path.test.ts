/**
 * The CNI fast path (issue 17): dist/cni/<type> hands requests to the daemon over
 * <run dir>/cni.sock. Here: the daemon really serves them (its log counts each one), results
 * and errors are the same as the Node plugin's (SHOAL_CNI_FORWARD=0) byte for byte, the socket
 * serves root only, and whenever the daemon cannot stand in for the plugin (another build,
 * other namespaces, no daemon) the forwarder runs the Node plugin and the answer is still right.
 */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdirSync, statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KernelObjects } from '../helpers/kernel-objects.js';
import { REPO, waitFor } from './daemon-helpers.js';
import { FastPathFixture, firstAddress, type CniCall, type Run } from './cni-fast-path-helpers.js';

const objects = new KernelObjects('cfp');
const fx = new FastPathFixture();

beforeAll(async () => {
  await fx.startDaemon();
}, 60_000);

afterAll(async () => {
  await fx.cleanup();
  objects.cleanup();
});

/** Both paths, one after the other; asserts which one served each. */
async function bothPaths(call: CniCall): Promise<{ forwarded: Run; node: Run }> {
  const before = fx.served();
  const forwarded = await fx.cni({ ...call, forward: true });
  expect(fx.served(), 'the daemon served the forwarded call').toBe(before + 1);
  const node = await fx.cni({ ...call, forward: false });
  expect(fx.served(), 'the daemon did not see the Node plugin call').toBe(before + 1);
  return { forwarded, node };
}

describe('the CNI fast path', () => {
  it('serves ADD, CHECK and DEL from the daemon with the same results as the Node plugin', async () => {
    const bridge = objects.linkName();
    const ns = objects.netns();
    const subnet = fx.subnet();
    // The same network on each path, each with IPAM state of its own: both get the first address.
    const results: Run[] = [];
    for (const forward of [true, false]) {
      const base = fx.bridgeConfig('cfpsame', bridge, subnet);
      const config = { ...base, ipam: { ...(base['ipam'] as object), stateDir: path.join(fx.tmp, `same-${forward}`) } };
      const before = fx.served();
      const add = await fx.cni({ command: 'ADD', containerId: 'same1', netns: ns.path, ifname: 'eth0', config, forward });
      expect(add.code, add.stdout + add.stderr).toBe(0);
      expect(fx.served()).toBe(before + (forward ? 1 : 0));
      const check = await fx.cni({ command: 'CHECK', containerId: 'same1', netns: ns.path, ifname: 'eth0', config: { ...config, prevResult: add.json }, forward });
      expect(check.code, check.stdout).toBe(0);
      expect(check.stdout).toBe('');
      const del = await fx.cni({ command: 'DEL', containerId: 'same1', netns: ns.path, ifname: 'eth0', config, forward });
      expect(del.code, del.stdout).toBe(0);
      expect(del.stdout).toBe('');
      results.push(add);
    }
    // The host veth's MAC is the kernel's random pick; everything else is derived, so equal.
    const normalise = (r: Run) => r.stdout.replace(/"mac":"[0-9a-f:]+"(?=},\{"name":"eth0")/, '"mac":"<veth>"');
    expect(normalise(results[0]!)).toBe(normalise(results[1]!));
    expect(firstAddress(results[0]!)).toMatch(/^10\.182\.\d+\.2\/24$/);
  });

  it('answers every error with the Node plugin\'s code and message', async () => {
    const ns = objects.netns();
    const config = fx.bridgeConfig('cfperr', objects.linkName(), fx.subnet());
    const cases: Array<[string, CniCall, number | undefined]> = [
      ['stdin is not JSON', { command: 'ADD', containerId: 'e1', netns: ns.path, ifname: 'eth0', stdin: '{not json' }, 6],
      ['CNI_NETNS missing', { command: 'ADD', containerId: 'e1', ifname: 'eth0', config }, 4],
      ['unknown cniVersion', { command: 'ADD', containerId: 'e1', netns: ns.path, ifname: 'eth0', config: { ...config, cniVersion: '9.9.9' } }, 1],
      ['CHECK below 0.4.0', { command: 'CHECK', containerId: 'e1', netns: ns.path, ifname: 'eth0', config: { ...config, cniVersion: '0.3.1' } }, 1],
      ['bridge name too long', { command: 'ADD', containerId: 'e1', netns: ns.path, ifname: 'eth0', config: { ...config, bridge: 'x'.repeat(16) } }, 7],
      ['netns gone', { command: 'ADD', containerId: 'e1', netns: '/run/netns/cfp-no-such-ns', ifname: 'eth0', config }, 3],
      ['unknown CNI_ARGS', { command: 'ADD', containerId: 'e1', netns: ns.path, ifname: 'eth0', config, env: { CNI_ARGS: 'NOPE=1' } }, 2],
      ['DEL of nothing', { command: 'DEL', containerId: 'never', ifname: 'eth0', config }, undefined],
      ['VERSION', { command: 'VERSION', stdin: '{"cniVersion":"0.4.0"}' }, undefined],
    ];
    for (const [what, call, code] of cases) {
      const { forwarded, node } = await bothPaths(call);
      expect({ what, code: forwarded.code, stdout: forwarded.stdout }).toEqual({ what, code: node.code, stdout: node.stdout });
      if (code !== undefined) expect({ what, code: forwarded.json?.['code'] }).toEqual({ what, code });
    }
  });

  it('serves root only: the socket is 0600, and a peer of another uid that reaches it is refused', async () => {
    const socket = path.join(fx.run, 'cni.sock');
    const st = statSync(socket);
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.uid).toBe(0);
    // Open the way for uid 65534 on purpose (as a mistaken chmod or bind mount would).
    chmodSync(fx.tmp, 0o711);
    chmodSync(fx.run, 0o711);
    chmodSync(socket, 0o666);
    try {
      const script = `const s=require('net').connect(${JSON.stringify(socket)});let d='';s.on('data',c=>d+=c);s.on('error',e=>{console.log('error '+e.code)});s.on('close',()=>console.log('closed '+JSON.stringify(d)));`;
      const r = spawnSync(process.execPath, ['-e', script], { uid: 65534, gid: 65534, encoding: 'utf8', timeout: 10_000 });
      expect(r.stdout.trim()).toBe('closed ""');
      await fx.daemon!.waitLog((l) => l['event'] === 'cni_peer_refused' && l['uid'] === 65534);
    } finally {
      chmodSync(socket, 0o600);
      chmodSync(fx.run, 0o755);
      chmodSync(fx.tmp, 0o700);
    }
  });

  it('runs the Node plugin for a caller in other namespaces, whose host is not the daemon\'s', async () => {
    const host = objects.netns();
    const ns = objects.netns();
    const bridge = objects.trackLink(objects.linkName(), host.name);
    const config = fx.bridgeConfig('cfpns', bridge, fx.subnet());
    const before = fx.served();
    const add = await fx.cni({ command: 'ADD', containerId: 'ns1', netns: ns.path, ifname: 'eth0', config, viaNetns: host.name });
    expect(add.code, add.stdout + add.stderr).toBe(0);
    expect(fx.served()).toBe(before);
    // The bridge is in the caller's namespace, as the Node plugin run there made it.
    expect(spawnSync('ip', ['-n', host.name, 'link', 'show', 'dev', bridge]).status).toBe(0);
    expect(spawnSync('ip', ['link', 'show', 'dev', bridge], { stdio: 'ignore' }).status).not.toBe(0);
    const del = await fx.cni({ command: 'DEL', containerId: 'ns1', netns: ns.path, ifname: 'eth0', config, viaNetns: host.name });
    expect(del.code, del.stdout).toBe(0);
  });

  it('runs the Node plugin when the daemon speaks for another build, sending it nothing', async () => {
    const run = path.join(fx.tmp, 'fake-run');
    mkdirSync(run);
    const ino = (k: string) => statSync(`/proc/self/ns/${k}`).ino;
    let requestBytes = 0;
    const server = net.createServer((s) => {
      s.write(`SHOAL-CNI/1 0000000000000000 60000 ${ino('net')} ${ino('mnt')} ${ino('pid')}\n`);
      s.on('data', (d: Buffer) => (requestBytes += d.length));
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => server.listen(path.join(run, 'cni.sock'), r));
    try {
      const ipam = { cniVersion: '1.0.0', name: 'cfpbuild', type: 'shoal-ipam', ipam: { type: 'shoal-ipam', subnet: fx.subnet(), stateDir: fx.stateDir } };
      const add = await fx.cni({ command: 'ADD', type: 'shoal-ipam', containerId: 'b1', netns: '/proc/self/ns/net', ifname: 'eth0', config: ipam, env: { SHOAL_RUN_DIR: run } });
      expect(add.code, add.stdout + add.stderr).toBe(0);
      expect(firstAddress(add)).toMatch(/^10\.182\.\d+\.2\/24$/);
      expect(requestBytes).toBe(0);
      const del = await fx.cni({ command: 'DEL', type: 'shoal-ipam', containerId: 'b1', ifname: 'eth0', config: ipam, env: { SHOAL_RUN_DIR: run } });
      expect(del.code, del.stdout).toBe(0);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it('runs the Node plugin when no daemon listens (no socket, or a dead one\'s socket file)', async () => {
    const ipam = { cniVersion: '1.0.0', name: 'cfpnone', type: 'shoal-ipam', ipam: { type: 'shoal-ipam', subnet: fx.subnet(), stateDir: fx.stateDir } };
    const dead = path.join(fx.tmp, 'dead-run');
    mkdirSync(dead);
    // A socket file nobody accepts on: what kill -9 leaves behind.
    const sock = path.join(dead, 'cni.sock');
    const orphan = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(sock)}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
    await once(orphan.stdout!, 'data');
    process.kill(orphan.pid!, 'SIGKILL');
    await once(orphan, 'exit');
    expect(statSync(sock).isSocket()).toBe(true);
    for (const runDir of [path.join(fx.tmp, 'no-such-run'), dead]) {
      const r = await fx.cni({ command: 'ADD', type: 'shoal-ipam', containerId: 'n1', netns: '/proc/self/ns/net', ifname: 'eth0', config: ipam, env: { SHOAL_RUN_DIR: runDir } });
      expect(r.code, r.stdout + r.stderr).toBe(0);
      const d = await fx.cni({ command: 'DEL', type: 'shoal-ipam', containerId: 'n1', ifname: 'eth0', config: ipam, env: { SHOAL_RUN_DIR: runDir } });
      expect(d.code).toBe(0);
    }
  });

  it('shoal cni install: the installed forwarder hands requests to the daemon', async () => {
    const dir = path.join(fx.tmp, 'installed');
    const r = spawnSync(process.execPath, [path.join(REPO, 'dist/bin/shoal'), 'cni', 'install', '--dir', dir], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const before = fx.served('VERSION');
    const v = await fx.cni({ command: 'VERSION', type: 'shoal-dns', binDir: dir, stdin: '' });
    expect(v.code, v.stderr).toBe(0);
    expect(JSON.parse(v.stdout)).toMatchObject({ cniVersion: '1.1.0' });
    await waitFor('the VERSION in the daemon log', () => fx.served('VERSION') === before + 1 || undefined, 2000);
    // And its Node plugin, forced.
    const node = await fx.cni({ command: 'VERSION', type: 'shoal-dns', binDir: dir, stdin: '', forward: false });
    expect(node.stdout).toBe(v.stdout);
  });
});
