/**
 * The daemon's life cycle as a child process: pid file (refusal, stale take-over), the control
 * API over a 0600 socket, /metrics only, a gateway that appears after the network (pending
 * listener, retried), SIGHUP and POST /v1/reload, SIGTERM removing pid file and socket, and the
 * etcd store refusal.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerEndpoint } from '../../src/dns/registry.js';
import { closeStateStores, openStateStore } from '../../src/store/open.js';
import { ipQuiet, KernelObjects } from '../helpers/kernel-objects.js';
import { uniqueName } from '../helpers/names.js';
import { api, dnsRulesOf, startDaemon, tempDirs, testSubnet, waitFor, type DaemonProc } from './daemon-helpers.js';

const objs = new KernelObjects('sl');
const dirs = tempDirs('660');
let daemon: DaemonProc | undefined;
const net = uniqueName('nl');
const subnet = testSubnet();
let bridge: string;

interface Status {
  pid: number;
  listeners: string[];
  pendingListeners: Array<{ address: string; code: string }>;
  networks: number;
  endpoints: number;
}

beforeAll(async () => {
  // A stale pid file (its process is gone) must not stop the daemon from starting.
  mkdirSync(dirs.run, { recursive: true });
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  writeFileSync(`${dirs.run}/shoald.pid`, `${dead.stdout}\n`);
  daemon = await startDaemon({ state: dirs.state, run: dirs.run });
}, 30_000);

afterAll(async () => {
  if (daemon && daemon.child.exitCode === null) await daemon.stop();
  closeStateStores();
  if (bridge) ipQuiet(['link', 'del', 'dev', bridge]);
  objs.cleanup();
  dirs.cleanup();
});

describe('660 daemon life cycle', () => {
  it('took over the stale pid file and holds its own pid there', () => {
    expect(readFileSync(daemon!.pidFile, 'utf8').trim()).toBe(String(daemon!.pid));
  });

  it('serves the control API on a mode 0600 unix socket', async () => {
    expect(statSync(daemon!.socket).isSocket()).toBe(true);
    expect(statSync(daemon!.socket).mode & 0o777).toBe(0o600);
    const status = await api(daemon!.socket, '/v1/status');
    expect(status.status).toBe(200);
    expect(status.body).toMatchObject({ pid: daemon!.pid, listeners: [], networks: 0, endpoints: 0, dnsPort: 53, version: expect.any(String) });
    expect((await api(daemon!.socket, '/v1/networks')).body).toEqual([]);
    expect((await api(daemon!.socket, '/v1/endpoints')).body).toEqual([]);
    expect((await api(daemon!.socket, '/v1/nope')).status).toBe(404);
    expect((await api(daemon!.socket, '/v1/status', 'POST')).status).toBe(405);
    expect((await api(daemon!.socket, '/v1/reload', 'GET')).status).toBe(405);
  });

  it('refuses a client that is not root even when the socket\'s mode would let it in (peer credentials)', async () => {
    // Open the way as a misconfiguration would: the socket and its directories readable by all.
    const opened = [path.dirname(path.dirname(daemon!.socket)), path.dirname(daemon!.socket)];
    const modes = opened.map((d) => statSync(d).mode & 0o777);
    for (const d of opened) chmodSync(d, 0o755);
    chmodSync(daemon!.socket, 0o666);
    try {
      const asNobody = spawnSync(
        process.execPath,
        ['-e', `const http=require('node:http');const r=http.get({socketPath:${JSON.stringify(daemon!.socket)},path:'/v1/status'},(res)=>{console.log('status '+res.statusCode);res.resume()});r.on('error',(e)=>console.log('error '+e.code));`],
        { uid: 65534, gid: 65534, encoding: 'utf8', timeout: 10_000 },
      );
      // Closed before any answer: the write fails (EPIPE) or the read does (ECONNRESET).
      expect(asNobody.stdout.trim()).toMatch(/^error (ECONNRESET|EPIPE)$/);
      await daemon!.waitLog((l) => l['event'] === 'api_peer_refused' && l['uid'] === 65534);
      // Root is still served through the same socket.
      expect((await api(daemon!.socket, '/v1/status')).status).toBe(200);
    } finally {
      chmodSync(daemon!.socket, 0o600);
      opened.forEach((d, i) => chmodSync(d, modes[i]!));
    }
  });

  it('serves /metrics and nothing else on the metrics address', async () => {
    const m = await fetch(`http://127.0.0.1:${daemon!.metricsPort}/metrics`);
    expect(m.status).toBe(200);
    const text = await m.text();
    // The daemon runs on the Node that runs the tests (Node 24: scripts/node-env.sh).
    expect(text).toMatch(new RegExp(`^shoal_build_info\\{version="[^"]+",node="${process.version.replaceAll('.', '\\.')}"\\} 1$`, 'm'));
    expect(process.versions.node.split('.')[0]).toBe('24');
    expect(text).toContain('process_cpu_seconds_total');
    expect(text).toContain('# TYPE shoal_ipam_addresses_allocated gauge');
    expect((await fetch(`http://127.0.0.1:${daemon!.metricsPort}/`)).status).toBe(404);
    expect((await fetch(`http://127.0.0.1:${daemon!.metricsPort}/metrics/x`)).status).toBe(404);
  });

  it('refuses to start a second daemon on the same pid file', async () => {
    const second = await startDaemon({ state: dirs.state, run: dirs.run, waitReady: false });
    const exit = await second.exited;
    expect(exit.code).toBe(1);
    expect(second.stdout()).toMatch(new RegExp(`another daemon \\(pid ${daemon!.pid}\\) holds the pid file`));
    expect(readFileSync(daemon!.pidFile, 'utf8').trim()).toBe(String(daemon!.pid));
    expect(existsSync(daemon!.socket)).toBe(true);
  });

  it('fails clearly when the etcd cluster it should join does not answer', async () => {
    const other = tempDirs('660e');
    try {
      // Port 9 (discard): nothing listens there on loopback. A 1 s TTL bounds the connect to 1 s.
      const d = await startDaemon({ state: other.state, run: other.run, args: ['--store', 'etcd://127.0.0.1:9', '--advertise-addr', '127.0.0.1', '--node-ttl', '1'], waitReady: false });
      expect((await d.exited).code).toBe(1);
      expect(d.stdout()).toMatch(/failed to read from "127\.0\.0\.1:9"/);
      expect(existsSync(`${other.run}/shoald.pid`)).toBe(false);
    } finally {
      other.cleanup();
    }
  });

  it('keeps a gateway that is not on the host pending and listens once it appears', async () => {
    const store = await openStateStore(dirs.state);
    await registerEndpoint(
      store,
      { name: net, domain: 'l.shoal', gateways: [subnet.gateway], subnets: [subnet.cidr] },
      { network: net, containerId: 'c1', ifname: 'eth0', name: 'late', ipv4: [`${subnet.prefix}5/24`] },
    );
    const pending = await waitFor('pending listener', async () => {
      const s = (await api(daemon!.socket, '/v1/status')).body as Status;
      return s.pendingListeners.find((p) => p.address === subnet.gateway);
    });
    expect(pending.code).toBe('EADDRNOTAVAIL');
    // The gateway shows up (as a bridge plugin would add it); the retry timer binds it.
    bridge = objs.linkName();
    expect(ipQuiet(['link', 'add', bridge, 'type', 'bridge'])).toBe(true);
    expect(ipQuiet(['addr', 'add', `${subnet.gateway}/24`, 'dev', bridge])).toBe(true);
    ipQuiet(['link', 'set', bridge, 'up']);
    await waitFor('listener up', async () => {
      const s = (await api(daemon!.socket, '/v1/status')).body as Status;
      return s.listeners.includes(subnet.gateway) && s.pendingListeners.length === 0 ? true : undefined;
    }, 5000);
    expect(daemon!.logs.filter((l) => l['event'] === 'dns_listener_pending' && l['address'] === subnet.gateway)).toHaveLength(1);
    expect(dnsRulesOf(`dns:${net}`)).toBe(1);
  });

  it('reloads on SIGHUP and on POST /v1/reload, logging the full state again', async () => {
    const before = daemon!.logs.length;
    process.kill(daemon!.pid, 'SIGHUP');
    await daemon!.waitLog((l) => l['event'] === 'daemon_reload' && l['source'] === 'SIGHUP');
    await waitFor('records logged again', () => daemon!.logs.slice(before).find((l) => l['event'] === 'dns_record_added' && l['name'] === 'late'));
    const r = await api(daemon!.socket, '/v1/reload', 'POST');
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ listeners: [subnet.gateway], endpoints: 1, lastSync: { reason: 'reload (api)' } });
    expect(daemon!.child.exitCode).toBeNull();
  });

  it('stops on SIGTERM with exit 0, removing pid file, socket and its firewall rules', async () => {
    const exit = await daemon!.stop();
    expect(exit).toEqual({ code: 0, signal: null });
    expect(existsSync(daemon!.pidFile)).toBe(false);
    expect(existsSync(daemon!.socket)).toBe(false);
    expect(dnsRulesOf(`dns:${net}`)).toBe(0);
    expect(daemon!.logs.at(-1)).toMatchObject({ event: 'daemon_stopped', reason: 'SIGTERM' });
  });
});
