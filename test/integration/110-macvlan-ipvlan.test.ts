/**
 * shoal-macvlan and shoal-ipvlan end to end. The parent is always a veth inside a test
 * namespace (never a host interface): the plugin process itself runs in that namespace.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KernelObjects, ipJson, ipQuiet, waitNoLeftovers } from '../helpers/kernel-objects.js';
import { uniqueName } from '../helpers/names.js';
import { CNI_VERSIONS, execCni, ping, pingEventually, privateBundles, type CniRun } from '../e2e/helpers/cni-exec.js';
import { createLink, deleteLinkIfExists } from '../../src/kernel/link.js';
import { withRtnl } from '../../src/kernel/rtnl.js';

const PREFIX = 'l2m';
const objects = new KernelObjects(PREFIX);
let bin: { dir: string; remove(): void };
let stateDir: string;

beforeAll(() => {
  bin = privateBundles(['shoal-macvlan', 'shoal-ipvlan', 'shoal-ipam']);
  stateDir = mkdtempSync(path.join(os.tmpdir(), 'shoal-l2m-state-'));
}, 120_000);

afterAll(async () => {
  objects.cleanup();
  bin.remove();
  rmSync(stateDir, { recursive: true, force: true });
  expect(await waitNoLeftovers(PREFIX)).toEqual([]);
});

/** A parent link inside a namespace of its own: a veth pair with both ends in `parentNs`. */
function parentInNamespace(): { ns: { name: string; path: string }; parent: string } {
  const ns = objects.netns();
  ipQuiet(['link', 'add', 'par0', 'type', 'veth', 'peer', 'name', 'par1'], ns.name);
  ipQuiet(['link', 'set', 'par0', 'up'], ns.name);
  ipQuiet(['link', 'set', 'par1', 'up'], ns.name);
  return { ns, parent: 'par0' };
}

// A random start, then consecutive: subnets of one run never repeat.
let counter = Math.floor(Math.random() * 250);
function subnet(): string {
  counter += 1;
  return `10.236.${counter % 250}.0/24`;
}

/**
 * The plugin runs with its own netns set to a test namespace (`ip netns exec <parent ns>`), so
 * the parent veth, the temporary link and the move/rename all happen away from the host.
 */
describe.each(CNI_VERSIONS)('shoal-macvlan, cniVersion %s', (version) => {
  it('bridge mode: two containers on one parent reach each other; private mode: they do not', async () => {
    for (const mode of ['bridge', 'private'] as const) {
      const { ns: parentNs, parent } = parentInNamespace();
      const net = uniqueName(PREFIX);
      const sub = subnet();
      const config = { cniVersion: version, name: net, type: 'shoal-macvlan', master: parent, mode, mtu: 1400, ipam: { type: 'shoal-ipam', subnet: sub, stateDir } };
      // Both containers are macvlans of the same parent, made inside the parent's netns and
      // moved into the container namespaces by the plugin (parent lookup in its own netns).
      const [a, b] = [objects.netns(), objects.netns()];
      const adds: CniRun[] = [];
      for (const [id, ns] of [['ma', a], ['mb', b]] as const) {
        const res = await execInNetns(parentNs.name, 'macvlan', 'ADD', config, id, ns.path);
        expect(res.code, res.stdout + res.stderr).toBe(0);
        adds.push(res);
      }
      const ipB = (adds[1]!.json!['ips'] as Array<{ address: string }>)[0]!.address.split('/')[0]!;
      const link = ipJson<Array<{ mtu: number; linkinfo: { info_kind: string; info_data: { mode: string } } }>>(['-d', 'link', 'show', 'eth0'], a.name)[0]!;
      expect(link.linkinfo.info_kind).toBe('macvlan');
      expect(link.linkinfo.info_data.mode).toBe(mode);
      expect(link.mtu).toBe(1400);
      if (mode === 'bridge') expect(pingEventually(a.name, ipB)).toBe(true);
      else expect(ping(a.name, ipB)).toBe(false);
      if (version !== '0.3.1') {
        const chk = await execInNetns(parentNs.name, 'macvlan', 'CHECK', { ...config, prevResult: adds[0]!.json }, 'ma', a.path);
        expect(chk.code, chk.stdout).toBe(0);
        ipQuiet(['link', 'set', 'eth0', 'down'], a.name);
        const bad = await execInNetns(parentNs.name, 'macvlan', 'CHECK', { ...config, prevResult: adds[0]!.json }, 'ma', a.path);
        expect(bad.json).toMatchObject({ msg: expect.stringContaining('down') });
      }
      for (const [id, ns] of [['ma', a], ['mb', b]] as const) {
        expect((await execInNetns(parentNs.name, 'macvlan', 'DEL', config, id, ns.path)).code).toBe(0);
        expect(ipJson<unknown[]>(['link', 'show', 'type', 'macvlan'], ns.name)).toEqual([]);
      }
      expect(ipJson<unknown[]>(['link', 'show', 'type', 'macvlan'], parentNs.name)).toEqual([]);
    }
  });
});

/** Runs the plugin with its own netns set to `parentNs` (as if that were the host). */
function execInNetns(parentNs: string, kind: 'macvlan' | 'ipvlan', command: 'ADD' | 'DEL' | 'CHECK', config: Record<string, unknown>, id: string, netns: string): Promise<CniRun> {
  return execCni('ip', { command, containerId: id, netns, ifname: 'eth0', path: [bin.dir], config }, ['netns', 'exec', parentNs, path.join(bin.dir, `shoal-${kind}`)]);
}

describe('shoal-macvlan, version-independent', () => {
  it('a failed ADD (IPAM exhausted) leaves no link in the container or the parent netns', async () => {
    const { ns: parentNs, parent } = parentInNamespace();
    const config = { cniVersion: '1.0.0', name: uniqueName(PREFIX), type: 'shoal-macvlan', master: parent, ipam: { type: 'shoal-ipam', subnet: subnet().replace(/\/24$/, '/30'), stateDir } };
    const [a, b] = [objects.netns(), objects.netns()];
    expect((await execInNetns(parentNs.name, 'macvlan', 'ADD', config, 'x1', a.path)).code).toBe(0);
    const full = await execInNetns(parentNs.name, 'macvlan', 'ADD', config, 'x2', b.path);
    expect(full.json).toMatchObject({ msg: expect.stringContaining('no free address') });
    expect(ipJson<unknown[]>(['link', 'show', 'type', 'macvlan'], b.name)).toEqual([]);
    expect(ipJson<unknown[]>(['link', 'show', 'type', 'macvlan'], parentNs.name)).toEqual([]);
    expect((await execInNetns(parentNs.name, 'macvlan', 'DEL', config, 'x1', a.path)).code).toBe(0);
  });

  it('an address released and handed to a new macvlan container is reachable at once by a neighbour that talked to the previous holder', async () => {
    const { ns: parentNs, parent } = parentInNamespace();
    // A /29: five addresses, all held, so the one released is the one handed out next.
    const sub = subnet().replace(/0\/24$/, '0/29');
    const config = { cniVersion: '1.0.0', name: uniqueName(PREFIX), type: 'shoal-macvlan', master: parent, mode: 'bridge', ipam: { type: 'shoal-ipam', subnet: sub, stateDir } };
    const holders: Array<{ id: string; ns: { name: string; path: string }; ip: string }> = [];
    for (let i = 0; i < 5; i++) {
      const ns = objects.netns();
      const r = await execInNetns(parentNs.name, 'macvlan', 'ADD', config, `r${i}`, ns.path);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      holders.push({ id: `r${i}`, ns, ip: (r.json!['ips'] as Array<{ address: string }>)[0]!.address.split('/')[0]! });
    }
    const [neighbour, old] = [holders[0]!, holders[3]!];
    expect(pingEventually(neighbour.ns.name, old.ip)).toBe(true);
    expect((await execInNetns(parentNs.name, 'macvlan', 'DEL', config, old.id, old.ns.path)).code).toBe(0);
    const fresh = objects.netns();
    const r = await execInNetns(parentNs.name, 'macvlan', 'ADD', config, 'fresh', fresh.path);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect((r.json!['ips'] as Array<{ address: string }>)[0]!.address.split('/')[0]).toBe(old.ip);
    // One probe, 1 s deadline: the neighbour still holds the previous holder's MAC for the address.
    expect(ping(neighbour.ns.name, old.ip), 'the new holder answers within 1 s').toBe(true);
    for (const h of [...holders.filter((h) => h !== old), { id: 'fresh', ns: fresh }]) {
      expect((await execInNetns(parentNs.name, 'macvlan', 'DEL', config, h.id, h.ns.path)).code).toBe(0);
    }
  });

  it('master defaults to the interface of the default route', async () => {
    const { ns: parentNs } = parentInNamespace();
    ipQuiet(['addr', 'add', '10.236.251.1/24', 'dev', 'par0'], parentNs.name);
    ipQuiet(['route', 'add', 'default', 'via', '10.236.251.254'], parentNs.name);
    const config = { cniVersion: '1.0.0', name: uniqueName(PREFIX), type: 'shoal-macvlan', ipam: { type: 'shoal-ipam', subnet: subnet(), stateDir } };
    const a = objects.netns();
    const add = await execInNetns(parentNs.name, 'macvlan', 'ADD', config, 'd1', a.path);
    expect(add.code, add.stdout).toBe(0);
    const link = ipJson<Array<{ link_netnsid?: number; link?: string }>>(['link', 'show', 'eth0'], a.name)[0]!;
    expect(link.link_netnsid).toBeDefined();
    expect((await execInNetns(parentNs.name, 'macvlan', 'DEL', config, 'd1', a.path)).code).toBe(0);
  });
});

describe('shoal-macvlan, linkInContainer and mac', () => {
  it('makes the link inside the container from a parent that lives there, with the requested MAC; DEL removes it and keeps the parent', async () => {
    // The parent veth is inside the container netns itself; the plugin runs in a namespace
    // where no link of that name exists, so only a lookup in the container can find it.
    const ctr = objects.netns();
    ipQuiet(['link', 'add', 'cpar0', 'type', 'veth', 'peer', 'name', 'cpar1'], ctr.name);
    ipQuiet(['link', 'set', 'cpar0', 'up'], ctr.name);
    const runner = objects.netns();
    const config = { cniVersion: '1.0.0', name: uniqueName(PREFIX), type: 'shoal-macvlan', master: 'cpar0', linkInContainer: true, mac: '02:53:48:00:00:42', ipam: { type: 'shoal-ipam', subnet: subnet(), stateDir } };
    const add = await execInNetns(runner.name, 'macvlan', 'ADD', config, 'lc1', ctr.path);
    expect(add.code, add.stdout + add.stderr).toBe(0);
    const [link] = ipJson<Array<{ address: string; link?: string; link_netnsid?: number; linkinfo: { info_kind: string } }>>(['-d', 'link', 'show', 'eth0'], ctr.name);
    expect(link!.linkinfo.info_kind).toBe('macvlan');
    expect(link!.link).toBe('cpar0');
    expect(link!.link_netnsid).toBeUndefined();
    expect(link!.address).toBe('02:53:48:00:00:42');
    const ifaces = add.json!['interfaces'] as Array<{ name: string; mac: string; sandbox?: string }>;
    expect(ifaces).toContainEqual(expect.objectContaining({ name: 'eth0', mac: '02:53:48:00:00:42', sandbox: ctr.path }));
    expect(ipJson<unknown[]>(['link', 'show', 'type', 'macvlan'], runner.name)).toEqual([]);
    expect((await execInNetns(runner.name, 'macvlan', 'DEL', config, 'lc1', ctr.path)).code).toBe(0);
    expect(ipJson<unknown[]>(['link', 'show', 'type', 'macvlan'], ctr.name)).toEqual([]);
    expect(ipJson<Array<{ ifname: string }>>(['link', 'show', 'cpar0'], ctr.name)[0]!.ifname).toBe('cpar0');
  });

  it('without linkInContainer the same parent is not found: code and message name the master, nothing is left', async () => {
    const ctr = objects.netns();
    ipQuiet(['link', 'add', 'cpar0', 'type', 'veth', 'peer', 'name', 'cpar1'], ctr.name);
    const runner = objects.netns();
    const config = { cniVersion: '1.0.0', name: uniqueName(PREFIX), type: 'shoal-macvlan', master: 'cpar0', ipam: { type: 'shoal-ipam', subnet: subnet(), stateDir } };
    const add = await execInNetns(runner.name, 'macvlan', 'ADD', config, 'lc2', ctr.path);
    expect(add.code).not.toBe(0);
    expect(add.json).toMatchObject({ msg: expect.stringContaining('cpar0') });
    expect(ipJson<unknown[]>(['link', 'show', 'type', 'macvlan'], ctr.name)).toEqual([]);
    expect(ipJson<unknown[]>(['link', 'show', 'type', 'macvlan'], runner.name)).toEqual([]);
  });
});

describe('shoal-ipvlan', () => {
  it('is refused by this kernel: the test shows the kernel\'s reason', async (ctx) => {
    // Probe: can this kernel make an ipvlan at all? (a throw-away one in a test namespace)
    const { ns: parentNs } = parentInNamespace();
    let refusal: string | undefined;
    withRtnl(parentNs.path, (nl) => {
      try {
        createLink(nl, { kind: 'ipvlan', name: 'ipvprobe', parent: 'par0', mode: 'l2' });
        deleteLinkIfExists(nl, 'ipvprobe');
      } catch (err) {
        refusal = (err as Error).message;
      }
    });
    const config = { cniVersion: '1.0.0', name: uniqueName(PREFIX), type: 'shoal-ipvlan', master: 'par0', mode: 'l2', ipam: { type: 'shoal-ipam', subnet: subnet(), stateDir } };
    const a = objects.netns();
    const add = await execInNetns(parentNs.name, 'ipvlan', 'ADD', config, 'v1', a.path);
    if (refusal) {
      // The plugin reports the kernel's refusal and leaves nothing behind.
      expect(add.code).toBe(1);
      expect(add.json?.['msg']).toContain('failed to create ipvlan link');
      expect(ipJson<unknown[]>(['link', 'show'], a.name).length).toBe(1); // lo only
      ctx.skip(`this kernel cannot create ipvlan links: ${String(add.json?.['msg'])}`);
      return;
    }
    expect(add.code, add.stdout).toBe(0);
    expect((await execInNetns(parentNs.name, 'ipvlan', 'DEL', config, 'v1', a.path)).code).toBe(0);
  });
});
