import fs from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LinkExistsError, LinkNotFoundError, NetlinkError } from '../../src/kernel/errors.js';
import {
  changeLinkInfo,
  createLink,
  deleteLink,
  deleteLinkIfExists,
  findLink,
  getBridgePortFlags,
  getLink,
  listLinks,
  moveLinkToNetns,
  renameLink,
  setBridgePortFlags,
  setLinkDown,
  setLinkMac,
  setLinkMaster,
  setLinkMtu,
  setLinkUp,
} from '../../src/kernel/link.js';
import { warmThreadpool } from '../../src/kernel/netns.js';
import { openRtnl, type Rtnl } from '../../src/kernel/rtnl.js';
import { hostLinkExists, ipJson, KernelObjects, waitNoLeftovers } from '../helpers/kernel-objects.js';

const PREFIX = 'nll';
const objs = new KernelObjects(PREFIX);
let nl: Rtnl;

interface IpLink {
  ifname: string;
  ifindex: number;
  mtu: number;
  address: string;
  flags: string[];
  master?: string;
  link_index?: number;
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown>; info_slave_kind?: string; info_slave_data?: Record<string, unknown> };
}

function ipLink(name: string, netns?: string): IpLink {
  const [l] = ipJson<IpLink[]>(['link', 'show', 'dev', name], netns);
  if (!l) throw new Error(`ip did not report ${name}`);
  return l;
}

function sys(name: string, file: string): string {
  return fs.readFileSync(`/sys/class/net/${name}/${file}`, 'utf8').trim();
}

beforeAll(async () => {
  await warmThreadpool();
  nl = openRtnl();
});
afterEach(() => objs.cleanup());
afterAll(async () => {
  objs.cleanup();
  nl?.close();
  expect(await waitNoLeftovers(PREFIX)).toEqual([]);
});

describe('bridge links', () => {
  it('creates, gets by name and index, lists and deletes a bridge', () => {
    const name = objs.linkName();
    const created = createLink(nl, { kind: 'bridge', name, mtu: 1400 });
    expect(created.kind).toBe('bridge');
    expect(created.name).toBe(name);

    const seen = ipLink(name);
    expect(seen.ifindex).toBe(created.index);
    expect(seen.linkinfo?.info_kind).toBe('bridge');
    expect(seen.mtu).toBe(1400);
    expect(getLink(nl, created.index).name).toBe(name);
    expect(listLinks(nl).map((l) => l.name)).toContain(name);

    expect(() => createLink(nl, { kind: 'bridge', name })).toThrow(LinkExistsError);
    deleteLink(nl, name);
    expect(hostLinkExists(name)).toBe(false);
    expect(() => getLink(nl, name)).toThrow(LinkNotFoundError);
    expect(findLink(nl, name)).toBeUndefined();
    expect(deleteLinkIfExists(nl, name)).toBe(false);
    expect(() => deleteLink(nl, name)).toThrow(LinkNotFoundError);
  });

  it('reports a missing link with the name and a LinkNotFoundError', () => {
    const err = (() => {
      try {
        getLink(nl, 'nllmissing0');
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(LinkNotFoundError);
    expect((err as Error).message).toContain('"nllmissing0"');
    expect((err as Error).cause).toBeInstanceOf(NetlinkError);
  });

  it('sets up/down, MTU, MAC and name; a fresh socket and /sys agree', () => {
    const name = objs.linkName();
    const renamed = objs.linkName();
    createLink(nl, { kind: 'bridge', name });
    setLinkMtu(nl, name, 1300);
    setLinkMac(nl, name, '02:11:22:33:44:55');
    setLinkUp(nl, name);
    expect(sys(name, 'mtu')).toBe('1300');
    expect(sys(name, 'address')).toBe('02:11:22:33:44:55');
    expect(Number(sys(name, 'flags')) & 1).toBe(1);
    const fresh = openRtnl();
    try {
      const l = getLink(fresh, name);
      expect(l.up).toBe(true);
      expect(l.mtu).toBe(1300);
      expect(l.mac).toBe('02:11:22:33:44:55');
    } finally {
      fresh.close();
    }
    setLinkDown(nl, name);
    expect(ipLink(name).flags).not.toContain('UP');
    renameLink(nl, name, renamed);
    expect(hostLinkExists(name)).toBe(false);
    expect(ipLink(renamed).address).toBe('02:11:22:33:44:55');
  });

  it('attaches a port to a bridge, sets hairpin/learning/isolated, and detaches it', () => {
    const br = objs.linkName();
    const port = objs.linkName();
    const peer = objs.linkName();
    createLink(nl, { kind: 'bridge', name: br, up: true });
    createLink(nl, { kind: 'veth', name: port, peer: { name: peer } });
    setLinkMaster(nl, port, br);
    expect(ipLink(port).master).toBe(br);
    expect(getLink(nl, port).masterIndex).toBe(getLink(nl, br).index);

    setBridgePortFlags(nl, port, { hairpin: true, learning: false, isolated: true });
    expect(sys(port, 'brport/hairpin_mode')).toBe('1');
    expect(sys(port, 'brport/learning')).toBe('0');
    expect(sys(port, 'brport/isolated')).toBe('1');
    expect(getBridgePortFlags(nl, port)).toMatchObject({ hairpin: true, learning: false, isolated: true });

    setBridgePortFlags(nl, port, { hairpin: false, learning: true, isolated: false });
    expect(sys(port, 'brport/hairpin_mode')).toBe('0');
    expect(sys(port, 'brport/learning')).toBe('1');
    expect(sys(port, 'brport/isolated')).toBe('0');
    expect(getBridgePortFlags(nl, port)).toMatchObject({ hairpin: false, learning: true, isolated: false });

    setLinkMaster(nl, port, null);
    expect(ipLink(port).master).toBeUndefined();

    // A link can also be created straight onto the bridge.
    const direct = objs.linkName();
    const directPeer = objs.linkName();
    createLink(nl, { kind: 'veth', name: direct, master: br, up: true, peer: { name: directPeer } });
    expect(ipLink(direct).master).toBe(br);
    expect(getBridgePortFlags(nl, port)).toBeUndefined();
  });
});

describe('veth and namespaces', () => {
  it('creates a veth whose peer is created and named directly inside a netns', () => {
    const ns = objs.netns();
    const host = objs.linkName();
    const inside = objs.trackLink('eth7', ns.name);
    const l = createLink(nl, { kind: 'veth', name: host, mtu: 1450, peer: { name: inside, netns: ns.path, mtu: 1450, mac: '02:00:00:00:07:07' } });
    expect(l.kind).toBe('veth');
    expect(hostLinkExists(inside)).toBe(false);

    const seen = ipLink(inside, ns.name);
    expect(seen.address).toBe('02:00:00:00:07:07');
    expect(seen.mtu).toBe(1450);
    const nsnl = openRtnl(ns.path);
    try {
      const peer = getLink(nsnl, inside);
      expect(peer.kind).toBe('veth');
      // Each end's IFLA_LINK is the other end's index (in the other netns).
      expect(l.parentIndex).toBe(peer.index);
      expect(peer.parentIndex).toBe(l.index);
      expect(l.linkNetnsId).toBeDefined();
      // The handle inside the netns drives that netns only.
      expect(findLink(nsnl, host)).toBeUndefined();
      setLinkUp(nsnl, inside);
      expect(ipLink(inside, ns.name).flags).toContain('UP');
      deleteLink(nsnl, inside);
    } finally {
      nsnl.close();
    }
    expect(findLink(nl, host)).toBeUndefined();
  });

  it('moves a link into a netns, renaming it on the way', () => {
    const ns = objs.netns();
    const a = objs.linkName();
    const b = objs.linkName();
    const moved = objs.trackLink('eth9', ns.name);
    createLink(nl, { kind: 'veth', name: a, peer: { name: b } });
    moveLinkToNetns(nl, b, ns.path, moved);
    expect(hostLinkExists(b)).toBe(false);
    expect(ipLink(moved, ns.name).ifname).toBe(moved);
    // Moving a link that does not exist is a LinkNotFoundError, not a raw errno.
    expect(() => moveLinkToNetns(nl, b, ns.path)).toThrow(LinkNotFoundError);
  });
});

describe('vxlan, macvlan, ipvlan', () => {
  it('creates a vxlan with VNI, local address, port, learning off and an underlay dev', () => {
    const under = objs.linkName();
    const vx = objs.linkName();
    const u = createLink(nl, { kind: 'bridge', name: under });
    const l = createLink(nl, { kind: 'vxlan', name: vx, vni: 4242, local: '192.0.2.10', port: 4789, learning: false, dev: under });
    expect(l.vxlan).toEqual({ vni: 4242, local: '192.0.2.10', port: 4789, learning: false, proxy: false, underlayIndex: u.index, ttl: 0 });
    // ARP/ND proxy, set at creation (the kernel refuses to change it later).
    const px = objs.linkName();
    expect(createLink(nl, { kind: 'vxlan', name: px, vni: 4243, local: '192.0.2.10', port: 4789, learning: false, proxy: true, dev: under }).vxlan?.proxy).toBe(true);
    expect(ipLink(px).linkinfo?.info_data).toMatchObject({ proxy: true });

    const data = ipLink(vx).linkinfo?.info_data ?? {};
    expect(data).toMatchObject({ id: 4242, local: '192.0.2.10', port: 4789, learning: false, link: under });

    // Kind options change with RTM_NEWLINK (no CREATE) on the existing link.
    changeLinkInfo(nl, vx, { kind: 'vxlan', vni: 4242, learning: true });
    expect(ipLink(vx).linkinfo?.info_data).toMatchObject({ learning: true });
    expect(getLink(nl, vx).vxlan?.learning).toBe(true);

    // The local address and the underlay dev can change in place; the VNI cannot (kernel's text).
    const under2 = objs.linkName();
    const u2 = createLink(nl, { kind: 'bridge', name: under2 });
    changeLinkInfo(nl, vx, { kind: 'vxlan', vni: 4242, local: '192.0.2.11', dev: under2 });
    expect(getLink(nl, vx).vxlan).toMatchObject({ vni: 4242, local: '192.0.2.11', underlayIndex: u2.index });
    expect(() => changeLinkInfo(nl, vx, { kind: 'vxlan', vni: 4243 })).toThrow(/Cannot change VNI/);
  });

  it('surfaces the kernel text for a VNI out of range', () => {
    const vx = objs.linkName();
    let err: unknown;
    try {
      createLink(nl, { kind: 'vxlan', name: vx, vni: 16777216, port: 4789 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NetlinkError);
    expect((err as NetlinkError).kernelMessage).toBe('VXLAN ID must be lower than 16777216');
    expect((err as Error).message).toContain(`failed to create vxlan link "${vx}": VXLAN ID must be lower than 16777216`);
    expect(hostLinkExists(vx)).toBe(false);
  });

  it.each(['bridge', 'private', 'vepa', 'passthru', 'source'] as const)('creates a macvlan in %s mode', (mode) => {
    const a = objs.linkName();
    const b = objs.linkName();
    const mv = objs.linkName();
    const parent = createLink(nl, { kind: 'veth', name: a, peer: { name: b } });
    const l = createLink(nl, { kind: 'macvlan', name: mv, parent: a, mode });
    expect(l.macvlan?.mode).toBe(mode);
    expect(l.parentIndex).toBe(parent.index);
    const seen = ipLink(mv);
    expect(seen.linkinfo?.info_data).toMatchObject({ mode });
    expect(seen.link_index ?? parent.index).toBe(parent.index);
  });

  it('changes a macvlan mode on the existing link', () => {
    const a = objs.linkName();
    const b = objs.linkName();
    const mv = objs.linkName();
    createLink(nl, { kind: 'veth', name: a, peer: { name: b } });
    createLink(nl, { kind: 'macvlan', name: mv, parent: a, mode: 'bridge' });
    changeLinkInfo(nl, mv, { kind: 'macvlan', mode: 'vepa' });
    expect(ipLink(mv).linkinfo?.info_data).toMatchObject({ mode: 'vepa' });
  });

  it('creates a macvlan directly inside a netns on a parent in the host (`into`), never in the host', () => {
    const a = objs.linkName();
    const b = objs.linkName();
    const ns = objs.netns();
    const parent = createLink(nl, { kind: 'veth', name: a, peer: { name: b } });
    const inside = openRtnl(ns.path);
    try {
      const l = createLink(nl, { kind: 'macvlan', name: 'eth0', parent: a, mode: 'bridge', mtu: 1400, into: inside });
      expect(l).toMatchObject({ name: 'eth0', kind: 'macvlan', mtu: 1400, parentIndex: parent.index });
      expect(ipLink('eth0', ns.name).linkinfo).toMatchObject({ info_kind: 'macvlan', info_data: { mode: 'bridge' } });
      expect(findLink(nl, 'eth0')?.kind, 'nothing of it in the host').not.toBe('macvlan');
      // The name is taken inside: EEXIST there, named as such.
      expect(() => createLink(nl, { kind: 'macvlan', name: 'eth0', parent: a, mode: 'bridge', into: inside })).toThrow(LinkExistsError);
    } finally {
      inside.close();
    }
  });

  it('reports the kernel refusing ipvlan (no module in this kernel) as a NetlinkError', () => {
    const a = objs.linkName();
    const b = objs.linkName();
    const iv = objs.linkName();
    createLink(nl, { kind: 'veth', name: a, peer: { name: b } });
    let err: unknown;
    try {
      createLink(nl, { kind: 'ipvlan', name: iv, parent: a, mode: 'l2' });
    } catch (e) {
      err = e;
    }
    if (err === undefined) {
      // A kernel with ipvlan: then the link must be what we asked for.
      expect(ipLink(iv).linkinfo?.info_kind).toBe('ipvlan');
      return;
    }
    expect(err).toBeInstanceOf(NetlinkError);
    expect((err as Error).message).toMatch(new RegExp(`^failed to create ipvlan link "${iv}": .+`));
    expect((err as NetlinkError).kernelMessage ?? (err as NetlinkError).errnoName).toBeTruthy();
    expect(hostLinkExists(iv)).toBe(false);
  });
});
