/**
 * The overlay data plane on a test cluster (DESIGN §7): an underlay namespace with a bridge,
 * node namespaces with a veth into it and an underlay address, and containers made by
 * shoal-vxlan ADD run inside their node (`ip netns exec <node>`, each node with its own state
 * dir). Peers are programmed with src/overlay/peers.ts from what the ADD results say, as the
 * daemon will. Everything, VXLAN devices included, lives in this file's namespaces; the
 * addresses are private ranges picked per run and used only there.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KernelObjects, ipJson, ipQuiet, waitNoLeftovers } from '../helpers/kernel-objects.js';
import { uniqueName } from '../helpers/names.js';
import { execCni, ping, pingEventually, privateBundles, type CniRun } from '../e2e/helpers/cni-exec.js';
import { warmThreadpool } from '../../src/kernel/netns.js';
import { withRtnl } from '../../src/kernel/rtnl.js';
import { findLink, getLink } from '../../src/kernel/link.js';
import { ensureOverlayDevice, removeOverlayDevice } from '../../src/overlay/device.js';
import { OverlayConfigError } from '../../src/overlay/errors.js';
import { vxlanDeviceName } from '../../src/overlay/names.js';
import { resolveUnderlay } from '../../src/overlay/underlay.js';
import { overlayTarget, syncPeers, type PeerSyncReport, type RemoteEndpoint } from '../../src/overlay/peers.js';

const PREFIX = 'ovd';
const objects = new KernelObjects(PREFIX);
let bin: { dir: string; remove(): void };
let stateRoot: string;

// Third octets picked per run: 10.198.<n>.0/24 underlay, 10.197.<n>.0/24 overlay.
let octet = Math.floor(Math.random() * 240);
const nextOctet = () => (octet = (octet + 1) % 250);

beforeAll(async () => {
  await warmThreadpool();
  bin = privateBundles(['shoal-vxlan']);
  stateRoot = mkdtempSync(path.join(os.tmpdir(), 'shoal-ovd-state-'));
}, 120_000);

afterAll(async () => {
  objects.cleanup();
  bin?.remove();
  if (stateRoot) rmSync(stateRoot, { recursive: true, force: true });
  expect(await waitNoLeftovers(PREFIX)).toEqual([]);
});

interface Ns {
  name: string;
  path: string;
}
interface Node {
  ns: Ns;
  /** Underlay address (the node's VTEP). */
  addr: string;
  stateDir: string;
}
interface Cluster {
  underlay: Ns;
  /** The underlay bridge's own address: "the outside" for masquerade checks. */
  outside: string;
  nodes: Node[];
  /** Third octet of the underlay and overlay subnets. */
  n: number;
}

/** One underlay bridge, `count` nodes with a veth into it (MTU `mtu`) and a default route via it. */
function buildCluster(count: number, mtu = 1500): Cluster {
  const n = nextOctet();
  const underlay = objects.netns();
  const sh = (args: string[], ns: string) => expect(ipQuiet(args, ns), `ip ${args.join(' ')}`).toBe(true);
  sh(['link', 'add', 'ubr', 'type', 'bridge'], underlay.name);
  objects.trackLink('ubr', underlay.name);
  const nodes: Node[] = [];
  for (let i = 1; i <= count; i++) {
    const ns = objects.netns();
    sh(['link', 'add', `u${i}`, 'mtu', String(mtu), 'type', 'veth', 'peer', 'name', 'und', 'mtu', String(mtu), 'netns', ns.name], underlay.name);
    objects.trackLink(`u${i}`, underlay.name);
    sh(['link', 'set', `u${i}`, 'master', 'ubr', 'up'], underlay.name);
    sh(['link', 'set', 'lo', 'up'], ns.name);
    sh(['link', 'set', 'und', 'up'], ns.name);
    sh(['addr', 'add', `10.198.${n}.${i}/24`, 'dev', 'und'], ns.name);
    sh(['route', 'add', 'default', 'via', `10.198.${n}.254`], ns.name);
    nodes.push({ ns, addr: `10.198.${n}.${i}`, stateDir: mkdtempSync(path.join(stateRoot, 'node-')) });
  }
  sh(['link', 'set', 'ubr', 'mtu', String(mtu), 'up'], underlay.name);
  sh(['addr', 'add', `10.198.${n}.254/24`, 'dev', 'ubr'], underlay.name);
  return { underlay, outside: `10.198.${n}.254`, nodes, n };
}

/** A shoal-vxlan config for `node` (its own IPAM range in the overlay subnet and state dir). */
function vxlanConfig(cluster: Cluster, node: Node, network: string, vni: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const i = cluster.nodes.indexOf(node) + 1;
  return {
    cniVersion: '1.0.0',
    name: network,
    type: 'shoal-vxlan',
    vni,
    stateDir: node.stateDir,
    ipam: { type: 'shoal-ipam', subnet: `10.197.${cluster.n}.0/24`, rangeStart: `10.197.${cluster.n}.${i * 20 + 10}`, rangeEnd: `10.197.${cluster.n}.${i * 20 + 29}` },
    ...extra,
  };
}

/** Runs shoal-vxlan with the node as its own netns, as a runtime on that node would. */
function cni(node: Node, command: 'ADD' | 'DEL' | 'CHECK', config: Record<string, unknown>, containerId: string, netns: string): Promise<CniRun> {
  return execCni('ip', { command, containerId, netns, ifname: 'eth0', path: [bin.dir], config }, ['netns', 'exec', node.ns.name, path.join(bin.dir, 'shoal-vxlan')]);
}

interface Container {
  id: string;
  ns: Ns;
  node: Node;
  result: Record<string, unknown>;
  ip: string;
  mac: string;
  /** The gateway link's name (the config's `bridge`), first in the result. */
  gateway: string;
}

async function addContainer(cluster: Cluster, node: Node, network: string, vni: number, extra: Record<string, unknown> = {}): Promise<Container> {
  const ns = objects.netns();
  const id = uniqueName(PREFIX);
  const run = await cni(node, 'ADD', vxlanConfig(cluster, node, network, vni, extra), id, ns.path);
  expect(run.code, run.stdout + run.stderr).toBe(0);
  const result = run.json!;
  const ifaces = result['interfaces'] as Array<{ name: string; mac: string }>;
  const ip = (result['ips'] as Array<{ address: string }>)[0]!.address.split('/')[0]!;
  // [gateway, container]: the container's link is a macvlan, with no host end.
  expect(ifaces).toHaveLength(2);
  return { id, ns, node, result, ip, mac: ifaces[1]!.mac, gateway: ifaces[0]!.name };
}

/** What the daemon will publish for a container: its node's VTEP, its MAC and address. */
const endpointOf = (c: Container): RemoteEndpoint => ({ vtep: c.node.addr, mac: c.mac, ip: c.ip });

/** The daemon's part on every node: the network's remote endpoints programmed from the store. */
function syncAll(nodes: Node[], network: string, vni: number, containers: Container[]): PeerSyncReport[] {
  return nodes.map((node) => withRtnl(node.ns.path, (nl) => syncPeers(nl, overlayTarget(network, vni), containers.map(endpointOf), { localVtep: node.addr })));
}

interface FdbLine {
  mac: string;
  ifname?: string;
  dst?: string;
  flags: string[];
  master?: string;
  state?: string;
}
interface NeighLine {
  dst: string;
  dev: string;
  lladdr?: string;
  state: string[];
  protocol?: string;
}
/** iproute2 as the independent reader: every FDB entry and every neighbour in a namespace. */
const fdbAll = (ns: Ns): FdbLine[] => JSON.parse(spawnSync('bridge', ['-n', ns.name, '-j', 'fdb', 'show'], { encoding: 'utf8' }).stdout || '[]') as FdbLine[];
const neighAll = (ns: Ns): NeighLine[] => JSON.parse(spawnSync('ip', ['-n', ns.name, '-j', 'neigh', 'show'], { encoding: 'utf8' }).stdout || '[]') as NeighLine[];

interface LinkStats {
  mtu: number;
  stats64: { rx: { packets: number }; tx: { packets: number; dropped: number } };
}
const vxStats = (node: Node, vx: string) => ipJson<LinkStats[]>(['-s', 'link', 'show', 'dev', vx], node.ns.name)[0]!.stats64;

/** ping with the Don't Fragment bit and a payload of `size` bytes (IP packet = size + 28). */
function pingDf(ns: Ns, address: string, size: number): boolean {
  return spawnSync('ip', ['netns', 'exec', ns.name, 'ping', '-c', '1', '-W', '1', '-M', 'do', '-s', String(size), address], { stdio: 'ignore', timeout: 10_000 }).status === 0;
}

describe('shoal-vxlan on a three-node test cluster', () => {
  it('containers on different nodes reach each other by IP with no flooding, leave through their own node masqueraded, and leave no entry behind after DEL', async () => {
    const cluster = buildCluster(3);
    const [n1, n2, n3] = cluster.nodes as [Node, Node, Node];
    const net = uniqueName(PREFIX);
    const vni = 100_000 + cluster.n;
    const vx = vxlanDeviceName(net, vni);

    // Each node finds its underlay by a different rule: default route, interface, address.
    const c1 = await addContainer(cluster, n1, net, vni);
    const c2 = await addContainer(cluster, n2, net, vni, { underlayInterface: 'und' });
    const c3 = await addContainer(cluster, n3, net, vni, { underlayAddress: n3.addr });
    const gateway = c1.gateway;

    type LinkJson = { mtu: number; master?: string; link?: string; operstate: string; linkinfo: { info_kind: string; info_data: Record<string, unknown> } };
    for (const [node, c] of [[n1, c1], [n2, c2], [n3, c3]] as const) {
      const [link] = ipJson<LinkJson[]>(['-d', 'link', 'show', 'dev', vx], node.ns.name);
      expect(link!.linkinfo.info_data).toMatchObject({ id: vni, local: node.addr, port: 4789, learning: false, proxy: true, link: 'und' });
      expect(link!.mtu).toBe(1450);
      expect(link!.master, 'the VXLAN device is no bridge port').toBeUndefined();
      // The gateway and the container's link: macvlans in bridge mode on the VXLAN device.
      const [gw] = ipJson<LinkJson[]>(['-d', 'link', 'show', 'dev', gateway], node.ns.name);
      expect(gw).toMatchObject({ link: vx, operstate: 'UP', linkinfo: { info_kind: 'macvlan', info_data: { mode: 'bridge' } } });
      const [eth0] = ipJson<LinkJson[]>(['-d', 'link', 'show', 'eth0'], c.ns.name);
      expect(eth0).toMatchObject({ mtu: 1450, linkinfo: { info_kind: 'macvlan', info_data: { mode: 'bridge' } } });
      // The gateway: one address and one MAC on every node.
      expect(c.result['interfaces']).toEqual(expect.arrayContaining([expect.objectContaining({ name: gateway, mac: (c1.result['interfaces'] as Array<{ mac: string }>)[0]!.mac })]));
    }

    // Before any peer is programmed, nothing crosses: the ARP broadcast is dropped at the VXLAN device.
    const before3 = vxStats(n3, vx);
    expect(ping(c1.ns.name, c2.ip)).toBe(false);

    const first = syncAll(cluster.nodes, net, vni, [c1, c2, c3]);
    expect(first.map((r) => r.ops.length)).toEqual([4, 4, 4]);
    expect(first.flatMap((r) => r.problems)).toEqual([]);
    expect(syncAll(cluster.nodes, net, vni, [c1, c2, c3]).map((r) => r.ops.length), 'a second sync changes nothing').toEqual([0, 0, 0]);

    // What node 1 holds for c2, read by iproute2: FDB to node 2's VTEP, the neighbour; no flood entry.
    const fdb1 = fdbAll(n1.ns).filter((e) => e.ifname === vx || e.ifname === undefined);
    expect(fdb1).toEqual(expect.arrayContaining([expect.objectContaining({ mac: c2.mac, dst: n2.addr, flags: expect.arrayContaining(['self', 'extern_learn']) })]));
    expect(fdbAll(n1.ns).filter((e) => e.mac === '00:00:00:00:00:00')).toEqual([]);
    expect(neighAll(n1.ns)).toContainEqual(expect.objectContaining({ dst: c2.ip, dev: vx, lladdr: c2.mac, state: ['PERMANENT'] }));

    expect(pingEventually(c1.ns.name, c2.ip)).toBe(true);
    expect(pingEventually(c2.ns.name, c1.ip)).toBe(true);
    // The containers resolved each other's MAC (answered by their own node's VXLAN device).
    expect(neighAll(c1.ns)).toContainEqual(expect.objectContaining({ dst: c2.ip, lladdr: c2.mac }));

    // Node 3 took no part: its VXLAN device received nothing while 1 and 2 talked.
    expect(vxStats(n3, vx).rx.packets, 'no VXLAN packet reached the uninvolved node').toBe(before3.rx.packets);

    // An address nobody holds: c1 asks for it (its neighbour entry fails), node 1's VXLAN device
    // has no answer and sends nothing, no node receives anything: not flooded.
    const tx1 = vxStats(n1, vx).tx.packets;
    const rx = cluster.nodes.map((node) => vxStats(node, vx).rx.packets);
    const nobody = `10.197.${cluster.n}.250`;
    expect(ping(c1.ns.name, nobody)).toBe(false);
    expect(neighAll(c1.ns).find((e) => e.dst === nobody)?.state, 'c1 did ask').toEqual(expect.arrayContaining([expect.stringMatching(/INCOMPLETE|FAILED/)]));
    expect(vxStats(n1, vx).tx.packets, 'nothing encapsulated').toBe(tx1);
    expect(cluster.nodes.map((node) => vxStats(node, vx).rx.packets)).toEqual(rx);

    expect(pingEventually(c1.ns.name, c3.ip)).toBe(true);
    expect(pingEventually(c3.ns.name, c2.ip)).toBe(true);
    expect(vxStats(n3, vx).rx.packets, 'the counter does count traffic for node 3').toBeGreaterThan(before3.rx.packets);

    // Full-size frames cross (1450 = 1422 bytes of payload + 28), one byte more does not fit.
    expect(pingDf(c1.ns, c2.ip, 1422)).toBe(true);
    expect(pingDf(c1.ns, c2.ip, 1423)).toBe(false);

    // Off the overlay through its own node: the underlay has no route to the overlay subnet, so
    // the reply comes back only because node 1 masqueraded the request to its own address.
    expect(ipJson<unknown[]>(['route', 'show', `10.197.${cluster.n}.0/24`], cluster.underlay.name)).toEqual([]);
    expect(pingEventually(c1.ns.name, cluster.outside)).toBe(true);
    const nat = spawnSync('ip', ['netns', 'exec', n1.ns.name, 'nft', 'list', 'table', 'ip', 'shoal-nat'], { encoding: 'utf8' }).stdout;
    expect(nat).toContain(`ip saddr ${c1.ip} ip daddr != 10.197.${cluster.n}.0/24`);
    // Container-to-container frames are switched below node 1's netfilter (with a bridge and
    // br_netfilter, loaded here, every one went through its conntrack); routed traffic is tracked.
    const conntrack1 = spawnSync('ip', ['netns', 'exec', n1.ns.name, 'cat', '/proc/net/nf_conntrack'], { encoding: 'utf8' }).stdout;
    expect(conntrack1, 'the masqueraded ping is tracked').toContain(`src=${c1.ip} dst=${cluster.outside}`);
    expect(conntrack1, 'no entry for the pings between containers').not.toContain(`src=${c1.ip} dst=${c2.ip} `);

    // CHECK sees the VXLAN device: down is a failure naming it.
    const config1 = vxlanConfig(cluster, n1, net, vni);
    expect((await cni(n1, 'CHECK', { ...config1, prevResult: c1.result }, c1.id, c1.ns.path)).code).toBe(0);
    ipQuiet(['link', 'set', vx, 'down'], n1.ns.name);
    const broken = await cni(n1, 'CHECK', { ...config1, prevResult: c1.result }, c1.id, c1.ns.path);
    expect(broken.json).toMatchObject({ code: 999, msg: expect.stringContaining(`vxlan "${vx}": it is down`) });
    ipQuiet(['link', 'set', vx, 'up'], n1.ns.name);
    // Down flushed the device's neighbours (its proxy's answers); the daemon's next sync restores them.
    expect(syncAll([n1], net, vni, [c1, c2, c3])[0]!.ops.map((o) => o.op)).toEqual(['set-neighbour', 'set-neighbour']);

    // Entries someone else made on node 1 survive every sync.
    ipQuiet(['neigh', 'add', `10.197.${cluster.n}.200`, 'lladdr', '02:00:00:00:00:c8', 'dev', vx, 'nud', 'permanent'], n1.ns.name);
    expect(spawnSync('bridge', ['-n', n1.ns.name, 'fdb', 'add', '02:00:00:00:00:c9', 'dev', vx, 'dst', `10.198.${cluster.n}.99`, 'self', 'permanent']).status).toBe(0);

    // DEL c2, then the daemon's re-sync: nothing of c2 remains anywhere.
    const del = await cni(n2, 'DEL', vxlanConfig(cluster, n2, net, vni, { underlayInterface: 'und' }), c2.id, c2.ns.path);
    expect(del.code, del.stdout + del.stderr).toBe(0);
    const after = syncAll(cluster.nodes, net, vni, [c1, c3]);
    expect(after.map((r) => r.ops.map((o) => o.op))).toEqual([['del-neighbour', 'del-remote'], [], ['del-neighbour', 'del-remote']]);
    for (const node of cluster.nodes) {
      expect(fdbAll(node.ns).filter((e) => e.mac === c2.mac), node.ns.name).toEqual([]);
      expect(neighAll(node.ns).filter((e) => e.dst === c2.ip || e.lladdr === c2.mac), node.ns.name).toEqual([]);
    }
    expect(ping(c1.ns.name, c2.ip)).toBe(false);
    expect(pingEventually(c1.ns.name, c3.ip)).toBe(true);
    expect(neighAll(n1.ns)).toContainEqual(expect.objectContaining({ dst: `10.197.${cluster.n}.200`, lladdr: '02:00:00:00:00:c8', state: ['PERMANENT'] }));
    expect(fdbAll(n1.ns)).toContainEqual(expect.objectContaining({ mac: '02:00:00:00:00:c9', dst: `10.198.${cluster.n}.99` }));

    // With no endpoint left, only Shoal's entries go; the foreign ones stay.
    syncAll(cluster.nodes, net, vni, []);
    expect(fdbAll(n1.ns).filter((e) => e.flags.includes('extern_learn'))).toEqual([]);
    expect(neighAll(n1.ns).filter((e) => e.protocol !== undefined)).toEqual([]);
    expect(fdbAll(n1.ns)).toContainEqual(expect.objectContaining({ mac: '02:00:00:00:00:c9' }));

    for (const c of [c1, c3]) {
      const i = cluster.nodes.indexOf(c.node);
      const extra = i === 2 ? { underlayAddress: n3.addr } : {};
      expect((await cni(c.node, 'DEL', vxlanConfig(cluster, c.node, net, vni, extra), c.id, c.ns.path)).code).toBe(0);
    }
  }, 90_000);
});

describe('shoal-vxlan MTU', () => {
  it('a jumbo underlay (9000) gives a jumbo overlay (8950) end to end; `mtu` lowers it', async () => {
    const cluster = buildCluster(2, 9000);
    const [n1, n2] = cluster.nodes as [Node, Node];
    const net = uniqueName(PREFIX);
    const vni = 200_000 + cluster.n;
    // The embedded DNS registration (shoal-bridge's `discovery`) comes along: the container's
    // nameserver is the gateway, i.e. the DNS server on its own node.
    const a = await addContainer(cluster, n1, net, vni, { discovery: { domainName: 'ovl.test' } });
    expect(a.result['dns']).toEqual({ nameservers: [`10.197.${cluster.n}.1`], search: ['ovl.test'] });
    const b = await addContainer(cluster, n2, net, vni);
    for (const [node, c] of [[n1, a], [n2, b]] as const) {
      expect(ipJson<Array<{ mtu: number }>>(['link', 'show', vxlanDeviceName(net, vni)], node.ns.name)[0]!.mtu).toBe(8950);
      expect(ipJson<Array<{ mtu: number }>>(['link', 'show', 'eth0'], c.ns.name)[0]!.mtu).toBe(8950);
    }
    syncAll(cluster.nodes, net, vni, [a, b]);
    expect(pingEventually(a.ns.name, b.ip)).toBe(true);
    expect(pingDf(a.ns, b.ip, 8950 - 28)).toBe(true);

    // A second network on the same nodes with `mtu` set: the container gets that.
    const net2 = uniqueName(PREFIX);
    const c = await addContainer(cluster, n1, net2, vni + 1, { mtu: 1400 });
    expect(ipJson<Array<{ mtu: number }>>(['link', 'show', 'eth0'], c.ns.name)[0]!.mtu).toBe(1400);
    expect(ipJson<Array<{ mtu: number }>>(['link', 'show', vxlanDeviceName(net2, vni + 1)], n1.ns.name)[0]!.mtu).toBe(1400);
  }, 60_000);
});

describe('shoal-vxlan ADD: races and refusals', () => {
  it('six concurrent first ADDs of a network on one node all succeed on one VXLAN device', async () => {
    const cluster = buildCluster(1);
    const [node] = cluster.nodes as [Node];
    const net = uniqueName(PREFIX);
    const vni = 300_000 + cluster.n;
    const results = await Promise.all(Array.from({ length: 6 }, () => addContainer(cluster, node, net, vni)));
    expect(new Set(results.map((r) => r.ip)).size).toBe(6);
    const vxlans = ipJson<Array<{ ifname: string }>>(['link', 'show', 'type', 'vxlan'], node.ns.name);
    expect(vxlans).toEqual([expect.objectContaining({ ifname: vxlanDeviceName(net, vni) })]);
    const macvlans = ipJson<Array<{ ifname: string; link: string }>>(['link', 'show', 'type', 'macvlan'], node.ns.name);
    expect(macvlans, 'one gateway, on the VXLAN device').toEqual([expect.objectContaining({ ifname: results[0]!.gateway, link: vxlanDeviceName(net, vni) })]);
    expect(pingEventually(results[0]!.ns.name, results[5]!.ip)).toBe(true);
  }, 60_000);

  it('bad input is a code-7 error naming the field, and leaves nothing behind', async () => {
    const cluster = buildCluster(1);
    const [node] = cluster.nodes as [Node];
    const links = () => ipJson<Array<{ ifname: string }>>(['link', 'show'], node.ns.name).map((l) => l.ifname).sort();
    const taken = uniqueName(PREFIX);
    const vni = 400_000 + cluster.n;
    await addContainer(cluster, node, taken, vni);
    const baseline = links();
    const cases: Array<[Record<string, unknown>, string, string]> = [
      [{ vni: 0 }, 'vni', 'field "vni": 0 must be 1-16777214'],
      [{ vni: 16_777_215 }, 'vni', 'field "vni": 16777215 must be 1-16777214'],
      [{ underlayInterface: 'nope0' }, 'underlayInterface', 'field "underlayInterface": "nope0" does not exist'],
      [{ underlayAddress: '10.198.255.77' }, 'underlayAddress', 'field "underlayAddress": "10.198.255.77" is not an address of any interface'],
      [{ mtu: 1451 }, 'mtu', 'field "mtu": 1451 is more than the underlay "und" can carry'],
      [{ ipam: { type: 'shoal-ipam', subnet: '10.197.0.1/24' } }, 'ipam', 'field "ipam.subnet"'],
      // No host port to check a source MAC on: the container's link is a macvlan.
      [{ macspoofchk: true }, 'macspoofchk', 'field "macspoofchk": true is not available on an overlay'],
      // Another network with a VNI already used on this node: the kernel's own words, named as vni.
      [{ vni }, 'vni', 'A VXLAN device with the specified VNI already exists'],
    ];
    for (const [extra, field, text] of cases) {
      const ns = objects.netns();
      const config = vxlanConfig(cluster, node, uniqueName(PREFIX), 500_000, extra);
      const run = await cni(node, 'ADD', config, uniqueName(PREFIX), ns.path);
      expect(run.json, field).toMatchObject({ code: 7, msg: expect.stringContaining(text) });
      expect(run.json!['msg'], field).toMatch(/^invalid network config: field "/);
      expect(links(), `${field}: nothing left in the node`).toEqual(baseline);
      expect(ipQuiet(['link', 'show', 'dev', 'eth0'], ns.name), `${field}: no eth0 in the container`).toBe(false);
    }
  }, 60_000);
});

describe('ensureOverlayDevice (what the daemon calls)', () => {
  it('corrects in place what may change (re-addressed node, learning, MTU, down), refuses what may not, names the kernel\'s refusals', () => {
    const cluster = buildCluster(1);
    const [node] = cluster.nodes as [Node];
    const net = uniqueName(PREFIX);
    const vni = 600_000 + cluster.n;
    const vx = vxlanDeviceName(net, vni);
    const sh = (args: string[]) => expect(ipQuiet(args, node.ns.name), args.join(' ')).toBe(true);
    withRtnl(node.ns.path, (nl) => {
      const underlay = resolveUnderlay(nl, {});
      expect(underlay).toMatchObject({ address: node.addr, family: 4, mtu: 1500, link: expect.objectContaining({ name: 'und' }) });
      const first = ensureOverlayDevice(nl, { network: net, vni, gateway: 'ovbr0', underlay });
      expect(first.mtu).toBe(1450);
      expect(first.gateway).toMatchObject({ kind: 'macvlan', parentIndex: first.vxlan.index, up: true, mtu: 1450 });
      expect(first.vxlan.vxlan).toMatchObject({ learning: false, proxy: true });
      expect(ensureOverlayDevice(nl, { network: net, vni, gateway: 'ovbr0', underlay }).vxlan.index, 'idempotent').toBe(first.vxlan.index);

      // Someone changes things, and the node gets a new underlay address.
      sh(['link', 'set', vx, 'type', 'vxlan', 'learning']);
      sh(['link', 'set', 'ovbr0', 'down']);
      sh(['link', 'set', vx, 'mtu', '1400', 'down']);
      sh(['addr', 'add', `10.198.${cluster.n}.101/24`, 'dev', 'und']);
      const moved = resolveUnderlay(nl, { address: `10.198.${cluster.n}.101` });
      const again = ensureOverlayDevice(nl, { network: net, vni, gateway: 'ovbr0', underlay: moved });
      expect(again.vxlan.index, 'corrected, not re-created').toBe(first.vxlan.index);
      expect(again.vxlan).toMatchObject({ up: true, mtu: 1450, vxlan: expect.objectContaining({ local: `10.198.${cluster.n}.101`, learning: false, proxy: true }) });
      expect(again.gateway).toMatchObject({ index: first.gateway.index, up: true, mtu: 1450 });
      expect(getLink(nl, vx).up).toBe(true);

      // The kernel's own words for a VNI out of range, named as "vni"; nothing left.
      let refused: unknown;
      try {
        ensureOverlayDevice(nl, { network: net, vni: 16_777_216, gateway: 'ovbr0', underlay: moved });
      } catch (err) {
        refused = err;
      }
      expect(refused).toBeInstanceOf(OverlayConfigError);
      expect((refused as OverlayConfigError).field).toBe('vni');
      expect((refused as Error).message).toContain('field "vni": 16777216 was refused by the kernel: failed to create vxlan link "vx-1000000-');
      expect((refused as Error).message).toContain('VXLAN ID must be lower than 16777216');
      expect(ipJson<unknown[]>(['link', 'show', 'type', 'vxlan'], node.ns.name)).toHaveLength(1);

      // The network's gateway name changed under a live device: refused, not a second gateway.
      expect(() => ensureOverlayDevice(nl, { network: net, vni, gateway: 'ovbr1', underlay: moved })).toThrow(`failed to add gateway "ovbr1" to vxlan "${vx}": its gateway is "ovbr0"`);
      // A link of another kind under the gateway's name (an older Shoal's bridge too): refused before anything is made.
      sh(['link', 'add', 'ovbad', 'type', 'veth', 'peer', 'name', 'ovbad1']);
      sh(['link', 'add', 'ovold', 'type', 'bridge']);
      const other = uniqueName(PREFIX);
      expect(() => ensureOverlayDevice(nl, { network: other, vni: vni + 1, gateway: 'ovbad', underlay: moved })).toThrow('failed to use gateway "ovbad": it is a link of kind veth');
      expect(() => ensureOverlayDevice(nl, { network: other, vni: vni + 1, gateway: 'ovold', underlay: moved })).toThrow('failed to use gateway "ovold": it is an older Shoal\'s overlay bridge');
      expect(ipJson<unknown[]>(['link', 'show', 'type', 'vxlan'], node.ns.name)).toHaveLength(1);

      expect(removeOverlayDevice(nl, net, vni)).toBe(true);
      expect(findLink(nl, 'ovbr0'), 'the gateway goes with the VXLAN device').toBeUndefined();
      expect(removeOverlayDevice(nl, net, vni)).toBe(false);
    });
  });
});
