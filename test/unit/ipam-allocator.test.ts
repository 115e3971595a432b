import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/store/sqlite.js';
import { ipamAdd, ipamCheck, ipamDel, ipamGc, ipamStatus, type IpamRequest } from '../../src/ipam/plugin.js';
import { ipamNetworkStats, ipamStats } from '../../src/ipam/stats.js';
import { addrPrefix } from '../../src/ipam/keys.js';

let dir: string;
let store: SqliteStore;
const deps = () => ({ store });

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'shoal-ipam-'));
  store = new SqliteStore(path.join(dir, 'shoal.db'));
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const slash29 = { type: 'shoal-ipam', ranges: [[{ subnet: '10.0.0.0/29' }]] };

function req(containerId: string, ipam: unknown = slash29, extra: Partial<IpamRequest> = {}): IpamRequest {
  return { containerId, ifname: 'eth0', network: 'net1', ipam, ...extra };
}

async function addressOf(containerId: string, ipam: unknown = slash29, extra: Partial<IpamRequest> = {}): Promise<string> {
  return (await ipamAdd(req(containerId, ipam, extra), deps())).ips[0]!.address;
}

describe('ipam allocation', () => {
  it('returns address with prefix, gateway and routes', async () => {
    const result = await ipamAdd(req('c1', { ...slash29, routes: [{ dst: '0.0.0.0/0' }] }), deps());
    expect(result).toEqual({ ips: [{ address: '10.0.0.2/29', gateway: '10.0.0.1' }], routes: [{ dst: '0.0.0.0/0' }] });
  });

  it('hands out round-robin: a released address is not reused until the pool wraps', async () => {
    expect(await addressOf('c1')).toBe('10.0.0.2/29');
    expect(await addressOf('c2')).toBe('10.0.0.3/29');
    await ipamDel(req('c1'), deps());
    expect(await addressOf('c3')).toBe('10.0.0.4/29');
    expect(await addressOf('c4')).toBe('10.0.0.5/29');
    expect(await addressOf('c5')).toBe('10.0.0.6/29');
    // Wrapped: .2 is free again, .3 is still held.
    expect(await addressOf('c6')).toBe('10.0.0.2/29');
  });

  it('fails cleanly when a range set is exhausted, naming network and range set', async () => {
    for (const id of ['a', 'b', 'c', 'd', 'e']) await addressOf(id);
    await expect(ipamAdd(req('f'), deps())).rejects.toMatchObject({
      code: 'ERANGEEXHAUSTED',
      message: 'no free address left in network "net1" range set 0 (10.0.0.0/29 10.0.0.1-10.0.0.6)',
    });
    expect(await store.count(addrPrefix('net1'))).toBe(5);
  });

  it('rejects a second ADD for the same container and ifname, but not another ifname', async () => {
    await addressOf('c1');
    await expect(ipamAdd(req('c1'), deps())).rejects.toMatchObject({ code: 'EDUPLICATEATTACHMENT', message: expect.stringContaining('10.0.0.2') });
    expect((await ipamAdd(req('c1', slash29, { ifname: 'eth1' }), deps())).ips[0]!.address).toBe('10.0.0.3/29');
  });

  it('dual stack: one address per range set, both or neither', async () => {
    const ipam = { ranges: [[{ subnet: '10.0.0.0/29' }], [{ subnet: 'fd00::/125', gateway: 'fd00::7' }]] };
    const result = await ipamAdd(req('c1', ipam), deps());
    expect(result.ips).toEqual([
      { address: '10.0.0.2/29', gateway: '10.0.0.1' },
      { address: 'fd00::1/125', gateway: 'fd00::7' },
    ]);
    // Fill the v4 set; the v6 set has room, but the ADD must take nothing from it.
    for (const id of ['b', 'c', 'd', 'e']) await ipamAdd(req(id, ipam), deps());
    const v6Before = await store.count(addrPrefix('net1') + '6:');
    await expect(ipamAdd(req('f', ipam), deps())).rejects.toMatchObject({ code: 'ERANGEEXHAUSTED' });
    expect(await store.count(addrPrefix('net1') + '6:')).toBe(v6Before);
  });

  it('honours requested addresses from every source, and names a bad one', async () => {
    expect(await addressOf('c1', slash29, { runtimeConfig: { ips: ['10.0.0.5/29'] } })).toBe('10.0.0.5/29');
    expect(await addressOf('c2', slash29, { args: { cni: { ips: ['10.0.0.4'] } } })).toBe('10.0.0.4/29');
    expect(await addressOf('c3', slash29, { cniArgs: 'IgnoreUnknown=1;IP=10.0.0.3' })).toBe('10.0.0.3/29');
    await expect(ipamAdd(req('c4', slash29, { cniArgs: { IP: '10.0.0.5' } }), deps())).rejects.toMatchObject({
      code: 'EADDRINUSE',
      message: expect.stringMatching(/10\.0\.0\.5 .*container c1 interface eth0/),
    });
    await expect(ipamAdd(req('c4', slash29, { runtimeConfig: { ips: ['10.9.9.9'] } }), deps())).rejects.toMatchObject({
      code: 'EADDRNOTAVAIL',
      message: expect.stringContaining('10.9.9.9 (from runtimeConfig.ips[0]) cannot be allocated: it is not inside any range'),
    });
    await expect(ipamAdd(req('c4', slash29, { runtimeConfig: { ips: ['10.0.0.1'] } }), deps())).rejects.toMatchObject({
      message: expect.stringContaining('it is a gateway address'),
    });
    await expect(
      ipamAdd(req('c4', { ...slash29, exclude: ['10.0.0.6'] }, { runtimeConfig: { ips: ['10.0.0.6'] } }), deps()),
    ).rejects.toMatchObject({ message: expect.stringContaining('excluded') });
    await expect(ipamAdd(req('c4', slash29, { runtimeConfig: { ips: ['10.0.0.2', '10.0.0.6'] } }), deps())).rejects.toMatchObject({
      message: expect.stringContaining('10.0.0.6 (from runtimeConfig.ips[1]) cannot be allocated: range set 0 gives one address'),
    });
    // None of the failed ADDs left anything behind.
    expect(await store.count(addrPrefix('net1'))).toBe(3);
  });

  it('never hands out excluded addresses', async () => {
    const ipam = { ranges: [[{ subnet: '10.0.0.0/29' }]], exclude: ['10.0.0.2/31', '10.0.0.5'] };
    expect(await addressOf('a', ipam)).toBe('10.0.0.4/29');
    expect(await addressOf('b', ipam)).toBe('10.0.0.6/29');
    await expect(ipamAdd(req('c', ipam), deps())).rejects.toMatchObject({ code: 'ERANGEEXHAUSTED' });
  });

  it('keeps networks apart', async () => {
    expect(await addressOf('c1')).toBe('10.0.0.2/29');
    expect((await ipamAdd({ ...req('c1'), network: 'net2' }, deps())).ips[0]!.address).toBe('10.0.0.2/29');
  });

  it('fills dns from resolvConf, and fails before allocating when it cannot be read', async () => {
    const resolv = path.join(dir, 'resolv.conf');
    writeFileSync(resolv, 'nameserver 10.0.0.1\nsearch example.org\n');
    const result = await ipamAdd(req('c1', { ...slash29, resolvConf: resolv }), deps());
    expect(result.dns).toEqual({ nameservers: ['10.0.0.1'], search: ['example.org'] });
    await expect(ipamAdd(req('c2', { ...slash29, resolvConf: path.join(dir, 'nope') }), deps())).rejects.toMatchObject({
      code: 'EINVALIDCONFIG',
      message: expect.stringContaining('ipam.resolvConf'),
    });
    expect(await store.count(addrPrefix('net1'))).toBe(1);
  });
});

describe('ipam DEL, CHECK, GC, STATUS, stats', () => {
  it('DEL of an unknown attachment succeeds and releases nothing', async () => {
    await addressOf('c1');
    await ipamDel(req('nobody'), deps());
    await ipamDel(req('c1', { not: 'even valid ranges' }), deps());
    await ipamDel(req('c1'), deps());
    expect(await store.count(addrPrefix('net1'))).toBe(0);
  });

  it('CHECK passes on exactly the held addresses and names any difference', async () => {
    const ipam = { ranges: [[{ subnet: '10.0.0.0/29' }], [{ subnet: 'fd00::/120' }]] };
    const result = await ipamAdd(req('c1', ipam), deps());
    await ipamCheck({ ...req('c1', ipam), prevResult: result }, deps());
    await expect(ipamCheck({ ...req('c1', ipam), prevResult: { ips: [result.ips[0]] } }, deps())).rejects.toMatchObject({
      code: 'EALLOCATIONMISMATCH',
      message: expect.stringContaining('it holds fd00::2 which prevResult does not list'),
    });
    await expect(
      ipamCheck({ ...req('c1', ipam), prevResult: { ips: [...result.ips, { address: '10.0.0.6/29' }] } }, deps()),
    ).rejects.toMatchObject({ message: expect.stringContaining('prevResult lists 10.0.0.6 which it does not hold') });
    // Never added: "container unknown" (CNI code 3), not a mismatch.
    await expect(ipamCheck({ ...req('c2', ipam), prevResult: result }, deps())).rejects.toMatchObject({
      code: 'ECONTAINERUNKNOWN',
      message: expect.stringContaining('container c2 interface eth0 holds no addresses'),
    });
  });

  it('GC keeps exactly the valid attachments', async () => {
    for (const id of ['a', 'b', 'c', 'd']) await addressOf(id);
    const report = await ipamGc({ network: 'net1', ipam: slash29, validAttachments: [{ containerId: 'b', ifname: 'eth0' }, { containerId: 'd', ifname: 'eth0' }] }, deps());
    expect(report.released.map((r) => r.containerId).sort()).toEqual(['a', 'c']);
    const owners = (await store.list(addrPrefix('net1'))).map((kv) => (JSON.parse(kv.value) as { containerId: string }).containerId);
    expect(owners.sort()).toEqual(['b', 'd']);
    await ipamCheck({ ...req('b'), prevResult: { ips: [{ address: '10.0.0.3/29' }] } }, deps());
  });

  it('GC also reclaims an address record whose attachment index is missing', async () => {
    await addressOf('a');
    await store.delete('ipam/net1/attachment/a/eth0');
    const report = await ipamGc({ network: 'net1', ipam: slash29, validAttachments: [] }, deps());
    expect(report.released).toEqual([{ containerId: 'a', ifname: 'eth0', addresses: ['10.0.0.2'] }]);
    expect(await store.count(addrPrefix('net1'))).toBe(0);
  });

  it('STATUS succeeds until a range set is exhausted, then names it', async () => {
    const ipam = { ranges: [[{ subnet: '10.0.0.0/29' }], [{ subnet: 'fd00::/64' }]] };
    await ipamStatus({ network: 'net1', ipam }, deps());
    for (const id of ['a', 'b', 'c', 'd', 'e']) await ipamAdd(req(id, ipam), deps());
    await expect(ipamStatus({ network: 'net1', ipam }, deps())).rejects.toMatchObject({
      code: 'ENOTAVAILABLE',
      message: 'network "net1" has no free address left in range set 0 (10.0.0.0/29 10.0.0.1-10.0.0.6)',
    });
    await ipamDel(req('c', ipam), deps());
    await ipamStatus({ network: 'net1', ipam }, deps());
  });

  it('reports allocated and capacity per network', async () => {
    await addressOf('a');
    await addressOf('b');
    expect(await ipamNetworkStats(store, 'net1')).toEqual({ network: 'net1', allocated: 2, capacity: 5 });
    await ipamAdd({ ...req('a'), network: 'other', ipam: { ranges: [[{ subnet: '10.1.0.0/24' }]], exclude: ['10.1.0.10/31'] } }, deps());
    expect(await ipamStats(store)).toEqual([
      { network: 'net1', allocated: 2, capacity: 5 },
      { network: 'other', allocated: 1, capacity: 251 },
    ]);
  });
});
