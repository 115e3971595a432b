/**
 * shoal-portmap against the real kernel: published TCP and UDP ports reached from the host
 * (127.0.0.1, own addresses), from outside, from containers on the same and another network,
 * hairpin; hostIP scoping; conflicts leave nothing behind; CHECK, GC, DEL (rules and UDP
 * conntrack); `shoal port`; tables Shoal does not own stay byte-for-byte unchanged.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CniPlugin } from '../../cni/skel.js';
import { add, check, del, gc } from '../../src/portmap/plugin.js';
import { listConntrack } from '../../src/kernel/conntrack.js';
import { NftTransaction, applyTransaction } from '../../src/kernel/nftables.js';
import { readTable } from '../../src/kernel/nftables-reader.js';
import { CHAIN, MAP, tableOf } from '../../src/portmap/rules.js';
import { formatMappings, findRecords } from '../../src/cli/port.js';
import { listRecords } from '../../src/portmap/state.js';
import { runCni } from '../helpers/cni.js';
import { testRunId } from '../helpers/names.js';
import { Topology, probe, sh, startServers, stopServers, type Ctr, type Net } from './portmap-fixture.js';

const plugin: CniPlugin = { name: 'shoal-portmap', cniArgs: ['K8S_POD_NAME'], add, del, check, gc };
// 10.236-237.x: other areas use 10.231 (bridge), 10.234 and 10.235.
const A = 236 + Math.floor(Math.random() * 2);
const B = 1 + Math.floor(Math.random() * 250);
const PORT = 30000 + Math.floor(Math.random() * 9000);
const [TCP, UDP, BOUND] = [PORT, PORT + 1, PORT + 2];
const NET = `pmnet${testRunId()}`;
const DECOY = `pmdecoy${testRunId()}`;

const topo = new Topology();
let stateDir: string;
let net1: Net;
let net2: Net;
let c1: Ctr;
let c2: Ctr;
let c3: Ctr;
let outside: ReturnType<Topology['outside']>;
let servers: ChildProcess | undefined;
let decoyBefore = '';

function conf(ctr: Ctr, portMappings: unknown[], extra: Record<string, unknown> = {}) {
  return { cniVersion: '1.0.0', name: NET, type: 'shoal-portmap', stateDir, runtimeConfig: { portMappings }, prevResult: ctr.prevResult, ...extra };
}

function env(cmd: string, ctr: Ctr, id: string, name?: string) {
  return { CNI_COMMAND: cmd, CNI_CONTAINERID: id, CNI_NETNS: ctr.path, CNI_IFNAME: 'eth0', CNI_PATH: '/usr/lib/cni', CNI_ARGS: `IgnoreUnknown=1${name ? `;K8S_POD_NAME=${name}` : ''}` };
}

const shoalNatText = () => ['ip', 'ip6'].map((f) => spawnSync('nft', ['list', 'table', f, 'shoal-nat'], { encoding: 'utf8' }).stdout).join('\n');

const ID1 = `c1${testRunId()}aaaa`;
const ID2 = `c2${testRunId()}bbbb`;
const MAPPINGS = [
  { hostPort: TCP, containerPort: 80, protocol: 'tcp' },
  { hostPort: UDP, containerPort: 5353, protocol: 'udp' },
];

beforeAll(async () => {
  stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'shoal-portmap-'));
  // A table Shoal does not own, with a NAT chain on the same hooks: it must stay untouched.
  sh('nft', ['add', 'table', 'ip', DECOY]);
  sh('nft', ['add', 'chain', 'ip', DECOY, 'pre', '{ type nat hook prerouting priority -110 ; }']);
  sh('nft', ['add', 'rule', 'ip', DECOY, 'pre', 'tcp', 'dport', '1', 'counter', 'accept']);
  decoyBefore = sh('nft', ['list', 'table', 'ip', DECOY]);
  net1 = topo.network(A, B);
  net2 = topo.network(A, B + 1);
  c1 = topo.container(net1);
  c2 = topo.container(net1);
  c3 = topo.container(net2);
  outside = topo.outside(A, B + 2);
  servers = await startServers(c1.ns, 80, 5353);
});

/** Runs every teardown step even when an earlier one (or the setup) failed. */
async function attempt(step: () => unknown): Promise<void> {
  try {
    await step();
  } catch (err) {
    console.error('portmap teardown step failed:', err);
  }
}

afterAll(async () => {
  await attempt(() => stopServers(servers));
  for (const id of [ID1, ID2]) {
    await attempt(() => runCni(plugin, { CNI_COMMAND: 'DEL', CNI_CONTAINERID: id, CNI_IFNAME: 'eth0', CNI_PATH: '/usr/lib/cni' }, { cniVersion: '1.0.0', name: NET, type: 'shoal-portmap', stateDir }));
  }
  // Leave no shared portmap objects behind when no attachment uses them any more.
  for (const f of [4, 6] as const) {
    await attempt(() => {
      const t = readTable(tableOf(f));
      if (!t || t.chains.some((c) => c.name.startsWith('portmap-c-'))) return;
      const tx = new NftTransaction();
      for (const c of Object.values(CHAIN)) if (t.chains.some((x) => x.name === c)) tx.deleteChain(tableOf(f), c);
      for (const m of Object.values(MAP)) if (t.maps.some((x) => x.name === m)) tx.deleteSet(tableOf(f), m, 'map');
      if (!tx.isEmpty) applyTransaction(tx);
    });
  }
  await attempt(() => spawnSync('nft', ['delete', 'table', 'ip', DECOY]));
  await attempt(() => topo.cleanup());
  await attempt(() => fs.rmSync(stateDir, { recursive: true, force: true }));
});

describe('shoal-portmap ADD', () => {
  it('publishes the ports and passes prevResult through unchanged', async () => {
    const r = await runCni(plugin, env('ADD', c1, ID1, 'web'), conf(c1, [...MAPPINGS, { hostPort: BOUND, containerPort: 80, protocol: 'tcp', hostIP: outside.host4 }]));
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(r.json).toEqual(c1.prevResult);
    expect(sh('sysctl', ['-n', `net.ipv4.conf.${net1.bridge}.route_localnet`]).trim()).toBe('1');
  });

  it('is reachable from the host on 127.0.0.1 (TCP and UDP), masqueraded to the gateway', () => {
    expect(probe(undefined, 'tcp', '127.0.0.1', TCP)).toBe(`tcp ${net1.gw4}`);
    expect(probe(undefined, 'udp', '127.0.0.1', UDP)).toBe(`udp ${net1.gw4}`);
  });

  it('is reachable from the host on its own addresses, v4 and v6', () => {
    expect(probe(undefined, 'tcp', outside.host4, TCP)).toMatch(/^tcp /);
    expect(probe(undefined, 'udp', outside.host4, UDP)).toMatch(/^udp /);
    expect(probe(undefined, 'tcp', outside.host6, TCP)).toMatch(/^tcp /);
    expect(probe(undefined, 'udp', outside.host6, UDP)).toMatch(/^udp /);
  });

  it('is reachable from outside on a host address, without source NAT', () => {
    expect(probe(outside.ns, 'tcp', outside.host4, TCP)).toBe(`tcp ${outside.ext4}`);
    expect(probe(outside.ns, 'udp', outside.host4, UDP)).toBe(`udp ${outside.ext4}`);
    expect(probe(outside.ns, 'tcp', outside.host6, TCP)).toMatch(/^tcp fd23:/);
  });

  it('is reachable from a container on the same network through the gateway (hairpin SNAT)', () => {
    expect(probe(c2.ns, 'tcp', net1.gw4, TCP)).toBe(`tcp ${net1.gw4}`);
    expect(probe(c2.ns, 'udp', net1.gw4, UDP)).toBe(`udp ${net1.gw4}`);
    expect(probe(c2.ns, 'tcp', net1.gw6, TCP)).toBe(`tcp ${net1.gw6}`);
  });

  it('is reachable from a container on another network, which keeps its own source address', () => {
    expect(probe(c3.ns, 'tcp', net2.gw4, TCP)).toBe(`tcp ${c3.ip4}`);
    expect(probe(c3.ns, 'udp', net2.gw4, UDP)).toBe(`udp ${c3.ip4}`);
    expect(probe(c3.ns, 'tcp', outside.host4, TCP)).toBe(`tcp ${c3.ip4}`);
  });

  it('is reachable from the container itself (hairpin)', () => {
    expect(probe(c1.ns, 'tcp', net1.gw4, TCP)).toBe(`tcp ${net1.gw4}`);
    expect(probe(c1.ns, 'udp', net1.gw4, UDP)).toBe(`udp ${net1.gw4}`);
    expect(probe(c1.ns, 'tcp', net1.gw6, TCP)).toBe(`tcp ${net1.gw6}`);
  });

  it('publishes a hostIP mapping on that address only', () => {
    expect(probe(outside.ns, 'tcp', outside.host4, BOUND)).toBe(`tcp ${outside.ext4}`);
    expect(probe(undefined, 'tcp', '127.0.0.1', BOUND)).toMatch(/^error ECONNREFUSED/);
    expect(probe(c2.ns, 'tcp', net1.gw4, BOUND)).toMatch(/^error ECONNREFUSED/);
  });

  it('CHECK passes while the rules are intact', async () => {
    const r = await runCni(plugin, env('CHECK', c1, ID1), conf(c1, [...MAPPINGS, { hostPort: BOUND, containerPort: 80, protocol: 'tcp', hostIP: outside.host4 }]));
    expect(r.stdout).toBe('');
    expect(r.exitCode).toBe(0);
  });

  it('CHECK fails when the config asks for a port that is not published', async () => {
    const r = await runCni(plugin, env('CHECK', c1, ID1), conf(c1, [...MAPPINGS, { hostPort: BOUND + 1, containerPort: 81 }]));
    expect(r.exitCode).toBe(1);
    expect(String(r.json?.msg)).toMatch(/failed to check port mappings/);
  });

  it('shoal port lists the mappings like docker port', () => {
    const recs = findRecords(listRecords(path.join(stateDir, 'portmap')), 'web');
    expect(formatMappings(recs)).toEqual([
      `80/tcp -> 0.0.0.0:${TCP}`,
      `80/tcp -> [::]:${TCP}`,
      `80/tcp -> ${outside.host4}:${BOUND}`,
      `5353/udp -> 0.0.0.0:${UDP}`,
      `5353/udp -> [::]:${UDP}`,
    ]);
    expect(findRecords(listRecords(path.join(stateDir, 'portmap')), ID1.slice(0, 8))).toHaveLength(1);
    expect(findRecords(listRecords(path.join(stateDir, 'portmap')), c1.path)).toHaveLength(1);
  });
});

describe('conflicts', () => {
  it('refuses a port another attachment publishes, naming it, and leaves nothing behind', async () => {
    const before = shoalNatText();
    const r = await runCni(plugin, env('ADD', c2, ID2, 'other'), conf(c2, [{ hostPort: UDP + 100, containerPort: 1 }, { hostPort: TCP, containerPort: 80 }]));
    expect(r.exitCode).toBe(1);
    // Code 100, shoal-portmap's own (src/portmap/README.md): not 999's "anything else".
    expect(r.json?.code).toBe(100);
    expect(r.json?.msg).toBe(`port ${TCP}/tcp is already published by web (${ID1.slice(0, 12)})`);
    expect(shoalNatText()).toBe(before);
    expect(listRecords(path.join(stateDir, 'portmap')).map((x) => x.containerId)).toEqual([ID1]);
  });

  it('refuses a specific hostIP when the port is published on every address', async () => {
    const r = await runCni(plugin, env('ADD', c2, ID2), conf(c2, [{ hostPort: TCP, containerPort: 80, hostIP: outside.host4 }]));
    expect(r.json?.code).toBe(100);
    expect(r.json?.msg).toMatch(new RegExp(`port ${outside.host4}:${TCP}/tcp is already published by web`));
  });

  it('allows the same port with another protocol or another host IP', async () => {
    const r = await runCni(plugin, env('ADD', c2, ID2, 'other'), conf(c2, [{ hostPort: TCP, containerPort: 80, protocol: 'udp' }, { hostPort: BOUND, containerPort: 80, hostIP: net1.gw4 }]));
    expect(r.stdout).not.toMatch(/"code"/);
    expect(r.exitCode).toBe(0);
    expect(probe(c3.ns, 'udp', net2.gw4, TCP)).toBe('timeout'); // c2 runs no server: DNAT to it, no answer
    expect(probe(undefined, 'tcp', net1.gw4, BOUND)).toMatch(/^error ECONNREFUSED/);
  });
});

describe('GC and DEL', () => {
  it('GC removes the rules of attachments not in the valid set and keeps the others', async () => {
    const r = await runCni(plugin, { CNI_COMMAND: 'GC', CNI_PATH: '/usr/lib/cni' }, {
      cniVersion: '1.1.0', name: NET, type: 'shoal-portmap', stateDir,
      'cni.dev/valid-attachments': [{ containerID: ID1, ifname: 'eth0' }],
    });
    expect(r.stdout).toBe('');
    expect(shoalNatText()).not.toContain(ID2);
    expect(listRecords(path.join(stateDir, 'portmap')).map((x) => x.containerId)).toEqual([ID1]);
    expect(probe(undefined, 'tcp', '127.0.0.1', TCP)).toBe(`tcp ${net1.gw4}`);
  });

  it('DEL removes every rule mentioning the ports and their UDP conntrack entries', async () => {
    expect(probe(outside.ns, 'udp', outside.host4, UDP, 40123)).toMatch(/^udp /);
    const tracked = () => listConntrack(4).filter((e) => e.orig.proto === 17 && e.orig.dstPort === UDP);
    expect(tracked().length).toBeGreaterThan(0);
    const r = await runCni(plugin, env('DEL', c1, ID1), conf(c1, MAPPINGS));
    expect(r.exitCode).toBe(0);
    const text = shoalNatText();
    for (const p of [TCP, UDP, BOUND]) expect(text).not.toContain(String(p));
    expect(text).not.toContain(ID1);
    expect(tracked()).toEqual([]);
    expect(listRecords(path.join(stateDir, 'portmap'))).toEqual([]);
    expect(probe(undefined, 'tcp', '127.0.0.1', TCP)).toMatch(/^error ECONNREFUSED/);
  });

  it('DEL again (and DEL without netns) succeeds', async () => {
    const r = await runCni(plugin, { ...env('DEL', c1, ID1), CNI_NETNS: '' }, conf(c1, MAPPINGS));
    expect(r.exitCode).toBe(0);
  });

  it('a re-published UDP port reaches the new container at once', async () => {
    const r = await runCni(plugin, env('ADD', c1, ID1, 'web'), conf(c1, MAPPINGS));
    expect(r.exitCode).toBe(0);
    expect(probe(outside.ns, 'udp', outside.host4, UDP, 40123)).toBe(`udp ${outside.ext4}`);
  });

  it('leaves tables Shoal does not own byte-for-byte unchanged', () => {
    expect(sh('nft', ['list', 'table', 'ip', DECOY])).toBe(decoyBefore);
  });
});
