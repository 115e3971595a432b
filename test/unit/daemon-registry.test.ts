import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CniResult } from '../../cni/types.js';
import {
  endpointKey,
  gcEndpoints,
  getEndpoint,
  getNetwork,
  loadRegistry,
  mergeNetwork,
  networkEndpointsPrefix,
  networkKey,
  parseEndpointKey,
  registerEndpoint,
  unregisterEndpoint,
} from '../../src/dns/registry.js';
import {
  buildEndpoint,
  buildNetwork,
  DEFAULT_DOMAIN,
  dnsNameProblem,
  endpointAliases,
  endpointName,
  EndpointInputError,
  idName,
  mergeDnsResult,
  subnetOf,
} from '../../src/dns/registry-build.js';
import { registryChanges } from '../../src/daemon/changes.js';
import { SqliteStore } from '../../src/store/sqlite.js';

// What the reference bridge plugin returns: host bridge, host veth, container eth0 (sandbox).
const bridgeResult: CniResult = {
  interfaces: [{ name: 'br0', mac: '02:00:00:00:00:01' }, { name: 'veth1', mac: '02:00:00:00:00:02' }, { name: 'eth0', mac: '02:00:00:00:00:03', sandbox: '/run/netns/a' }],
  ips: [
    { address: '10.88.0.5/16', gateway: '10.88.0.1', interface: 2 },
    { address: 'fd00:88::5/64', gateway: 'fd00:88::1', interface: 2 },
  ],
  routes: [{ dst: '0.0.0.0/0' }],
  dns: { nameservers: ['192.0.2.53'], search: ['corp.example'], options: ['ndots:2'] },
};

const HEX64 = '3f2a9c0b7d1e5a4b6c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b';

const inputs = (over: Partial<Parameters<typeof buildEndpoint>[0]> = {}) => ({
  network: 'red',
  containerId: 'abcdef0123456789',
  ifname: 'eth0',
  cniArgs: { K8S_POD_NAME: 'web' },
  runtimeConfig: { aliases: { red: ['www', 'abcdef012345', 'WEB', 'bad name'], blue: ['other'] } },
  prevResult: bridgeResult,
  ...over,
});

describe('registry keys', () => {
  it('lays out networks and endpoints under dns/, encoded, and parses endpoint keys back', () => {
    expect(networkKey('red')).toBe('dns/networks/red');
    expect(endpointKey({ network: 'red', containerId: 'c1', ifname: 'eth0' })).toBe('dns/endpoints/red/c1/eth0');
    expect(endpointKey({ network: 'r', containerId: 'c', ifname: 'e/x%' })).toBe('dns/endpoints/r/c/e%2Fx%25');
    expect(parseEndpointKey('dns/endpoints/r/c/e%2Fx%25')).toEqual({ network: 'r', containerId: 'c', ifname: 'e/x%' });
    expect(parseEndpointKey('dns/endpoints/r/c')).toBeUndefined();
    expect(parseEndpointKey('dns/networks/r')).toBeUndefined();
    // "a/" cannot match network "ab".
    expect(endpointKey({ network: 'ab', containerId: 'c', ifname: 'e' }).startsWith(networkEndpointsPrefix('a'))).toBe(false);
  });
});

describe('building records from CNI inputs', () => {
  it('names the endpoint from K8S_POD_NAME, else args.cni.name, else the container id', () => {
    expect(endpointName({ cniArgs: { K8S_POD_NAME: 'web' }, args: { cni: { name: 'x' } }, containerId: 'c' })).toBe('web');
    expect(endpointName({ cniArgs: {}, args: { cni: { name: 'x' } }, containerId: 'c' })).toBe('x');
    expect(endpointName({ cniArgs: { K8S_POD_NAME: '' }, containerId: HEX64 })).toBe('3f2a9c0b7d1e');
    expect(endpointName({ cniArgs: { K8S_POD_NAME: '' }, args: { cni: {} }, containerId: 'default-ctrweb' })).toBe('default-ctrweb');
  });

  it('names an unnamed container by its short id only when the id is a 64-hex runtime id', () => {
    // docker, podman, CRI-O: the 12 characters their tools show.
    expect(idName(HEX64)).toBe('3f2a9c0b7d1e');
    // containerd's ctr run --cni passes <namespace>-<id>: registered whole, as typed.
    expect(idName('default-ctrweb')).toBe('default-ctrweb');
    expect(idName('default-ctrc')).toBe('default-ctrc');
    expect(idName('my_app-2')).toBe('my_app-2');
    // Hex-looking but not a runtime id (too short, upper case, 65 digits): whole.
    expect(idName('abcdef0123456789')).toBe('abcdef0123456789');
    expect(idName('deadbeef')).toBe('deadbeef');
    expect(idName('DEADBEEF01234567')).toBe('DEADBEEF01234567');
    // 64 upper-case or 65 hex digits: not a runtime id, and too long for a label (see below).
    for (const id of [HEX64.toUpperCase(), `${HEX64}0`]) expect(idName(id)).toMatch(/^.{54}-[0-9a-f]{8}$/);
    // Exactly 63 characters is still a label.
    expect(idName('a'.repeat(63))).toBe('a'.repeat(63));
  });

  it('derives a valid label from an id that is not one: dots become "-", long ids end in a hash', () => {
    expect(idName('default-web.1')).toBe('default-web-1');
    expect(idName('k8s.io-pod.x')).toBe('k8s-io-pod-x');
    const long = `default-${'service-replica-'.repeat(5)}1`;
    const name = idName(long);
    expect(name).toHaveLength(63);
    expect(name.startsWith(long.slice(0, 54))).toBe(true);
    expect(name).toMatch(/^.{54}-[0-9a-f]{8}$/);
    // Stable, and two long ids sharing their first 54 characters still differ.
    expect(idName(long)).toBe(name);
    expect(idName(`${long.slice(0, -1)}2`)).not.toBe(name);
    for (const id of [long, 'a.b.c', HEX64, `${HEX64}0`, 'x'.repeat(200)]) expect(dnsNameProblem(idName(id))).toBeUndefined();
    for (const id of [long, 'a.b.c', `${HEX64}0`, 'x'.repeat(200)]) expect(idName(id)).not.toContain('.');
  });

  it('registers a containerd container under its whole id', () => {
    const ep = buildEndpoint(inputs({ containerId: 'default-ctrweb', cniArgs: {}, runtimeConfig: undefined }));
    expect(ep.name).toBe('default-ctrweb');
    expect(ep.containerId).toBe('default-ctrweb');
  });

  it('takes aliases for its own network only, dropping invalid ones, duplicates and the name itself', () => {
    expect(endpointAliases(inputs().runtimeConfig, 'red', 'web')).toEqual(['www', 'abcdef012345']);
    expect(endpointAliases(undefined, 'red', 'web')).toEqual([]);
    expect(endpointAliases({ aliases: { red: 'nope' } }, 'red', 'web')).toEqual([]);
  });

  it('builds the endpoint with container addresses (not the host interfaces)', () => {
    const withHostIp: CniResult = { ...bridgeResult, ips: [...bridgeResult.ips!, { address: '10.88.0.1/16', interface: 0 }] };
    expect(buildEndpoint(inputs({ prevResult: withHostIp }))).toEqual({
      network: 'red',
      containerId: 'abcdef0123456789',
      ifname: 'eth0',
      name: 'web',
      aliases: ['www', 'abcdef012345'],
      ipv4: ['10.88.0.5/16'],
      ipv6: ['fd00:88::5/64'],
      // The container interface's MAC (what other overlay nodes program), not the host's.
      mac: '02:00:00:00:00:03',
    });
  });

  it('refuses an invalid name and a prevResult without addresses', () => {
    expect(() => buildEndpoint(inputs({ cniArgs: { K8S_POD_NAME: 'a b' } }))).toThrow(EndpointInputError);
    expect(() => buildEndpoint(inputs({ prevResult: { interfaces: [] } }))).toThrow(/no container address/);
    expect(dnsNameProblem('a.b-c_d')).toBeUndefined();
    expect(dnsNameProblem('a..b')).toBeDefined();
    expect(dnsNameProblem('x'.repeat(64))).toMatch(/63/);
  });

  it('computes subnets from addresses', () => {
    expect(subnetOf('10.88.7.5/16')).toBe('10.88.0.0/16');
    expect(subnetOf('10.1.2.3/32')).toBe('10.1.2.3/32');
    expect(subnetOf('fd00:88::5/64')).toBe('fd00:88::/64');
    expect(subnetOf('10.1.2.3')).toBeUndefined();
  });

  it('builds the network: gateways (v4 first), subnets, domain default, hosts, upstreams, ttl', () => {
    const v6first: CniResult = { ...bridgeResult, ips: [...bridgeResult.ips!].reverse() };
    expect(buildNetwork('red', { hosts: { 'db.internal': '192.0.2.10' }, upstreams: ['192.0.2.53:5353'], ttl: 3 }, v6first)).toEqual({
      name: 'red',
      domain: DEFAULT_DOMAIN,
      gateways: ['10.88.0.1', 'fd00:88::1'],
      subnets: ['fd00:88::/64', '10.88.0.0/16'],
      hosts: { 'db.internal': ['192.0.2.10'] },
      upstreams: ['192.0.2.53:5353'],
      ttl: 3,
    });
    expect(buildNetwork('red', { domainName: 'red.test' }, bridgeResult).domain).toBe('red.test');
    expect(() => buildNetwork('red', {}, { ips: [{ address: '10.0.0.2/24' }] })).toThrow(/no gateway/);
  });

  it('merges DNS into the result: gateways as nameservers, domain first in search, options kept', () => {
    const net = buildNetwork('red', {}, bridgeResult);
    const out = mergeDnsResult(bridgeResult, net);
    expect(out.dns).toEqual({ nameservers: ['10.88.0.1', 'fd00:88::1'], search: ['dns.shoal', 'corp.example'], options: ['ndots:2'] });
    expect(out.ips).toEqual(bridgeResult.ips);
    expect(out.interfaces).toEqual(bridgeResult.interfaces);
    expect(mergeDnsResult({ ips: [] }, { ...net, domain: 'x.test' }).dns?.search).toEqual(['x.test']);
  });

  it('merges a stored network with a new ADD: config from the new one, gateways/subnets united', () => {
    const a = { name: 'n', domain: 'a', gateways: ['10.0.0.1'], subnets: ['10.0.0.0/24'], upstreams: ['1.1.1.1'] };
    const b = { name: 'n', domain: 'b', gateways: ['fd00::1'], subnets: ['fd00::/64'] };
    expect(mergeNetwork(a, b)).toEqual({ name: 'n', domain: 'b', gateways: ['10.0.0.1', 'fd00::1'], subnets: ['10.0.0.0/24', 'fd00::/64'] });
    expect(mergeNetwork(undefined, b)).toEqual(b);
    // A record written when subnets were stored uncompressed merges without doubling them.
    const legacy = { name: 'n', gateways: ['fd00:0::1'], subnets: ['fd00:0:0:0:0:0:0:0/64'] };
    expect(mergeNetwork(legacy, b)).toMatchObject({ gateways: ['fd00::1'], subnets: ['fd00::/64'] });
  });
});

describe('registry in the store', () => {
  let dir: string;
  let store: SqliteStore;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'shoal-dnsreg-'));
    store = new SqliteStore(path.join(dir, 'shoal.db'));
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const ep = (containerId: string, name: string, network = 'red') => ({ network, containerId, ifname: 'eth0', name, ipv4: ['10.88.0.9/16'] });
  const net = (name = 'red') => ({ name, domain: 'dns.shoal', gateways: ['10.88.0.1'], subnets: ['10.88.0.0/16'] });

  it('registers, reads, lists and unregisters; the last DEL removes the network; DEL is idempotent', async () => {
    await registerEndpoint(store, net(), ep('c1', 'a'));
    await registerEndpoint(store, net(), ep('c2', 'b'));
    await registerEndpoint(store, net('blue'), ep('c3', 'c', 'blue'));
    expect(await getEndpoint(store, { network: 'red', containerId: 'c1', ifname: 'eth0' })).toMatchObject({ name: 'a' });
    const all = await loadRegistry(store);
    expect(all.networks.map((n) => n.name)).toEqual(['blue', 'red']);
    expect(all.endpoints.map((e) => e.name)).toEqual(['c', 'a', 'b']);
    expect(await unregisterEndpoint(store, { network: 'red', containerId: 'c1', ifname: 'eth0' })).toBe(true);
    expect(await getNetwork(store, 'red')).toBeDefined();
    expect(await unregisterEndpoint(store, { network: 'red', containerId: 'c2', ifname: 'eth0' })).toBe(true);
    expect(await getNetwork(store, 'red')).toBeUndefined();
    expect(await unregisterEndpoint(store, { network: 'red', containerId: 'c2', ifname: 'eth0' })).toBe(false);
    expect(await getNetwork(store, 'blue')).toBeDefined();
  });

  it('re-ADD overwrites the endpoint; a corrupt value reads as missing', async () => {
    await registerEndpoint(store, net(), ep('c1', 'a'));
    await registerEndpoint(store, net(), ep('c1', 'renamed'));
    expect((await loadRegistry(store)).endpoints.map((e) => e.name)).toEqual(['renamed']);
    await store.put(endpointKey({ network: 'red', containerId: 'bad', ifname: 'eth0' }), '{not json');
    expect((await loadRegistry(store)).endpoints.map((e) => e.name)).toEqual(['renamed']);
  });

  it('GC removes endpoints of the network not in the valid list, and only of that network', async () => {
    await registerEndpoint(store, net(), ep('c1', 'a'));
    await registerEndpoint(store, net(), ep('c2', 'b'));
    await registerEndpoint(store, net('blue'), ep('c9', 'z', 'blue'));
    const removed = await gcEndpoints(store, 'red', [{ containerId: 'c2', ifname: 'eth0' }]);
    expect(removed).toEqual([{ network: 'red', containerId: 'c1', ifname: 'eth0' }]);
    expect((await loadRegistry(store)).endpoints.map((e) => e.name).sort()).toEqual(['b', 'z']);
    await gcEndpoints(store, 'red', []);
    expect(await getNetwork(store, 'red')).toBeUndefined();
    expect(await getNetwork(store, 'blue')).toBeDefined();
  });
});

describe('registry change events', () => {
  it('reports added, changed and removed records and networks', () => {
    const n = { name: 'red', gateways: ['10.0.0.1'] };
    const a = { network: 'red', containerId: 'c1', ifname: 'eth0', name: 'a' };
    const b = { network: 'red', containerId: 'c2', ifname: 'eth0', name: 'b' };
    const first = registryChanges(undefined, { networks: [n], endpoints: [a, b] });
    expect(first.map((c) => `${c.event}:${c.name ?? c.network}`)).toEqual(['dns_network_added:red', 'dns_record_added:a', 'dns_record_added:b']);
    const next = registryChanges({ networks: [n], endpoints: [a, b] }, { networks: [n], endpoints: [{ ...a, aliases: ['x'] }] });
    expect(next.map((c) => `${c.event}:${c.name}`)).toEqual(['dns_record_changed:a', 'dns_record_removed:b']);
    expect(registryChanges({ networks: [n], endpoints: [] }, { networks: [], endpoints: [] }).map((c) => c.event)).toEqual(['dns_network_removed']);
  });

  it('skips the records both reads share by reference, and still sees a change in their middle', () => {
    const n = { name: 'red', gateways: ['10.0.0.1'] };
    const many = Array.from({ length: 1000 }, (_, i) => ({ network: 'red', containerId: `c${i}`, ifname: 'eth0', name: `n${i}` }));
    const removed = many.filter((_, i) => i !== 500);
    expect(registryChanges({ networks: [n], endpoints: many }, { networks: [n], endpoints: removed }).map((c) => `${c.event}:${c.name}`)).toEqual(['dns_record_removed:n500']);
    const added = [...many, { network: 'red', containerId: 'new', ifname: 'eth0', name: 'new' }];
    expect(registryChanges({ networks: [n], endpoints: many }, { networks: [n], endpoints: added }).map((c) => `${c.event}:${c.name}`)).toEqual(['dns_record_added:new']);
    // A new object with other content in the middle is compared by content.
    const changed = many.map((e, i) => (i === 10 ? { ...e, aliases: ['x'] } : i === 20 ? { ...e } : e));
    expect(registryChanges({ networks: [n], endpoints: many }, { networks: [n], endpoints: changed }).map((c) => `${c.event}:${c.name}`)).toEqual(['dns_record_changed:n10']);
  });
});
