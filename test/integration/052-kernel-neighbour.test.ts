import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { NetlinkError } from '../../src/kernel/errors.js';
import { createLink, getBridgePortFlags, setBridgePortFlags, setLinkMaster, setLinkUp } from '../../src/kernel/link.js';
import { AF_INET6 } from '../../src/kernel/netlink/constants.js';
import {
  deleteFdbEntry,
  deleteNeighbour,
  ignoreMissing,
  listFdbEntries,
  listNeighbours,
  setFdbEntry,
  setNeighbour,
} from '../../src/kernel/neighbour.js';
import { warmThreadpool } from '../../src/kernel/netns.js';
import { openRtnl, type Rtnl } from '../../src/kernel/rtnl.js';
import { execFileSync } from 'node:child_process';
import { ipJson, KernelObjects, waitNoLeftovers } from '../helpers/kernel-objects.js';

const PREFIX = 'nln';
const objs = new KernelObjects(PREFIX);

interface IpNeigh {
  dst: string;
  dev: string;
  lladdr?: string;
  state: string[];
}
interface BridgeFdb {
  mac: string;
  ifname: string;
  dst?: string;
  flags: string[];
  master?: string;
  state?: string;
}

let ns: { name: string; path: string };
let nsnl: Rtnl;

function neighs(args: string[] = []): IpNeigh[] {
  return ipJson<IpNeigh[]>(['neigh', 'show', ...args], ns.name);
}

/** `bridge -n <ns> -j fdb show dev <dev>` (iproute2's bridge tool: the independent reader). */
function fdb(dev: string): BridgeFdb[] {
  const out = execFileSync('bridge', ['-n', ns.name, '-j', 'fdb', 'show', 'dev', dev], { encoding: 'utf8' });
  return JSON.parse(out || '[]') as BridgeFdb[];
}

beforeAll(async () => {
  await warmThreadpool();
});
beforeEach(() => {
  ns = objs.netns();
  nsnl = openRtnl(ns.path);
});
afterEach(() => {
  nsnl?.close();
  objs.cleanup();
});
afterAll(async () => {
  objs.cleanup();
  expect(await waitNoLeftovers(PREFIX)).toEqual([]);
});

describe('IP neighbours', () => {
  it('adds, replaces, lists and deletes permanent IPv4 and IPv6 neighbours', () => {
    const a = objs.trackLink('va', ns.name);
    objs.trackLink('vb', ns.name);
    createLink(nsnl, { kind: 'veth', name: a, peer: { name: 'vb' }, up: true });

    setNeighbour(nsnl, { dev: a, ip: '10.44.0.9', mac: '02:00:00:00:44:09' }, 'add');
    setNeighbour(nsnl, { dev: a, ip: 'fd00:44::9', mac: '02:00:00:00:44:19' }, 'add');
    expect(neighs(['dev', a])).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ dst: '10.44.0.9', lladdr: '02:00:00:00:44:09', state: ['PERMANENT'] }),
        expect.objectContaining({ dst: 'fd00:44::9', lladdr: '02:00:00:00:44:19', state: ['PERMANENT'] }),
      ]),
    );
    expect(() => setNeighbour(nsnl, { dev: a, ip: '10.44.0.9', mac: '02:00:00:00:44:0a' }, 'add')).toThrow(NetlinkError);

    setNeighbour(nsnl, { dev: a, ip: '10.44.0.9', mac: '02:00:00:00:44:0a' });
    expect(neighs(['10.44.0.9', 'dev', a])).toEqual([expect.objectContaining({ lladdr: '02:00:00:00:44:0a' })]);

    const fresh = openRtnl(ns.path);
    try {
      expect(listNeighbours(fresh, { dev: a })).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ ip: '10.44.0.9', mac: '02:00:00:00:44:0a', permanent: true }),
          expect.objectContaining({ ip: 'fd00:44::9', mac: '02:00:00:00:44:19', permanent: true }),
        ]),
      );
      expect(listNeighbours(fresh, { dev: a, family: AF_INET6 }).map((n) => n.ip)).toEqual(['fd00:44::9']);
    } finally {
      fresh.close();
    }

    deleteNeighbour(nsnl, { dev: a, ip: '10.44.0.9' });
    deleteNeighbour(nsnl, { dev: a, ip: 'fd00:44::9' });
    expect(neighs(['dev', a]).filter((n) => n.state.includes('PERMANENT'))).toEqual([]);
    expect(ignoreMissing(() => deleteNeighbour(nsnl, { dev: a, ip: '10.44.0.9' }))).toBe(false);
  });
});

describe('bridge FDB', () => {
  it('programs flood and per-MAC remote entries on a VXLAN device', () => {
    const vx = objs.trackLink('vx0', ns.name);
    createLink(nsnl, { kind: 'vxlan', name: vx, vni: 77, port: 4789, learning: false, local: '192.0.2.1' });
    setLinkUp(nsnl, vx);
    const zero = '00:00:00:00:00:00';

    setFdbEntry(nsnl, { dev: vx, mac: zero, dst: '192.0.2.11' }, 'append');
    setFdbEntry(nsnl, { dev: vx, mac: zero, dst: '192.0.2.12' }, 'append');
    setFdbEntry(nsnl, { dev: vx, mac: '02:00:00:00:77:01', dst: '192.0.2.11' });
    // The per-MAC entry moves to another VTEP with replace.
    setFdbEntry(nsnl, { dev: vx, mac: '02:00:00:00:77:01', dst: '192.0.2.13' }, 'replace');

    const seen = fdb(vx);
    expect(seen.filter((e) => e.mac === zero).map((e) => e.dst).sort()).toEqual(['192.0.2.11', '192.0.2.12']);
    expect(seen.filter((e) => e.mac === '02:00:00:00:77:01')).toEqual([expect.objectContaining({ dst: '192.0.2.13', flags: ['self'], state: 'permanent' })]);

    const mine = listFdbEntries(nsnl, { dev: vx });
    expect(mine.filter((e) => e.mac === zero).map((e) => e.dst).sort()).toEqual(['192.0.2.11', '192.0.2.12']);
    expect(mine).toContainEqual(expect.objectContaining({ mac: '02:00:00:00:77:01', dst: '192.0.2.13', self: true, permanent: true }));

    deleteFdbEntry(nsnl, { dev: vx, mac: zero, dst: '192.0.2.11' });
    expect(fdb(vx).filter((e) => e.mac === zero).map((e) => e.dst)).toEqual(['192.0.2.12']);
    deleteFdbEntry(nsnl, { dev: vx, mac: zero, dst: '192.0.2.12' });
    deleteFdbEntry(nsnl, { dev: vx, mac: '02:00:00:00:77:01' });
    expect(fdb(vx).filter((e) => e.dst !== undefined)).toEqual([]);
    expect(ignoreMissing(() => deleteFdbEntry(nsnl, { dev: vx, mac: '02:00:00:00:77:01' }))).toBe(false);
  });

  it('adds a static entry to a bridge port (master) and removes it', () => {
    const br = objs.trackLink('br0', ns.name);
    const port = objs.trackLink('p0', ns.name);
    objs.trackLink('p1', ns.name);
    const bridge = createLink(nsnl, { kind: 'bridge', name: br, up: true });
    createLink(nsnl, { kind: 'veth', name: port, peer: { name: 'p1' } });
    setLinkMaster(nsnl, port, br);

    setFdbEntry(nsnl, { dev: port, mac: '02:00:00:00:88:01', on: 'master', state: 'noarp' });
    expect(fdb(port)).toContainEqual(expect.objectContaining({ mac: '02:00:00:00:88:01', master: br, state: 'static' }));
    const entry = listFdbEntries(nsnl, { dev: port }).find((e) => e.mac === '02:00:00:00:88:01');
    expect(entry).toMatchObject({ master: true, self: false, masterIndex: bridge.index, permanent: false });

    deleteFdbEntry(nsnl, { dev: port, mac: '02:00:00:00:88:01', on: 'master' });
    expect(fdb(port).filter((e) => e.mac === '02:00:00:00:88:01')).toEqual([]);
  });

  it('marks entries as a control plane\'s: extern_learn FDB entries (self and master) and a neighbour protocol, read back by iproute2 too', () => {
    const br = objs.trackLink('br0', ns.name);
    const vx = objs.trackLink('vx0', ns.name);
    createLink(nsnl, { kind: 'bridge', name: br, up: true });
    createLink(nsnl, { kind: 'vxlan', name: vx, vni: 78, port: 4789, learning: false, local: '192.0.2.1', master: br, up: true });
    setBridgePortFlags(nsnl, vx, { learning: false, neighSuppress: true });
    expect(getBridgePortFlags(nsnl, vx)).toMatchObject({ learning: false, neighSuppress: true });

    const mac = '02:00:00:00:78:01';
    setFdbEntry(nsnl, { dev: vx, mac, dst: '192.0.2.21', externLearned: true });
    setFdbEntry(nsnl, { dev: vx, mac, on: 'master', externLearned: true });
    setNeighbour(nsnl, { dev: br, ip: '10.78.0.21', mac, protocol: 83 });
    const seen = fdb(vx).filter((e) => e.mac === mac);
    expect(seen).toEqual(expect.arrayContaining([
      expect.objectContaining({ dst: '192.0.2.21', flags: expect.arrayContaining(['self', 'extern_learn']) }),
      expect.objectContaining({ master: br, flags: ['extern_learn'] }),
    ]));
    const mine = listFdbEntries(nsnl, { dev: vx }).filter((e) => e.mac === mac);
    expect(mine).toEqual(expect.arrayContaining([
      expect.objectContaining({ self: true, dst: '192.0.2.21', externLearned: true }),
      expect.objectContaining({ master: true, externLearned: true }),
    ]));
    const out = execFileSync('ip', ['-n', ns.name, 'neigh', 'show', 'dev', br], { encoding: 'utf8' });
    expect(out).toContain('10.78.0.21 lladdr 02:00:00:00:78:01 PERMANENT proto 83');
    expect(listNeighbours(nsnl, { dev: br })).toContainEqual(expect.objectContaining({ ip: '10.78.0.21', protocol: 83, permanent: true }));
  });
});
