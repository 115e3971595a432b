import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { addAddress, deleteAddress, deleteAddressIfExists, listAddresses } from '../../src/kernel/address.js';
import { NetlinkError } from '../../src/kernel/errors.js';
import { createLink, getLink, setLinkUp } from '../../src/kernel/link.js';
import { AF_INET, AF_INET6 } from '../../src/kernel/netlink/constants.js';
import { warmThreadpool } from '../../src/kernel/netns.js';
import { openRtnl, type Rtnl } from '../../src/kernel/rtnl.js';
import { addRoute, deleteRoute, deleteRouteIfExists, listRoutes, replaceRoute } from '../../src/kernel/route.js';
import { ipJson, KernelObjects, waitNoLeftovers } from '../helpers/kernel-objects.js';

const PREFIX = 'nla';
const objs = new KernelObjects(PREFIX);

interface IpAddrInfo {
  family: string;
  local: string;
  prefixlen: number;
  broadcast?: string;
  nodad?: boolean;
  tentative?: boolean;
}
interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  metric?: number;
  flags: string[];
  scope?: string;
  table?: string;
  prefsrc?: string;
  protocol?: string;
}

/** A netns with one veth end inside ("ctr", up) and the other in the host (up): a container. */
let ns: { name: string; path: string };
let nsnl: Rtnl;
let hostEnd: string;
const ctr = 'ctr0';

function addrsOf(dev: string): IpAddrInfo[] {
  const [l] = ipJson<{ addr_info: IpAddrInfo[] }[]>(['addr', 'show', 'dev', dev], ns.name);
  return l?.addr_info ?? [];
}

/** `ip route show <args>`; a leading '-6' selects IPv6 (an ip option, so it goes first). */
function routes(args: string[]): IpRoute[] {
  const [first, ...rest] = args;
  if (first === '-6') return ipJson<IpRoute[]>(['-6', 'route', 'show', ...rest], ns.name);
  return ipJson<IpRoute[]>(['route', 'show', ...args], ns.name);
}

beforeAll(async () => {
  await warmThreadpool();
});
beforeEach(() => {
  ns = objs.netns();
  hostEnd = objs.linkName();
  objs.trackLink(ctr, ns.name);
  const host = openRtnl();
  try {
    createLink(host, { kind: 'veth', name: hostEnd, up: true, peer: { name: ctr, netns: ns.path } });
  } finally {
    host.close();
  }
  nsnl = openRtnl(ns.path);
  setLinkUp(nsnl, ctr);
});
afterEach(() => {
  nsnl?.close();
  objs.cleanup();
});
afterAll(async () => {
  objs.cleanup();
  expect(await waitNoLeftovers(PREFIX)).toEqual([]);
});

describe('addresses', () => {
  it('adds, lists and deletes IPv4 (with broadcast) and IPv6 (nodad) addresses in a netns', () => {
    addAddress(nsnl, ctr, '10.77.0.2/24', { broadcast: true });
    addAddress(nsnl, ctr, 'fd00:77::2/64', { nodad: true });

    const seen = addrsOf(ctr);
    expect(seen).toContainEqual(expect.objectContaining({ family: 'inet', local: '10.77.0.2', prefixlen: 24, broadcast: '10.77.0.255' }));
    const v6 = seen.find((a) => a.local === 'fd00:77::2');
    expect(v6).toMatchObject({ prefixlen: 64, nodad: true });
    expect(v6?.tentative).toBeUndefined();

    const fresh = openRtnl(ns.path);
    try {
      const mine = listAddresses(fresh, { link: ctr });
      expect(mine).toContainEqual(expect.objectContaining({ cidr: '10.77.0.2/24', broadcast: '10.77.0.255', family: AF_INET }));
      expect(mine).toContainEqual(expect.objectContaining({ cidr: 'fd00:77::2/64', nodad: true, family: AF_INET6 }));
      expect(listAddresses(fresh, { family: AF_INET6, link: ctr }).every((a) => a.family === AF_INET6)).toBe(true);
    } finally {
      fresh.close();
    }

    expect(() => addAddress(nsnl, ctr, '10.77.0.2/24')).toThrow(NetlinkError);
    addAddress(nsnl, ctr, '10.77.0.2/24', { replace: true, broadcast: true });

    deleteAddress(nsnl, ctr, '10.77.0.2/24');
    deleteAddress(nsnl, ctr, 'fd00:77::2/64');
    expect(addrsOf(ctr).filter((a) => a.local === '10.77.0.2' || a.local === 'fd00:77::2')).toEqual([]);
    expect(deleteAddressIfExists(nsnl, ctr, '10.77.0.2/24')).toBe(false);
  });

  it('names the link and address when the kernel refuses', () => {
    expect(() => addAddress(nsnl, ctr, '10.77.0.2/24', { broadcast: '10.77.0.255' })).not.toThrow();
    let err: unknown;
    try {
      addAddress(nsnl, ctr, '10.77.0.2/24');
    } catch (e) {
      err = e;
    }
    expect((err as Error).message).toMatch(/^failed to add address 10\.77\.0\.2\/24 to link "ctr0": .*EEXIST/);
  });

  it('takes a link already looked up: acts on its index, names it in messages', () => {
    const link = getLink(nsnl, ctr);
    addAddress(nsnl, link, '10.77.0.9/24');
    expect(addrsOf(ctr).some((a) => a.local === '10.77.0.9')).toBe(true);
    // The index decides, not the name: a stale name with the right index still works.
    deleteAddress(nsnl, { index: link.index, name: 'renamed-meanwhile' }, '10.77.0.9/24');
    expect(addrsOf(ctr).some((a) => a.local === '10.77.0.9')).toBe(false);
    expect(() => deleteAddress(nsnl, { index: link.index, name: 'ctr0' }, '10.77.0.9/24')).toThrow(/from link "ctr0"/);
  });
});

describe('routes', () => {
  beforeEach(() => {
    addAddress(nsnl, ctr, '10.77.0.2/24');
    addAddress(nsnl, ctr, 'fd00:77::2/64', { nodad: true });
  });

  it('adds, replaces and deletes a default route (IPv4 and IPv6)', () => {
    addRoute(nsnl, { dst: 'default', gateway: '10.77.0.1' });
    addRoute(nsnl, { dst: 'default', gateway: 'fd00:77::1', dev: ctr });
    expect(routes(['default'])).toEqual([expect.objectContaining({ dst: 'default', gateway: '10.77.0.1', dev: ctr })]);
    expect(routes(['-6', 'default'])).toEqual([expect.objectContaining({ dst: 'default', gateway: 'fd00:77::1', dev: ctr })]);

    replaceRoute(nsnl, { dst: 'default', gateway: '10.77.0.254' });
    expect(routes(['default'])).toEqual([expect.objectContaining({ gateway: '10.77.0.254' })]);

    const fresh = openRtnl(ns.path);
    try {
      const v4 = listRoutes(fresh, { family: AF_INET }).filter((r) => r.dst === 'default');
      expect(v4).toEqual([expect.objectContaining({ gateway: '10.77.0.254', table: 254 })]);
      expect(listRoutes(fresh, { family: AF_INET6 })).toContainEqual(expect.objectContaining({ dst: 'default', gateway: 'fd00:77::1' }));
    } finally {
      fresh.close();
    }

    deleteRoute(nsnl, { dst: 'default', gateway: '10.77.0.254' });
    deleteRoute(nsnl, { dst: 'default', family: AF_INET6 });
    expect(routes(['default'])).toEqual([]);
    expect(routes(['-6', 'default'])).toEqual([]);
    expect(deleteRouteIfExists(nsnl, { dst: 'default', family: AF_INET })).toBe(false);
  });

  it('adds an onlink route via a gateway outside every connected subnet', () => {
    expect(() => addRoute(nsnl, { dst: '10.88.0.0/16', gateway: '10.99.0.1', dev: ctr })).toThrow(NetlinkError);
    addRoute(nsnl, { dst: '10.88.0.0/16', gateway: '10.99.0.1', dev: ctr, onlink: true });
    const [r] = routes(['10.88.0.0/16']);
    expect(r).toMatchObject({ gateway: '10.99.0.1', dev: ctr });
    expect(r?.flags).toContain('onlink');
    expect(listRoutes(nsnl, { family: AF_INET, dev: ctr }).find((x) => x.dst === '10.88.0.0/16')?.onlink).toBe(true);
  });

  it('keeps routes apart by metric and by table; scope link for a device route', () => {
    addRoute(nsnl, { dst: '10.66.0.0/16', gateway: '10.77.0.1', metric: 100 });
    addRoute(nsnl, { dst: '10.66.0.0/16', gateway: '10.77.0.3', metric: 200 });
    addRoute(nsnl, { dst: '10.66.0.0/16', gateway: '10.77.0.4', table: 1234 });
    addRoute(nsnl, { dst: '10.55.0.0/16', dev: ctr });
    addRoute(nsnl, { dst: '10.56.0.0/16', dev: ctr, scope: 'universe', src: '10.77.0.2', protocol: 4 });
    addRoute(nsnl, { dst: 'fd00:66::/48', gateway: 'fd00:77::1', metric: 300 });

    const main = routes(['10.66.0.0/16']);
    expect(main.map((r) => [r.gateway, r.metric])).toEqual([
      ['10.77.0.1', 100],
      ['10.77.0.3', 200],
    ]);
    expect(routes(['table', '1234'])).toEqual([expect.objectContaining({ dst: '10.66.0.0/16', gateway: '10.77.0.4' })]);
    expect(routes(['10.55.0.0/16'])).toEqual([expect.objectContaining({ dev: ctr, scope: 'link' })]);
    expect(routes(['10.56.0.0/16'])).toEqual([expect.objectContaining({ dev: ctr, prefsrc: '10.77.0.2', protocol: 'static' })]);
    expect(routes(['10.56.0.0/16'])[0]?.scope).toBe('global'); // -d prints universe as "global"
    expect(listRoutes(nsnl, { family: AF_INET }).find((r) => r.dst === '10.56.0.0/16')).toMatchObject({ src: '10.77.0.2', scope: 0, protocol: 4 });
    expect(routes(['-6', 'fd00:66::/48'])).toEqual([expect.objectContaining({ gateway: 'fd00:77::1', metric: 300 })]);

    expect(listRoutes(nsnl, { family: AF_INET, table: 1234 })).toEqual([expect.objectContaining({ dst: '10.66.0.0/16', table: 1234, gateway: '10.77.0.4' })]);
    expect(listRoutes(nsnl, { family: AF_INET }).filter((r) => r.dst === '10.66.0.0/16').map((r) => r.metric)).toEqual([100, 200]);

    deleteRoute(nsnl, { dst: '10.66.0.0/16', metric: 200 });
    expect(routes(['10.66.0.0/16']).map((r) => r.metric)).toEqual([100]);
    deleteRoute(nsnl, { dst: '10.66.0.0/16', table: 1234 });
    expect(routes(['table', '1234'])).toEqual([]);
    deleteRoute(nsnl, { dst: 'fd00:66::/48', metric: 300 });
    expect(routes(['-6', 'fd00:66::/48'])).toEqual([]);
  });
});
