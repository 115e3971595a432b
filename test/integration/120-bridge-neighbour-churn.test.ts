/**
 * A running container keeps its gateway while neighbours come and go (issue 12). One container
 * pings its gateway and asks the daemon's DNS on the gateway every 100 ms (a local name and a
 * forwarded one) while 20 neighbours are attached and detached around it in a seeded random
 * order: no reply may be lost and the bridge's MAC may not change. Also: an address released
 * and handed to a new container is reachable at once by a neighbour that talked to the previous
 * holder, and a bridge made without a MAC of its own (an older build) is pinned on the next ADD
 * without a lost reply. And the first IPv6 packets routed to a container on a brand-new bridge
 * do not wait for the bridge's link-local address to finish duplicate address detection.
 *
 * Subnets 10.212.x.0/24, 10.213.x.0/29 and fd12:120::/32 are this file's alone.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deleteAttachmentRules, removeNetworkPolicy } from '../../src/bridge/firewall.js';
import { bridgeMac } from '../../src/bridge/mac.js';
import { watchContainer, type Watch } from '../helpers/continuity.js';
import { startDnsmasq, loopbackNet, type Dnsmasq } from '../helpers/dns-live.js';
import { KernelObjects, ipJson, ipQuiet, waitNoLeftovers } from '../helpers/kernel-objects.js';
import { uniqueName } from '../helpers/names.js';
import { seededRandom, TEST_SEED } from '../helpers/random.js';
import { execCni, ping, privateBundles, type CniRun } from '../e2e/helpers/cni-exec.js';
import { api, startDaemon, waitFor, type DaemonProc } from './daemon-helpers.js';

const PREFIX = 'nbc';
const objects = new KernelObjects(PREFIX);
const bridges = new Set<string>();
const networks = new Set<string>();
const watches: Watch[] = [];
const upstreamNet = loopbackNet(120);
let bin: { dir: string; remove(): void };
let stateDir: string;
let runDir: string;
let upstream: Dnsmasq | undefined;
let daemon: DaemonProc | undefined;
const attached: Array<{ config: Record<string, unknown>; id: string; netns: string }> = [];

// The churn orders are seeded, so a failing order can be replayed with SHOAL_TEST_SEED.
const seed = TEST_SEED;

interface Net {
  name: string;
  bridge: string;
  gateway: string;
  config: Record<string, unknown>;
}

function network(subnet: string, gateway: string, extra: Record<string, unknown> = {}): Net {
  const name = uniqueName(PREFIX);
  const bridge = uniqueName(PREFIX);
  networks.add(name);
  bridges.add(bridge);
  const config = {
    cniVersion: '1.0.0',
    name,
    type: 'shoal-bridge',
    bridge,
    isGateway: true,
    ipMasq: false,
    stateDir,
    ipam: { type: 'shoal-ipam', subnet, gateway, stateDir, routes: [{ dst: '0.0.0.0/0' }] },
    ...extra,
  };
  return { name, bridge, gateway, config };
}

async function cni(command: 'ADD' | 'DEL', config: Record<string, unknown>, id: string, netns: string, podName?: string): Promise<CniRun> {
  const run = await execCni(path.join(bin.dir, 'shoal-bridge'), {
    command,
    containerId: id,
    netns,
    ifname: 'eth0',
    cniArgs: `IgnoreUnknown=1${podName ? `;K8S_POD_NAME=${podName}` : ''}`,
    path: [bin.dir],
    config,
  });
  if (command === 'ADD' && run.code === 0) attached.push({ config, id, netns });
  const index = attached.findIndex((a) => a.id === id && a.netns === netns);
  if (command === 'DEL' && index >= 0) attached.splice(index, 1);
  return run;
}

function ipOf(run: CniRun): string {
  return (run.json?.['ips'] as Array<{ address: string }>)[0]!.address.split('/')[0]!;
}

function linkOf(name: string, netns?: string): { address: string } {
  return ipJson<Array<{ address: string }>>(['link', 'show', 'dev', name], netns)[0]!;
}

const macOf = (name: string, netns?: string) => linkOf(name, netns).address;

beforeAll(async () => {
  bin = privateBundles(['shoal-bridge', 'shoal-ipam']);
  stateDir = mkdtempSync(path.join(os.tmpdir(), 'shoal-120-state-'));
  runDir = mkdtempSync(path.join(os.tmpdir(), 'shoal-120-run-'));
  upstream = await startDnsmasq(upstreamNet(1), ['--address=/far.example/192.0.2.77', '--local-ttl=0']);
}, 120_000);

afterAll(async () => {
  for (const w of watches) w.kill();
  for (const a of attached.splice(0).reverse()) await cni('DEL', a.config, a.id, a.netns).catch(() => undefined);
  const stopped = await daemon?.stop();
  for (const n of networks) deleteAttachmentRules((o) => o.startsWith(`${n}/`));
  for (const b of bridges) {
    removeNetworkPolicy(b);
    ipQuiet(['link', 'del', 'dev', b]);
  }
  objects.cleanup();
  await upstream?.stop();
  bin.remove();
  rmSync(stateDir, { recursive: true, force: true });
  rmSync(runDir, { recursive: true, force: true });
  expect(await waitNoLeftovers(PREFIX)).toEqual([]);
  expect(stopped?.code ?? 0).toBe(0);
}, 120_000);

describe('120 a container keeps its gateway while neighbours come and go', () => {
  it(`ping and DNS to the gateway every 100 ms lose nothing while 20 neighbours join and leave in random order (seed ${seed})`, async () => {
    const x = Math.floor(Math.random() * 250);
    const net = network(`10.212.${x}.0/24`, `10.212.${x}.1`, {
      capabilities: { aliases: true },
      discovery: { domainName: 'churn.test', upstreams: [`${upstream!.address}:${upstream!.port}`] },
    });
    const [watcher, steady] = [objects.netns(), objects.netns()];
    const w = await cni('ADD', net.config, uniqueName('w'), watcher.path, 'watcher');
    expect(w.code, w.stdout + w.stderr).toBe(0);
    const s = await cni('ADD', net.config, uniqueName('s'), steady.path, 'steady');
    expect(s.code, s.stdout + s.stderr).toBe(0);
    daemon = await startDaemon({ state: stateDir, run: runDir });
    await waitFor('the DNS listener on the gateway', async () => ((await api(daemon!.socket, '/v1/status')).body as { listeners: string[] }).listeners.some((l) => l.includes(net.gateway)) || undefined, 10_000);

    const macBefore = macOf(net.bridge);
    expect(macBefore).toBe(bridgeMac(net.bridge));
    const watch = await watchContainer(watcher.path, {
      gateway: net.gateway,
      names: [
        { name: 'steady.churn.test', address: ipOf(s) },
        { name: 'www.far.example', address: '192.0.2.77' },
      ],
    });
    watches.push(watch);

    // Each neighbour is attached once and detached once; the interleaving is random.
    const random = seededRandom(seed).next;
    const neighbours = Array.from({ length: 20 }, () => ({ id: uniqueName('n'), ns: objects.netns(), up: false, done: false }));
    const macsSeen = new Set<string>([macBefore]);
    while (neighbours.some((n) => !n.done)) {
      const open = neighbours.filter((n) => !n.done);
      const n = open[Math.floor(random() * open.length)]!;
      const r = await cni(n.up ? 'DEL' : 'ADD', net.config, n.id, n.ns.path, n.id);
      expect(r.code, `${n.up ? 'DEL' : 'ADD'} ${n.id} (seed ${seed}): ${r.stdout}${r.stderr}`).toBe(0);
      if (n.up) n.done = true;
      n.up = !n.up;
      macsSeen.add(macOf(net.bridge));
    }
    const report = await watch.stop();

    expect(report.ping.sent, 'the churn took long enough to matter').toBeGreaterThan(20);
    expect(report.ping.lost, `pings without reply (seed ${seed})`).toEqual([]);
    expect(report.dns, 'the DNS probe reported').toBeDefined();
    expect(report.dns!.lost, `DNS queries without answer (seed ${seed})`).toEqual([]);
    expect(report.dns!.wrong, `DNS queries answered wrongly (seed ${seed})`).toEqual([]);
    expect(report.dns!.answered).toBe(report.dns!.sent);
    expect(report.dns!.sent).toBeGreaterThan(20);
    expect([...macsSeen], `seed ${seed}`).toEqual([macBefore]);
  }, 120_000);

  it('an address released and handed to a new container is reachable at once by a neighbour that talked to the previous holder', async () => {
    // A /29: gateway .1 and five addresses, all held, so the one released is the one reused.
    const base = `10.213.${Math.floor(Math.random() * 250)}.${8 * Math.floor(Math.random() * 31)}`;
    const [a, b, c, d] = base.split('.').map(Number) as [number, number, number, number];
    const net = network(`${base}/29`, `${a}.${b}.${c}.${d + 1}`);
    const neighbour = objects.netns();
    expect((await cni('ADD', net.config, 'nb', neighbour.path)).code).toBe(0);
    const holders = [];
    for (let i = 0; i < 4; i++) {
      const ns = objects.netns();
      const r = await cni('ADD', net.config, `h${i}`, ns.path);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      holders.push({ id: `h${i}`, ns, ip: ipOf(r) });
    }
    const old = holders[2]!;
    // The neighbour talks to the holder: its neighbour table now maps the address to a MAC.
    expect(ping(neighbour.name, old.ip)).toBe(true);
    const oldMac = macOf('eth0', old.ns.name);
    expect((await cni('DEL', net.config, old.id, old.ns.path)).code).toBe(0);

    const fresh = objects.netns();
    const r = await cni('ADD', net.config, 'fresh', fresh.path);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(ipOf(r)).toBe(old.ip);
    // One probe with a 1 s deadline: no retry that would give ARP time to go stale.
    expect(ping(neighbour.name, old.ip), 'the new holder answers within 1 s').toBe(true);
    expect(macOf('eth0', fresh.name)).toBe(oldMac);
  }, 60_000);

  it('a bridge made without a MAC of its own (an older build) is pinned on the next ADD; its container loses no reply', async () => {
    const x = Math.floor(Math.random() * 250);
    const net = network(`10.212.${x}.0/24`, `10.212.${x}.1`);
    // What an older build left: a bridge whose MAC follows its ports, a container on it.
    expect(ipQuiet(['link', 'add', 'name', net.bridge, 'type', 'bridge'])).toBe(true);
    expect(readFileSync(`/sys/class/net/${net.bridge}/addr_assign_type`, 'latin1').trim()).not.toBe('3');
    expect(ipQuiet(['addr', 'add', `${net.gateway}/24`, 'dev', net.bridge])).toBe(true);
    expect(ipQuiet(['link', 'set', net.bridge, 'up'])).toBe(true);
    const old = objects.netns();
    const hostEnd = objects.linkName();
    expect(ipQuiet(['link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', old.name])).toBe(true);
    expect(ipQuiet(['link', 'set', hostEnd, 'master', net.bridge, 'up'])).toBe(true);
    expect(ipQuiet(['addr', 'add', `10.212.${x}.200/24`, 'dev', 'eth0'], old.name)).toBe(true);
    expect(ipQuiet(['link', 'set', 'eth0', 'up'], old.name)).toBe(true);
    const watch = await watchContainer(old.path, { gateway: net.gateway });
    watches.push(watch);
    const macBefore = macOf(net.bridge);

    const random = seededRandom(seed + 1).next;
    const joined: Array<{ id: string; ns: { path: string } }> = [];
    for (let i = 0; i < 8; i++) {
      const leave = joined.length > 0 && random() < 0.4;
      if (leave) {
        const n = joined.splice(Math.floor(random() * joined.length), 1)[0]!;
        expect((await cni('DEL', net.config, n.id, n.ns.path)).code).toBe(0);
      } else {
        const n = { id: uniqueName('o'), ns: objects.netns() };
        const r = await cni('ADD', net.config, n.id, n.ns.path);
        expect(r.code, r.stdout + r.stderr).toBe(0);
        joined.push(n);
      }
      expect(macOf(net.bridge), `after step ${i} (seed ${seed})`).toBe(macBefore);
    }
    for (const n of joined) expect((await cni('DEL', net.config, n.id, n.ns.path)).code).toBe(0);
    expect(macOf(net.bridge)).toBe(macBefore);
    expect(readFileSync(`/sys/class/net/${net.bridge}/addr_assign_type`, 'latin1').trim()).toBe('3');
    const report = await watch.stop();
    expect(report.ping.lost, `seed ${seed}`).toEqual([]);
    expect(report.ping.sent).toBeGreaterThan(5);
  }, 60_000);

  it('IPv6 from another host interface reaches a container on a brand-new bridge at once (no wait for link-local DAD)', async () => {
    const x = Math.floor(Math.random() * 0xffff).toString(16);
    const net = network(`10.212.0.0/24`, `10.212.0.1`, {
      ipam: { type: 'shoal-ipam', subnet: `fd12:120:${x}::/64`, gateway: `fd12:120:${x}::1`, stateDir, routes: [{ dst: '::/0' }] },
    });
    // A source address on another host link, as routed or DNATed traffic has: the bridge must
    // solicit the container's MAC from its own link-local address, which a new bridge had not
    // finished checking for 1-2 s.
    const [other, otherPeer] = [objects.linkName(), objects.linkName()];
    expect(ipQuiet(['link', 'add', other, 'type', 'veth', 'peer', 'name', otherPeer])).toBe(true);
    expect(ipQuiet(['addr', 'add', `fd12:120:${x}:1::1/64`, 'dev', other, 'nodad'])).toBe(true);
    expect(ipQuiet(['link', 'set', other, 'up'])).toBe(true);
    const ctr = objects.netns();
    const r = await cni('ADD', net.config, uniqueName('v6'), ctr.path);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const address = ipOf(r);
    const out = spawnSync('ping', ['-6', '-n', '-c1', '-W3', '-I', `fd12:120:${x}:1::1`, address], { encoding: 'utf8' });
    const rtt = Number(/time=([\d.]+) ms/.exec(out.stdout)?.[1] ?? Number.NaN);
    expect(out.status, out.stdout + out.stderr).toBe(0);
    expect(rtt, 'first reply in ms (a bridge still checking its fe80:: took 1000-2000)').toBeLessThan(500);
    expect(readFileSync(`/proc/sys/net/ipv6/conf/${net.bridge}/accept_dad`, 'latin1').trim()).toBe('0');
  }, 60_000);
});
