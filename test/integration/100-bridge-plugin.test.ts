/**
 * shoal-bridge end to end: the built executable, run as a runtime runs it, against real
 * namespaces, with shoal-ipam in-process. Each scenario runs for every CNI version. The
 * embedded steps (`portmap`, `discovery` sections: shoal-portmap and shoal-dns in-process) are
 * exercised once, version-independently.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ipamCheck } from '../../src/ipam/plugin.js';
import { deleteAttachmentRules, removeNetworkPolicy } from '../../src/bridge/firewall.js';
import { hostVethName } from '../../src/bridge/names.js';
import { KernelObjects, hostLinkExists, ipJson, ipQuiet, waitNoLeftovers } from '../helpers/kernel-objects.js';
import { uniqueName } from '../helpers/names.js';
import { CNI_VERSIONS, execCni, ping, pingEventually, privateBundles, shoalRulesOwnedBy, type CniRun } from '../e2e/helpers/cni-exec.js';
import { NftTransaction, applyTransaction } from '../../src/kernel/nftables.js';
import { readTable } from '../../src/kernel/nftables-reader.js';
import { CHAIN, MAP, tableOf } from '../../src/portmap/rules.js';
import { listRecords, portmapDir } from '../../src/portmap/state.js';
import { getEndpoint } from '../../src/dns/registry.js';
import { openStateStore } from '../../src/store/open.js';
import { probe, startServers, stopServers } from './portmap-fixture.js';

const PREFIX = 'l2b';
const objects = new KernelObjects(PREFIX);
const bridges = new Set<string>();
const networks = new Set<string>();
let bin: { dir: string; remove(): void };
let stateDir: string;

beforeAll(() => {
  bin = privateBundles(['shoal-bridge', 'shoal-ipam']);
  stateDir = mkdtempSync(path.join(os.tmpdir(), 'shoal-l2b-state-'));
}, 120_000);

afterAll(async () => {
  for (const n of networks) deleteAttachmentRules((o) => o.startsWith(`${n}/`));
  for (const b of bridges) {
    removeNetworkPolicy(b);
    ipQuiet(['link', 'del', 'dev', b]);
  }
  removeIdlePortmapInfra();
  objects.cleanup();
  bin.remove();
  rmSync(stateDir, { recursive: true, force: true });
  const left = await waitNoLeftovers(PREFIX);
  expect(left).toEqual([]);
  for (const n of networks) expect(shoalRulesOwnedBy(`${n}/`)).toEqual([]);
});

/** The shared portmap-* chains and maps stay after the last DEL (by design); drop them when idle. */
function removeIdlePortmapInfra(): void {
  for (const f of [4, 6] as const) {
    const t = readTable(tableOf(f));
    if (!t || t.chains.some((c) => c.name.startsWith('portmap-c-'))) continue;
    const tx = new NftTransaction();
    for (const c of Object.values(CHAIN)) if (t.chains.some((x) => x.name === c)) tx.deleteChain(tableOf(f), c);
    for (const m of Object.values(MAP)) if (t.maps.some((x) => x.name === m)) tx.deleteSet(tableOf(f), m, 'map');
    if (!tx.isEmpty) applyTransaction(tx);
  }
}

let subnetCounter = 0;
// A random start per run, then consecutive: two networks of one run never share a /24 (a
// shared subnet on two bridges sends replies out of the wrong one: that was a flaky ping).
const subnetOffset = Math.floor(Math.random() * 1000);
/** A /24 unique within this file's run: 10.231-10.234.x.0/24. */
function nextSubnet(): string {
  subnetCounter += 1;
  const n = (subnetOffset + subnetCounter) % 1000;
  return `10.${231 + Math.floor(n / 250)}.${n % 250}.0/24`;
}

interface Net {
  name: string;
  bridge: string;
  subnet: string;
  config(version: string, extra?: Record<string, unknown>): Record<string, unknown>;
}

function network(options: Record<string, unknown> = {}, ipam: Record<string, unknown> = {}): Net {
  const name = uniqueName(PREFIX);
  const bridge = uniqueName(PREFIX);
  const subnet = (ipam['subnet'] as string | undefined) ?? nextSubnet();
  networks.add(name);
  bridges.add(bridge);
  return {
    name,
    bridge,
    subnet,
    config: (version, extra = {}) => ({
      cniVersion: version,
      name,
      type: 'shoal-bridge',
      bridge,
      isGateway: true,
      isDefaultGateway: true,
      ipMasq: true,
      ...options,
      ipam: { type: 'shoal-ipam', subnet, stateDir, ...ipam },
      ...extra,
    }),
  };
}

const bridgeBin = () => path.join(bin.dir, 'shoal-bridge');

function cni(command: 'ADD' | 'DEL' | 'CHECK' | 'GC' | 'STATUS', config: Record<string, unknown>, c: { id?: string; netns?: string; ifname?: string; cniArgs?: string } = {}): Promise<CniRun> {
  return execCni(bridgeBin(), {
    command,
    containerId: c.id,
    netns: c.netns,
    ifname: command === 'GC' || command === 'STATUS' ? undefined : (c.ifname ?? 'eth0'),
    cniArgs: c.cniArgs,
    path: [bin.dir, '/usr/lib/cni'],
    config,
  });
}

function ipOf(run: CniRun): string {
  const ips = run.json?.['ips'] as Array<{ address: string }>;
  return ips[0]!.address.split('/')[0]!;
}

async function holdsNothing(net: Net, id: string, ifname = 'eth0'): Promise<boolean> {
  try {
    await ipamCheck({ containerId: id, ifname, network: net.name, ipam: { subnet: net.subnet }, stateDir, prevResult: { ips: [] } });
    return false;
  } catch (err) {
    return /holds no addresses/.test((err as Error).message);
  }
}

describe.each(CNI_VERSIONS)('shoal-bridge, cniVersion %s', (version) => {
  const checks = version !== '0.3.1';

  it('two containers reach each other and the gateway; MTU, result shape, masquerade, CHECK, DEL', async () => {
    const net = network({ mtu: 1400 });
    const [a, b] = [objects.netns(), objects.netns()];
    const addA = await cni('ADD', net.config(version), { id: 'ca', netns: a.path });
    expect(addA.code, addA.stdout + addA.stderr).toBe(0);
    const addB = await cni('ADD', net.config(version), { id: 'cb', netns: b.path });
    expect(addB.code, addB.stdout).toBe(0);

    const result = addA.json!;
    expect(result['cniVersion']).toBe(version);
    const ifaces = result['interfaces'] as Array<{ name: string; mac?: string; sandbox?: string; mtu?: number }>;
    expect(ifaces.map((i) => i.name)).toEqual([net.bridge, hostVethName(net.name, 'ca', 'eth0'), 'eth0']);
    expect(ifaces[2]!.sandbox).toBe(a.path);
    for (const i of ifaces) expect(i.mac).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    if (version === '1.1.0') expect(ifaces[2]!.mtu).toBe(1400);
    else expect(ifaces[2]!.mtu).toBeUndefined();
    const ips = result['ips'] as Array<Record<string, unknown>>;
    expect(ips[0]).toMatchObject({ interface: 2, gateway: net.subnet.replace(/0\/24$/, '1') });
    expect('version' in ips[0]!).toBe(version.startsWith('0.'));
    expect(result['routes']).toEqual([{ dst: '0.0.0.0/0', gw: net.subnet.replace(/0\/24$/, '1') }]);

    // The container's link, as iproute2 sees it.
    const link = ipJson<Array<{ mtu: number; address: string; operstate: string }>>(['link', 'show', 'eth0'], a.name)[0]!;
    expect(link.mtu).toBe(1400);
    expect(link.address).toBe(ifaces[2]!.mac);
    expect(ipJson<Array<{ master?: string }>>(['link', 'show', ifaces[1]!.name])[0]!.master).toBe(net.bridge);

    expect(pingEventually(a.name, ipOf(addB))).toBe(true);
    expect(pingEventually(b.name, ipOf(addA))).toBe(true);
    expect(ping(a.name, net.subnet.replace(/0\/24$/, '1'))).toBe(true);

    const masq = shoalRulesOwnedBy(`${net.name}/ca/eth0`);
    expect(masq).toMatchObject([{ family: 'ip', table: 'shoal-nat', chain: 'l2_postrouting' }]);

    if (checks) {
      const ok = await cni('CHECK', net.config(version, { prevResult: result }), { id: 'ca', netns: a.path });
      expect(ok.code, ok.stdout).toBe(0);
      // Tampering: the link down, then an address removed; each fails CHECK with a JSON error.
      ipQuiet(['link', 'set', 'eth0', 'down'], a.name);
      const down = await cni('CHECK', net.config(version, { prevResult: result }), { id: 'ca', netns: a.path });
      expect(down.code).toBe(1);
      expect(down.json).toMatchObject({ cniVersion: version, msg: expect.stringContaining('down') });
      ipQuiet(['link', 'set', 'eth0', 'up'], a.name);
      ipQuiet(['addr', 'del', `${ipOf(addA)}/24`, 'dev', 'eth0'], a.name);
      const noAddr = await cni('CHECK', net.config(version, { prevResult: result }), { id: 'ca', netns: a.path });
      expect(noAddr.code).toBe(1);
      expect(noAddr.json).toMatchObject({ msg: expect.stringContaining(`address ${ipOf(addA)}/24 is missing`) });
    } else {
      const refused = await cni('CHECK', net.config(version, { prevResult: result }), { id: 'ca', netns: a.path });
      expect(refused.json).toMatchObject({ code: 1 });
    }

    for (const [id, ns] of [['ca', a], ['cb', b]] as const) {
      for (let i = 0; i < 2; i++) {
        const del = await cni('DEL', net.config(version), { id, netns: ns.path });
        expect(del.code, del.stdout).toBe(0);
      }
      expect(hostLinkExists(hostVethName(net.name, id, 'eth0'))).toBe(false);
      expect(await holdsNothing(net, id)).toBe(true);
    }
    expect(shoalRulesOwnedBy(`${net.name}/`)).toEqual([]);
    expect(ipJson<unknown[]>(['link', 'show', 'type', 'veth'], a.name)).toEqual([]);
  });

  it('a failed ADD leaves nothing: exhausted IPAM, missing netns, bad config, conflict after IPAM', async () => {
    const net = network({}, { subnet: nextSubnet().replace(/\/24$/, '/30') });
    const [a, b] = [objects.netns(), objects.netns()];
    const first = await cni('ADD', net.config(version), { id: 'f1', netns: a.path });
    expect(first.code, first.stdout).toBe(0);
    // A /30 has one address besides the gateway: the second ADD fails and must leave nothing.
    const full = await cni('ADD', net.config(version), { id: 'f2', netns: b.path });
    expect(full.code).toBe(1);
    expect(full.json).toMatchObject({ cniVersion: version, msg: expect.stringContaining('no free address') });
    expect(hostLinkExists(hostVethName(net.name, 'f2', 'eth0'))).toBe(false);
    expect(ipJson<unknown[]>(['link', 'show', 'type', 'veth'], b.name)).toEqual([]);
    expect(shoalRulesOwnedBy(`${net.name}/f2/`)).toEqual([]);
    expect(await holdsNothing(net, 'f2')).toBe(true);

    const gone = await cni('ADD', net.config(version), { id: 'f3', netns: '/run/netns/l2b-does-not-exist' });
    expect(gone.json).toMatchObject({ code: 3 });
    expect(await holdsNothing(net, 'f3')).toBe(true);

    const vlan = await cni('ADD', net.config(version, { vlan: 100 }), { id: 'f4', netns: b.path });
    expect(vlan.json).toMatchObject({ code: 2, msg: expect.stringContaining('"vlan" = 100') });
    const badMtu = await cni('ADD', net.config(version, { mtu: 10 }), { id: 'f4', netns: b.path });
    expect(badMtu.json).toMatchObject({ code: 7, msg: expect.stringContaining('field "mtu": 10') });

    // The bridge holds another gateway: the ADD fails after the veth and the allocation exist.
    const other = network({ bridge: net.bridge });
    const conflict = await cni('ADD', other.config(version), { id: 'f5', netns: b.path });
    expect(conflict.code).toBe(1);
    expect(conflict.json).toMatchObject({ msg: expect.stringContaining('forceAddress') });
    expect(hostLinkExists(hostVethName(other.name, 'f5', 'eth0'))).toBe(false);
    expect(ipJson<unknown[]>(['link', 'show', 'type', 'veth'], b.name)).toEqual([]);
    expect(shoalRulesOwnedBy(`${other.name}/`)).toEqual([]);
    expect(await holdsNothing(other, 'f5')).toBe(true);

    expect((await cni('DEL', net.config(version), { id: 'f1', netns: a.path })).code).toBe(0);
    expect(shoalRulesOwnedBy(`${net.name}/`)).toEqual([]);
  });

  it('DEL with the netns already gone still releases the address, the rules and the veth', async () => {
    const net = network();
    const a = objects.netns();
    const add = await cni('ADD', net.config(version), { id: 'g1', netns: a.path });
    expect(add.code, add.stdout).toBe(0);
    ipQuiet(['netns', 'del', a.name]);
    const del = await cni('DEL', net.config(version), { id: 'g1', netns: a.path });
    expect(del.code, del.stdout).toBe(0);
    expect(hostLinkExists(hostVethName(net.name, 'g1', 'eth0'))).toBe(false);
    expect(shoalRulesOwnedBy(`${net.name}/`)).toEqual([]);
    expect(await holdsNothing(net, 'g1')).toBe(true);
  });

  it('isolate: a container on network A cannot reach one on network B, and can once both share A', async () => {
    const netA = network({ isolate: true });
    const netB = network({ isolate: true });
    const [a, b] = [objects.netns(), objects.netns()];
    const addA = await cni('ADD', netA.config(version), { id: 'ia', netns: a.path });
    const addB = await cni('ADD', netB.config(version), { id: 'ib', netns: b.path });
    expect([addA.code, addB.code], addA.stdout + addB.stdout).toEqual([0, 0]);
    expect(pingEventually(a.name, ipOf(addB), 2)).toBe(false);
    expect(pingEventually(b.name, ipOf(addA), 2)).toBe(false);
    // Gateways stay reachable: isolation is between networks, not from the host.
    expect(pingEventually(a.name, netA.subnet.replace(/0\/24$/, '1'))).toBe(true);
    // b joins A as well (a second interface): now they reach each other on A.
    // (no second default route: the container's default is via B, as a runtime would set it up)
    const bOnA = await cni('ADD', netA.config(version, { isDefaultGateway: false }), { id: 'ib', netns: b.path, ifname: 'eth1' });
    expect(bOnA.code, bOnA.stdout).toBe(0);
    expect(pingEventually(a.name, ipOf(bOnA))).toBe(true);
    for (const [net, id, ns, ifname] of [[netA, 'ia', a, 'eth0'], [netB, 'ib', b, 'eth0'], [netA, 'ib', b, 'eth1']] as const) {
      expect((await cni('DEL', net.config(version), { id, netns: ns.path, ifname })).code).toBe(0);
    }
  });

  it('internal: no default route, no masquerade, and no way out even with a route added by hand', async () => {
    const internal = network({ internal: true });
    const open = network({});
    // An "outside" namespace reachable from the host only: 10.235.x.0/30 on a veth pair.
    const out = objects.netns();
    const hostEnd = objects.linkName();
    const third = Math.floor(Math.random() * 250);
    ipQuiet(['link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', 'o0', 'netns', out.name]);
    ipQuiet(['addr', 'add', `10.235.${third}.1/30`, 'dev', hostEnd]);
    ipQuiet(['link', 'set', hostEnd, 'up']);
    ipQuiet(['addr', 'add', `10.235.${third}.2/30`, 'dev', 'o0'], out.name);
    ipQuiet(['link', 'set', 'o0', 'up'], out.name);
    const outside = `10.235.${third}.2`;

    const [i, o] = [objects.netns(), objects.netns()];
    const addI = await cni('ADD', internal.config(version), { id: 'ni', netns: i.path });
    const addO = await cni('ADD', open.config(version), { id: 'no', netns: o.path });
    expect([addI.code, addO.code], addI.stdout + addO.stdout).toEqual([0, 0]);
    expect(addI.json?.['routes']).toBeUndefined();
    expect(shoalRulesOwnedBy(`${internal.name}/`)).toEqual([]);
    // The open network gets out (masqueraded to the host's address on the outside link).
    expect(pingEventually(o.name, outside)).toBe(true);
    expect(ping(i.name, outside)).toBe(false);
    ipQuiet(['route', 'add', 'default', 'via', internal.subnet.replace(/0\/24$/, '1')], i.name);
    expect(pingEventually(i.name, outside, 2)).toBe(false);
    expect(pingEventually(i.name, internal.subnet.replace(/0\/24$/, '1'))).toBe(true);
    expect((await cni('DEL', internal.config(version), { id: 'ni', netns: i.path })).code).toBe(0);
    expect((await cni('DEL', open.config(version), { id: 'no', netns: o.path })).code).toBe(0);
  });
});

describe('shoal-bridge, version-independent behaviour', () => {
  it('a vlan is refused with the kernel\'s own answer (code 2, naming the field), leaving nothing behind', async () => {
    // What the kernel says, asked independently of the plugin through iproute2.
    const probe = uniqueName(PREFIX);
    const kernelFilters = ipQuiet(['link', 'add', probe, 'type', 'bridge', 'vlan_filtering', '1']);
    ipQuiet(['link', 'del', probe]);
    const net = network();
    const a = objects.netns();
    for (const [field, value] of [['vlan', 100], ['vlanTrunk', [{ id: 5 }]]] as const) {
      const add = await cni('ADD', net.config('1.0.0', { [field]: value }), { id: 'vl', netns: a.path });
      expect(add.json).toMatchObject({ code: 2, msg: expect.stringContaining(`unsupported field "${field}" = ${JSON.stringify(value)}`) });
      expect(add.json!['msg']).toMatch(kernelFilters ? /does not program VLANs yet/ : /the kernel refuses VLAN filtering on bridges \(.+\)/);
    }
    // Neither the plugin's probe bridge (vlptmp*) nor the network's bridge was left behind.
    expect(ipJson<Array<{ ifname: string }>>(['link', 'show']).filter((l) => l.ifname.startsWith('vlptmp') || l.ifname === net.bridge)).toEqual([]);
    expect(ipJson<unknown[]>(['link', 'show', 'type', 'veth'], a.name)).toEqual([]);
    expect(await holdsNothing(net, 'vl')).toBe(true);
  });

  it('32 racing ADDs on a new bridge all succeed, and all DELs leave nothing', async () => {
    const net = network({}, { subnet: nextSubnet() });
    const spaces = Array.from({ length: 32 }, () => objects.netns());
    const adds = await Promise.all(spaces.map((ns, n) => cni('ADD', net.config('1.0.0'), { id: `r${n}`, netns: ns.path })));
    for (const run of adds) expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(new Set(adds.map(ipOf)).size).toBe(32);
    expect(pingEventually(spaces[0]!.name, ipOf(adds[31]!))).toBe(true);
    const dels = await Promise.all(spaces.map((ns, n) => cni('DEL', net.config('1.0.0'), { id: `r${n}`, netns: ns.path })));
    for (const run of dels) expect(run.code, run.stdout).toBe(0);
    expect(shoalRulesOwnedBy(`${net.name}/`)).toEqual([]);
    expect(ipJson<unknown[]>(['link', 'show', 'master', net.bridge])).toEqual([]);
  }, 120_000);

  it('GC removes rules and allocations of attachments not in the valid list; STATUS asks the IPAM', async () => {
    const net = network({}, { subnet: nextSubnet().replace(/\/24$/, '/29') });
    const [a, b] = [objects.netns(), objects.netns()];
    expect((await cni('ADD', net.config('1.1.0'), { id: 'keep', netns: a.path })).code).toBe(0);
    expect((await cni('ADD', net.config('1.1.0'), { id: 'stale', netns: b.path })).code).toBe(0);
    const gc = await cni('GC', net.config('1.1.0', { 'cni.dev/valid-attachments': [{ containerID: 'keep', ifname: 'eth0' }] }));
    expect(gc.code, gc.stdout).toBe(0);
    expect(shoalRulesOwnedBy(`${net.name}/stale/`)).toEqual([]);
    expect(shoalRulesOwnedBy(`${net.name}/keep/`)).toHaveLength(1);
    expect(await holdsNothing(net, 'stale')).toBe(true);
    expect(await holdsNothing(net, 'keep')).toBe(false);
    expect((await cni('STATUS', net.config('1.1.0'))).code).toBe(0);
    for (const [id, ns] of [['keep', a], ['stale', b]] as const) expect((await cni('DEL', net.config('1.1.0'), { id, netns: ns.path })).code).toBe(0);
  });

  it('delegates to an exec\'d IPAM (reference host-local) when ipam.type is not shoal-ipam', async () => {
    const net = network();
    const dataDir = path.join(stateDir, 'host-local');
    const config = { ...net.config('1.0.0'), ipam: { type: 'host-local', subnet: net.subnet, dataDir } };
    const a = objects.netns();
    const add = await cni('ADD', config, { id: 'hl', netns: a.path, cniArgs: 'IgnoreUnknown=1;K8S_POD_NAME=hl' });
    expect(add.code, add.stdout + add.stderr).toBe(0);
    expect(ipOf(add)).toBe(net.subnet.replace(/0\/24$/, '2'));
    expect((await cni('CHECK', { ...config, prevResult: add.json }, { id: 'hl', netns: a.path })).code).toBe(0);
    expect((await cni('DEL', config, { id: 'hl', netns: a.path })).code).toBe(0);
  });

  it('options: MAC from CNI_ARGS / args / runtimeConfig, hairpin, promisc, macspoofchk', async () => {
    const net = network({ hairpinMode: true, macspoofchk: true });
    const a = objects.netns();
    const mac = '02:42:0a:e7:00:99';
    const add = await cni('ADD', net.config('1.0.0', { runtimeConfig: { mac } }), { id: 'm1', netns: a.path, cniArgs: 'IgnoreUnknown=1;MAC=02:42:0a:e7:00:01' });
    expect(add.code, add.stdout).toBe(0);
    expect(ipJson<Array<{ address: string }>>(['link', 'show', 'eth0'], a.name)[0]!.address).toBe(mac);
    const port = ipJson<Array<{ linkinfo?: { info_slave_data?: { hairpin?: boolean } } }>>(['link', 'show', hostVethName(net.name, 'm1', 'eth0')])[0]!;
    expect(port.linkinfo?.info_slave_data?.hairpin).toBe(true);
    expect(shoalRulesOwnedBy(`${net.name}/m1/`).map((r) => r.chain).sort()).toEqual(['l2_macspoof', 'l2_postrouting']);
    expect((await cni('CHECK', net.config('1.0.0', { runtimeConfig: { mac }, prevResult: add.json }), { id: 'm1', netns: a.path })).code).toBe(0);
    expect((await cni('DEL', net.config('1.0.0'), { id: 'm1', netns: a.path })).code).toBe(0);
    expect(shoalRulesOwnedBy(`${net.name}/`)).toEqual([]);

    const promisc = network({ promiscMode: true });
    const b = objects.netns();
    expect((await cni('ADD', promisc.config('1.0.0'), { id: 'p1', netns: b.path })).code).toBe(0);
    expect(ipJson<Array<{ flags: string[]; promiscuity?: number }>>(['link', 'show', promisc.bridge])[0]!.flags).toContain('PROMISC');
    const both = await cni('ADD', promisc.config('1.0.0', { hairpinMode: true }), { id: 'p2', netns: b.path, ifname: 'eth1' });
    expect(both.json).toMatchObject({ code: 7 });
    expect((await cni('DEL', promisc.config('1.0.0'), { id: 'p1', netns: b.path })).code).toBe(0);
  });

  it('embedded portmap + discovery: publishes the port, registers the name; a failed embedded step leaves nothing; CHECK, GC, DEL', async () => {
    const net = network();
    const gateway = net.subnet.replace(/0\/24$/, '1');
    const port = 40000 + Math.floor(Math.random() * 5000);
    // What podman sends a plugin declaring both capabilities; stateDir for the records and store.
    const config = (ports: number[], extra: Record<string, unknown> = {}) =>
      net.config('1.0.0', {
        stateDir,
        capabilities: { portMappings: true, aliases: true },
        portmap: { snat: true },
        discovery: { domainName: 'emb.test' },
        runtimeConfig: { portMappings: ports.map((hostPort) => ({ hostPort, containerPort: 8080, protocol: 'tcp' })), aliases: { [net.name]: ['web-alias'] } },
        ...extra,
      });
    const args = (name: string) => `IgnoreUnknown=1;K8S_POD_NAME=${name}`;
    const store = await openStateStore(stateDir);
    const record = (id: string) => getEndpoint(store, { network: net.name, containerId: id, ifname: 'eth0' });
    const published = () => listRecords(portmapDir(stateDir)).filter((r) => r.network === net.name);
    const [a, b, c] = [objects.netns(), objects.netns(), objects.netns()];
    /** Nothing at all of `id`: veth, bridge rules, port rules, port record, allocation, DNS record. */
    const nothingOf = async (id: string, ns: { name: string }) => {
      expect(hostLinkExists(hostVethName(net.name, id, 'eth0'))).toBe(false);
      expect(ipJson<unknown[]>(['link', 'show', 'type', 'veth'], ns.name)).toEqual([]);
      expect(shoalRulesOwnedBy(`${net.name}/${id}/`)).toEqual([]);
      expect(shoalRulesOwnedBy(`portmap/${net.name}/${id}/`)).toEqual([]);
      expect(published().filter((r) => r.containerId === id)).toEqual([]);
      expect(await holdsNothing(net, id)).toBe(true);
      expect(await record(id)).toBeUndefined();
    };
    const servers = await startServers(a.name, 8080, 8081);
    try {
      const add = await cni('ADD', config([port]), { id: 'ea', netns: a.path, cniArgs: args('web1') });
      expect(add.code, add.stdout + add.stderr).toBe(0);
      // The bridge's result with shoal-dns's merge: the gateway is the nameserver.
      expect(add.json?.['dns']).toEqual({ nameservers: [gateway], search: ['emb.test'] });
      expect((add.json?.['interfaces'] as Array<{ name: string }>).map((i) => i.name)).toEqual([net.bridge, hostVethName(net.name, 'ea', 'eth0'), 'eth0']);
      // 127.0.0.1:port reaches the server in the container, masqueraded to the gateway (snat).
      expect(probe(undefined, 'tcp', '127.0.0.1', port)).toBe(`tcp ${gateway}`);
      expect(published()).toMatchObject([{ containerId: 'ea', name: 'web1', mappings: [{ hostPort: port, containerPort: 8080 }] }]);
      expect(await record('ea')).toMatchObject({ name: 'web1', aliases: ['web-alias'], ipv4: [`${ipOf(add)}/24`] });
      expect((await cni('CHECK', config([port], { prevResult: add.json }), { id: 'ea', netns: a.path, cniArgs: args('web1') })).code).toBe(0);
      // CHECK covers the embedded steps too: a port the runtime asks for that is not published.
      const wrong = await cni('CHECK', config([port + 1], { prevResult: add.json }), { id: 'ea', netns: a.path, cniArgs: args('web1') });
      expect(wrong.json).toMatchObject({ msg: expect.stringContaining(`port ${port + 1}/tcp`) });

      // The port is taken: portmap fails after the bridge's work, and the rollback undoes it all.
      const clash = await cni('ADD', config([port]), { id: 'eb', netns: b.path, cniArgs: args('web2') });
      expect(clash.code).toBe(1);
      expect(clash.json).toMatchObject({ code: 100, msg: expect.stringContaining(`port ${port}/tcp is already published by web1`) });
      await nothingOf('eb', b);
      // dns fails (a name that is no DNS name) after portmap published: that is undone as well.
      const badName = await cni('ADD', config([port + 2]), { id: 'ec', netns: c.path, cniArgs: args('bad!name') });
      expect(badName.json).toMatchObject({ code: 7, msg: expect.stringContaining('bad!name') });
      await nothingOf('ec', c);
      expect(probe(undefined, 'tcp', '127.0.0.1', port + 2)).not.toMatch(/^tcp /);
      // A bad field inside a section is named with the section's key.
      const badSection = await cni('ADD', config([], { discovery: { ttl: -1 } }), { id: 'ec', netns: c.path, cniArgs: args('web3') });
      expect(badSection.json).toMatchObject({ code: 7, msg: expect.stringContaining('field "discovery.ttl": -1') });
      await nothingOf('ec', c);

      // GC with no valid attachment removes the embedded steps' state as well as the bridge's.
      const gc = await cni('GC', config([], { cniVersion: '1.1.0', 'cni.dev/valid-attachments': [] }));
      expect(gc.code, gc.stdout).toBe(0);
      expect(published()).toEqual([]);
      expect(await record('ea')).toBeUndefined();
      expect(shoalRulesOwnedBy(`portmap/${net.name}/`)).toEqual([]);
      expect(await holdsNothing(net, 'ea')).toBe(true);
    } finally {
      stopServers(servers);
      // DEL (twice: idempotent) removes whatever is left: the veth after GC, everything on failure.
      for (const [id, ns] of [['ea', a], ['eb', b], ['ec', c]] as const) {
        for (let i = 0; i < 2; i++) {
          const del = await cni('DEL', config([port]), { id, netns: ns.path, cniArgs: args('x') });
          expect(del.code, del.stdout).toBe(0);
        }
      }
    }
    await nothingOf('ea', a);
  });

  it('embedded steps: DEL removes the published port and the DNS record', async () => {
    const net = network();
    const port = 45000 + Math.floor(Math.random() * 5000);
    const config = net.config('1.1.0', {
      stateDir,
      portmap: {},
      discovery: {},
      runtimeConfig: { portMappings: [{ hostPort: port, containerPort: 8080, protocol: 'tcp' }] },
    });
    const a = objects.netns();
    const servers = await startServers(a.name, 8080, 8081);
    try {
      const add = await cni('ADD', config, { id: 'da', netns: a.path, cniArgs: 'K8S_POD_NAME=db1' });
      expect(add.code, add.stdout + add.stderr).toBe(0);
      expect(probe(undefined, 'tcp', '127.0.0.1', port)).toMatch(/^tcp /);
      const store = await openStateStore(stateDir);
      expect(await getEndpoint(store, { network: net.name, containerId: 'da', ifname: 'eth0' })).toMatchObject({ name: 'db1' });
      // A DEL without the runtimeConfig (a runtime that does not resend it) still finds the port
      // to unpublish: the bridge skips portmap's DEL only when nothing says a port was published.
      const { runtimeConfig: _sent, ...withoutRc } = config;
      const del = await cni('DEL', { ...withoutRc, prevResult: add.json }, { id: 'da', netns: a.path });
      expect(del.code, del.stdout).toBe(0);
      expect(probe(undefined, 'tcp', '127.0.0.1', port)).not.toMatch(/^tcp /);
      expect(await getEndpoint(store, { network: net.name, containerId: 'da', ifname: 'eth0' })).toBeUndefined();
      expect(listRecords(portmapDir(stateDir)).filter((r) => r.network === net.name)).toEqual([]);
      expect(shoalRulesOwnedBy(`portmap/${net.name}/`)).toEqual([]);
      expect(hostLinkExists(hostVethName(net.name, 'da', 'eth0'))).toBe(false);
      expect(await holdsNothing(net, 'da')).toBe(true);
    } finally {
      stopServers(servers);
      await cni('DEL', config, { id: 'da', netns: a.path });
    }
  });
});
