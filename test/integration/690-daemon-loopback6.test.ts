/**
 * Published ports on [::1]: the kernel cannot NAT them (src/portmap/loopback6.ts), so the
 * daemon proxies them. A TCP and a UDP server in a container, a mapping published by
 * shoal-portmap, and the daemon following the portmap records: [::1]:hostPort reaches the
 * container, the connection is counted, and after DEL the port is closed again.
 */
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CniPlugin } from '../../cni/skel.js';
import { add, del } from '../../src/portmap/plugin.js';
import { runCni } from '../helpers/cni.js';
import { testRunId } from '../helpers/names.js';
import { metricsText, startDaemon, tempDirs, waitFor, type DaemonProc } from './daemon-helpers.js';
import { Topology, probe, startServers, stopServers, type Ctr } from './portmap-fixture.js';

const plugin: CniPlugin = { name: 'shoal-portmap', cniArgs: ['K8S_POD_NAME'], add, del };
// 10.238.x: portmap tests use 10.236-237, bridge 10.231, IPAM/DNS 10.234-235.
const B = 1 + Math.floor(Math.random() * 250);
const PORT = 40000 + Math.floor(Math.random() * 9000);
const [TCP, UDP] = [PORT, PORT + 1];
const NET = `lb6net${testRunId()}`;
const ID = `lb6${testRunId()}cccc`;

const topo = new Topology();
const dirs = tempDirs('lb6');
let ctr: Ctr;
let gateway: string;
let servers: ChildProcess | undefined;
let daemon: DaemonProc | undefined;

function conf() {
  return {
    cniVersion: '1.0.0',
    name: NET,
    type: 'shoal-portmap',
    stateDir: dirs.state,
    runtimeConfig: { portMappings: [{ hostPort: TCP, containerPort: 80, protocol: 'tcp' }, { hostPort: UDP, containerPort: 5353, protocol: 'udp' }] },
    prevResult: ctr.prevResult,
  };
}
const env = (cmd: string) => ({ CNI_COMMAND: cmd, CNI_CONTAINERID: ID, CNI_NETNS: ctr.path, CNI_IFNAME: 'eth0', CNI_PATH: '/usr/lib/cni' });

beforeAll(async () => {
  const net = topo.network(238, B);
  gateway = net.gw6;
  ctr = topo.container(net);
  servers = await startServers(ctr.ns, 80, 5353);
  daemon = await startDaemon({ state: dirs.state, run: dirs.run, args: ['--no-firewall'] });
});

afterAll(async () => {
  await runCni(plugin, env('DEL'), conf()).catch(() => undefined);
  await daemon?.stop();
  stopServers(servers);
  topo.cleanup();
  dirs.cleanup();
});

describe('published ports on [::1] through the daemon', () => {
  it('reaches the container over TCP and UDP, counts the connection, and closes after DEL', async () => {
    expect(probe(undefined, 'tcp', '::1', TCP)).toMatch(/^error ECONNREFUSED/);
    const added = await runCni(plugin, env('ADD'), conf());
    expect(added.exitCode ?? 0, added.stdout).toBe(0);

    const tcp = await waitFor('tcp proxy on ::1', () => {
      const r = probe(undefined, 'tcp', '::1', TCP);
      return r.startsWith('tcp ') ? r : undefined;
    }, 5000, 50);
    // The container is dual-stack, so the proxy keeps IPv6 and connects from the bridge's
    // address: the container sees the host, not ::1.
    expect(tcp).toBe(`tcp ${gateway}`);
    expect(probe(undefined, 'udp', '::1', UDP)).toMatch(/^udp /);
    const metrics = await metricsText(daemon!.metricsPort);
    expect(metrics).toMatch(new RegExp(`shoal_lb_connections_total\\{service="\\[::1\\]:${TCP}/tcp",backend="${ctr.ip6}:80"\\} [1-9]`));

    const removed = await runCni(plugin, env('DEL'), conf());
    expect(removed.exitCode ?? 0, removed.stdout).toBe(0);
    await waitFor('tcp proxy on ::1 gone', () => (probe(undefined, 'tcp', '::1', TCP).startsWith('error ECONNREFUSED') ? true : undefined), 5000, 50);
  });
});
