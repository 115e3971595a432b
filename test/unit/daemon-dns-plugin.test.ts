/** shoal-dns through the real skel (in-process, injected I/O), with a temp state dir. */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CniPlugin } from '../../cni/skel.js';
import * as plugin from '../../src/dns/registry-plugin.js';
import { loadRegistry } from '../../src/dns/registry.js';
import { closeStateStores, openStateStore } from '../../src/store/open.js';
import { runCni } from '../helpers/cni.js';

const dns: CniPlugin = { name: 'shoal-dns', cniArgs: ['K8S_POD_NAME'], add: plugin.add, del: plugin.del, check: plugin.check, gc: plugin.gc };
let stateDir: string;

const prevResult = {
  cniVersion: '0.4.0',
  interfaces: [{ name: 'br0' }, { name: 'veth0' }, { name: 'eth0', sandbox: '/run/netns/x' }],
  ips: [{ version: '4', address: '10.250.1.7/24', gateway: '10.250.1.1', interface: 2 }],
  dns: {},
};
const conf = (extra: Record<string, unknown> = {}) => ({
  cniVersion: '0.4.0', name: 'podnet', type: 'shoal-dns', stateDir, domainName: 'pod.test',
  hosts: { 'db.internal': '192.0.2.10' }, runtimeConfig: { aliases: { podnet: ['www'] } }, prevResult, ...extra,
});
const env = (command: string, containerId = 'c0ffee0000000001') => ({
  CNI_COMMAND: command, CNI_CONTAINERID: containerId, CNI_NETNS: '/run/netns/x', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin',
  CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=web',
});

beforeAll(() => {
  stateDir = mkdtempSync(path.join(os.tmpdir(), 'shoal-dnsplugin-'));
});
afterAll(() => {
  closeStateStores();
  rmSync(stateDir, { recursive: true, force: true });
});

describe('shoal-dns plugin', () => {
  it('ADD registers the endpoint and returns prevResult with dns merged, in the config version', async () => {
    const r = await runCni(dns, env('ADD'), conf());
    expect(r.exitCode).toBe(0);
    expect(r.json).toEqual({ ...prevResult, dns: { nameservers: ['10.250.1.1'], search: ['pod.test'] } });
    const reg = await loadRegistry(await openStateStore(stateDir));
    expect(reg.endpoints).toEqual([{ network: 'podnet', containerId: 'c0ffee0000000001', ifname: 'eth0', name: 'web', aliases: ['www'], ipv4: ['10.250.1.7/24'] }]);
    expect(reg.networks).toEqual([{ name: 'podnet', domain: 'pod.test', gateways: ['10.250.1.1'], subnets: ['10.250.1.0/24'], hosts: { 'db.internal': ['192.0.2.10'] } }]);
  });

  it('CHECK passes for the registered container and fails for a different one', async () => {
    expect((await runCni(dns, env('CHECK'), conf())).exitCode).toBe(0);
    const other = await runCni(dns, env('CHECK', 'c0ffee0000000002'), conf());
    expect(other.json).toMatchObject({ code: 3, msg: expect.stringMatching(/no DNS record for container c0ffee0000000002 interface "eth0"/) });
  });

  it('ADD without prevResult is code 7; a bad config field is code 7 naming it', async () => {
    const noPrev = await runCni(dns, env('ADD'), conf({ prevResult: undefined }));
    expect(noPrev.json).toMatchObject({ code: 7, msg: expect.stringMatching(/prevResult/) });
    const bad = await runCni(dns, env('ADD'), conf({ upstreams: ['not an address'] }));
    expect(bad.json).toMatchObject({ code: 7, msg: expect.stringMatching(/upstreams\[0\]/) });
  });

  it('GC removes attachments not in the valid list (and needs the list)', async () => {
    await runCni(dns, env('ADD', 'c0ffee0000000003'), conf());
    const noList = await runCni(dns, { CNI_COMMAND: 'GC', CNI_PATH: '/opt/cni/bin' }, { cniVersion: '1.1.0', name: 'podnet', type: 'shoal-dns', stateDir });
    expect(noList.json).toMatchObject({ code: 7 });
    const gc = await runCni(dns, { CNI_COMMAND: 'GC', CNI_PATH: '/opt/cni/bin' }, {
      cniVersion: '1.1.0', name: 'podnet', type: 'shoal-dns', stateDir, 'cni.dev/valid-attachments': [{ containerID: 'c0ffee0000000001', ifname: 'eth0' }],
    });
    expect(gc.exitCode).toBe(0);
    expect((await loadRegistry(await openStateStore(stateDir))).endpoints.map((e) => e.containerId)).toEqual(['c0ffee0000000001']);
  });

  it('DEL removes the record and the network with it; a second DEL succeeds', async () => {
    expect((await runCni(dns, env('DEL'), { cniVersion: '0.4.0', name: 'podnet', type: 'shoal-dns', stateDir })).exitCode).toBe(0);
    expect((await runCni(dns, env('DEL'), { cniVersion: '0.4.0', name: 'podnet', type: 'shoal-dns', stateDir })).exitCode).toBe(0);
    expect(await loadRegistry(await openStateStore(stateDir))).toEqual({ networks: [], endpoints: [] });
  });
});
