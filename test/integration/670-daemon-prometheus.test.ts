/**
 * A real Prometheus (Debian `prometheus`) scrapes the daemon every second: the target is up
 * through Prometheus's own HTTP API, and the daemon's series are queryable there.
 * `promtool check metrics` on the daemon's /metrics reports nothing.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerEndpoint } from '../../src/dns/registry.js';
import { closeStateStores, openStateStore } from '../../src/store/open.js';
import { uniqueName } from '../helpers/names.js';
import { freeTcpPort, metricsText, startDaemon, tempDirs, testSubnet, waitFor, type DaemonProc } from './daemon-helpers.js';

const dirs = tempDirs('670');
let daemon: DaemonProc | undefined;
let prom: ChildProcess | undefined;
let promPort: number;
let promLog = '';
const net = uniqueName('np');

async function promQuery(q: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>> {
  const res = await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(q)}`);
  const body = (await res.json()) as { data?: { result: Array<{ metric: Record<string, string>; value: [number, string] }> } };
  return body.data?.result ?? [];
}

beforeAll(async () => {
  const s = testSubnet();
  // A record, so the per-network gauges have a series (no listener: the gateway is not on the host).
  await registerEndpoint(
    await openStateStore(dirs.state),
    { name: net, gateways: [s.gateway], subnets: [s.cidr] },
    { network: net, containerId: 'c1', ifname: 'eth0', name: 'web', ipv4: [`${s.prefix}5/24`] },
  );
  closeStateStores();
  daemon = await startDaemon({ state: dirs.state, run: dirs.run, args: ['--no-firewall'] });
  promPort = await freeTcpPort();
  const config = path.join(dirs.root, 'prometheus.yml');
  writeFileSync(
    config,
    `global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: shoal\n    scrape_interval: 1s\n    static_configs:\n      - targets: ['127.0.0.1:${daemon.metricsPort}']\n`,
  );
  prom = spawn(
    'prometheus',
    [`--config.file=${config}`, `--storage.tsdb.path=${path.join(dirs.root, 'tsdb')}`, `--web.listen-address=127.0.0.1:${promPort}`, '--log.level=warn'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  prom.stderr!.on('data', (d: Buffer) => (promLog += d.toString()));
}, 30_000);

afterAll(async () => {
  if (prom?.pid && prom.exitCode === null) {
    const exited = new Promise((r) => prom!.once('exit', r));
    process.kill(prom.pid, 'SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    if (prom.exitCode === null && prom.signalCode === null) process.kill(prom.pid, 'SIGKILL');
  }
  await daemon?.stop();
  dirs.cleanup();
}, 30_000);

describe('670 Prometheus scrapes the daemon', () => {
  it('sees the target up == 1 through its HTTP API, and the daemon series', async () => {
    const up = await waitFor(
      `up{job="shoal"} == 1 (prometheus log: ${promLog})`,
      async () => {
        const r = await promQuery('up{job="shoal"}').catch(() => []);
        return r[0]?.value[1] === '1' ? r[0] : undefined;
      },
      20_000,
      250,
    );
    expect(up.metric['instance']).toBe(`127.0.0.1:${daemon!.metricsPort}`);
    const info = await waitFor('shoal_build_info', async () => (await promQuery('shoal_build_info'))[0], 10_000, 250);
    expect(info.metric['version']).toMatch(/^\d+\.\d+\.\d+/);
    const records = await promQuery(`shoal_dns_records{network="${net}"}`);
    expect(records[0]?.value[1]).toBe('1');
  }, 40_000);

  it('promtool check metrics reports nothing', async () => {
    const text = await metricsText(daemon!.metricsPort);
    expect(text).toContain('shoal_dns_records');
    const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(`${r.stdout}${r.stderr}`).toBe('');
    expect(r.status).toBe(0);
  });
});
