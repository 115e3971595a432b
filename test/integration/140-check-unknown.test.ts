/**
 * CNI CHECK of an attachment that was never added, for every plugin (the executables): the
 * spec's code 3 ("container unknown or does not exist"), a message naming the container and
 * interface and what is missing, and nothing created by the CHECK. Against an empty container
 * namespace (created by the runtime, never attached) and a namespace path that does not exist.
 * An attachment with a part left is not "unknown": that case stays a failed check (100, 110).
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KernelObjects, ipJson, waitNoLeftovers } from '../helpers/kernel-objects.js';
import { uniqueName } from '../helpers/names.js';
import { execCni, privateBundles } from '../e2e/helpers/cni-exec.js';

const PREFIX = 'ck';
const objects = new KernelObjects(PREFIX);
const PLUGINS = ['shoal-bridge', 'shoal-macvlan', 'shoal-ipvlan', 'shoal-vxlan', 'shoal-portmap', 'shoal-dns', 'shoal-ipam'] as const;
let bin: { dir: string; remove(): void };
let stateDir: string;
let ctr: { name: string; path: string };

beforeAll(() => {
  bin = privateBundles([...PLUGINS]);
  stateDir = mkdtempSync(path.join(os.tmpdir(), 'shoal-ck-state-'));
  ctr = objects.netns();
}, 120_000);

afterAll(async () => {
  objects.cleanup();
  bin.remove();
  rmSync(stateDir, { recursive: true, force: true });
  expect(await waitNoLeftovers(PREFIX)).toEqual([]);
});

const ipam = () => ({ type: 'shoal-ipam', subnet: '10.185.90.0/24', stateDir });

/** Each plugin's config for a network nothing was ever added to (the bridge is never made). */
function configFor(type: (typeof PLUGINS)[number], network: string): Record<string, unknown> {
  const base = { cniVersion: '1.0.0', name: network, type };
  switch (type) {
    case 'shoal-bridge':
      return { ...base, bridge: objects.linkName(), stateDir, ipam: ipam() };
    case 'shoal-macvlan':
    case 'shoal-ipvlan':
      // The master is never looked at by CHECK before the attachment is found unknown.
      return { ...base, master: objects.linkName(), ipam: ipam() };
    case 'shoal-vxlan':
      return { ...base, vni: 4242, bridge: objects.linkName(), stateDir, ipam: ipam() };
    case 'shoal-portmap':
      return { ...base, stateDir, runtimeConfig: { portMappings: [{ hostPort: 18590, containerPort: 80, protocol: 'tcp' }] } };
    case 'shoal-dns':
      return { ...base, stateDir };
    case 'shoal-ipam':
      return { ...base, ipam: ipam() };
  }
}

const prevResult = (netns: string) => ({
  cniVersion: '1.0.0',
  interfaces: [{ name: 'eth0', sandbox: netns, mac: '02:00:00:00:00:01' }],
  ips: [{ address: '10.185.90.7/24', interface: 0, gateway: '10.185.90.1' }],
});

const hostLinks = () => ipJson<{ ifname: string }[]>(['link', 'show']).map((l) => l.ifname).sort();
const shoalNat = () => ['ip', 'ip6'].map((f) => spawnSync('nft', ['list', 'table', f, 'shoal-nat'], { encoding: 'utf8' }).stdout).join('\n');

describe.each(PLUGINS)('%s CHECK of an attachment never added', (type) => {
  for (const where of ['an empty container namespace', 'a namespace that does not exist'] as const) {
    it(`answers code 3 naming what is missing (${where}), and creates nothing`, async () => {
      const netns = where === 'an empty container namespace' ? ctr.path : `/run/netns/${uniqueName(PREFIX)}`;
      const network = uniqueName(PREFIX);
      const containerId = `never-${uniqueName(PREFIX)}`;
      const config = { ...configFor(type, network), prevResult: prevResult(netns) };
      const natBefore = shoalNat();
      const linksBefore = hostLinks();
      const files = readdirSync(stateDir).sort();
      const r = await execCni(path.join(bin.dir, type), { command: 'CHECK', containerId, netns, ifname: 'eth0', path: [bin.dir], config });
      expect(r.code, r.stdout + r.stderr).not.toBe(0);
      expect(r.json, r.stdout).toMatchObject({ code: 3 });
      const msg = String(r.json!['msg']);
      expect(msg).toContain(containerId);
      expect(msg).toContain('eth0');
      // Never a stack trace, never 999's "internal error".
      expect(msg).not.toMatch(/\n\s+at /);
      // Other engineers' links come and go on this host: only new links of ours would count.
      expect(hostLinks().filter((l) => !linksBefore.includes(l) && (l.startsWith(PREFIX) || l.startsWith('veth')))).toEqual([]);
      expect(ipJson<unknown[]>(['link', 'show'], ctr.name).length).toBe(1);
      expect(shoalNat()).toBe(natBefore);
      // The store file may be created by the first opener; nothing else appears.
      expect(readdirSync(stateDir).filter((f) => !f.startsWith('shoal.db') && !files.includes(f))).toEqual([]);
    });
  }
});

describe('an attachment with a part left is not unknown', () => {
  it('shoal-bridge CHECK where only the IPAM allocation is left: a failed check (the runtime must DEL), not code 3', async () => {
    const network = uniqueName(PREFIX);
    const containerId = `half-${uniqueName(PREFIX)}`;
    const config = configFor('shoal-bridge', network);
    const call = { containerId, netns: ctr.path, ifname: 'eth0', path: [bin.dir] };
    // The allocation a bridge ADD makes first, without the links (as after a crash mid-ADD).
    const add = await execCni(path.join(bin.dir, 'shoal-ipam'), { ...call, command: 'ADD', config: { ...config, type: 'shoal-ipam' } });
    expect(add.code, add.stdout + add.stderr).toBe(0);
    try {
      const address = (add.json!['ips'] as Array<{ address: string }>)[0]!.address;
      const prev = { ...prevResult(ctr.path), ips: [{ address, interface: 0 }] };
      const r = await execCni(path.join(bin.dir, 'shoal-bridge'), { ...call, command: 'CHECK', config: { ...config, prevResult: prev } });
      expect(r.code).not.toBe(0);
      expect(r.json!['code'], r.stdout).not.toBe(3);
      expect(String(r.json!['msg'])).toMatch(/does not exist|missing/);
    } finally {
      const del = await execCni(path.join(bin.dir, 'shoal-ipam'), { ...call, command: 'DEL', config: { ...config, type: 'shoal-ipam' } });
      expect(del.code, del.stdout).toBe(0);
    }
  });
});
