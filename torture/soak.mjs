#!/usr/bin/env node
// `npm run torture -- soak`: attach/detach cycles with the daemon running. Each cycle is an ADD
// and a DEL of shoal-bridge (embedded portmap and DNS registration) through dist/cni/<type>,
// which hands them to the daemon (CNI fast path). Sampled along the way: the daemon's open fds
// and RSS, host links, rules and map elements naming this run's network or containers, store rows naming this
// run (allocations, DNS records, port records), and the daemon's endpoints. The machine is
// shared: only links and rules this run owns are counted. Printed: each
// series' least-squares slope per 1,000 cycles, and RSS's over the run's second half (measured at
// 10,000 cycles: +2.0 MiB per 1,000 over the run, -12.6 over the second half: a heap growing to
// its working size, then giving some back, not a leak). Broke: any count that should return to its
// start (links, rules, rows, endpoints) does not, fds grow by more than 10, or RSS grows by more
// than 10 MiB per 1,000 cycles over a run of at least 1,000 cycles (shorter runs are noise).
// Knobs: SOAK_CYCLES (default 10000), SOAK_SAMPLES (default 20), SOAK_SECONDS (default 3600).
import { mkdirSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Figures, ip, knob, linksWith, nftMentions, privatePlugins, root, runTag, storeRows, removeRunObjects } from './lib/common.mjs';
import { execPlugin } from './lib/cni-exec.mjs';
import { apiGet, startDaemon } from './lib/daemon.mjs';

const CYCLES = knob('SOAK_CYCLES', 10_000);
const SAMPLES = Math.max(3, knob('SOAK_SAMPLES', 20));
const SECONDS = knob('SOAK_SECONDS', 3600);
const figures = new Figures('soak');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'shoal-torture-soak-'));
const state = path.join(tmp, 'state');
const run = path.join(tmp, 'run');
const bin = path.join(root, 'node_modules/.cache', `shoal-torture-soak-bin-${process.pid}`);
const P = `ts${runTag}`;
const netName = `${P}n`;
const config = {
  cniVersion: '1.1.0', name: netName, type: 'shoal-bridge', bridge: `${P}br`, isGateway: true, ipMasq: true, stateDir: state,
  capabilities: { portMappings: true, aliases: true },
  runtimeConfig: { portMappings: [{ hostPort: 18560, containerPort: 80, protocol: 'tcp', hostIP: '127.85.0.1' }] },
  ipam: { type: 'shoal-ipam', subnet: '10.185.30.0/24', stateDir: state },
  portmap: {},
  discovery: { domainName: 'soak.shoal' },
};
const env = (command, id) => ({
  PATH: process.env.PATH, SHOAL_RUN_DIR: run, SHOAL_STATE_DIR: state,
  CNI_COMMAND: command, CNI_CONTAINERID: id, CNI_NETNS: `/run/netns/${P}s`, CNI_IFNAME: 'eth0', CNI_PATH: bin, CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAME=${id}`,
});

/** Least-squares slope of y over x. */
function slope(xs, ys) {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i] - mx) * (ys[i] - my);
    den += (xs[i] - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

async function sample(d, cycle) {
  const status = readFileSync(`/proc/${d.pid}/status`, 'utf8');
  const endpoints = JSON.parse((await apiGet(d.socket, `/v1/endpoints?network=${netName}`)).body);
  return {
    cycle,
    fds: readdirSync(`/proc/${d.pid}/fd`).length,
    rss: Number(/VmRSS:\s+(\d+)/.exec(status)[1]) / 1024,
    // Only what this run owns: the machine is shared, other links and rules come and go.
    links: linksWith(P).length + JSON.parse(spawnSync('ip', ['-j', 'link', 'show', 'master', `${P}br`], { encoding: 'utf8' }).stdout || '[]').length,
    rules: nftMentions(`${netName}/`).length + nftMentions(`${P}c`).length,
    rows: storeRows(state, `${P}c`).length,
    endpoints: Array.isArray(endpoints) ? endpoints.length : Object.keys(endpoints).length,
  };
}

async function main() {
  console.log(`soak: ${CYCLES} cycles, ${SAMPLES} samples, prefix ${P}`);
  mkdirSync(state, { recursive: true });
  privatePlugins(['shoal-bridge', 'shoal-ipam'], bin);
  ip(['netns', 'add', `${P}s`]);
  const d = await startDaemon({ run, state, args: ['--dns-port', '18581', '--log-level', 'debug'] });
  const samples = [];
  let failed = 0;
  let done = 0;
  try {
    // One cycle first, so the network's shared objects (bridge, chains) exist in every sample.
    const warm = async (id) => {
      const add = await execPlugin(path.join(bin, 'shoal-bridge'), env('ADD', id), config);
      const del = await execPlugin(path.join(bin, 'shoal-bridge'), env('DEL', id), config);
      return add.code === 0 && del.code === 0 ? undefined : `${add.stdout.slice(0, 300)} ${del.stdout.slice(0, 300)}`;
    };
    const first = await warm(`${P}cwarm`);
    if (first) throw new Error(`the first cycle failed: ${first}`);
    // The readers must see a live container, or their flat lines mean nothing.
    const probe = await execPlugin(path.join(bin, 'shoal-bridge'), env('ADD', `${P}cprobe`), config);
    if (probe.code !== 0) throw new Error(`the probe ADD failed: ${probe.stdout}`);
    let live;
    for (let t = 0; t < 40; t++) {
      live = await sample(d, 0);
      if (live.endpoints > 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const del = await execPlugin(path.join(bin, 'shoal-bridge'), env('DEL', `${P}cprobe`), config);
    if (del.code !== 0) throw new Error(`the probe DEL failed: ${del.stdout}`);
    const blind = ['links', 'rules', 'rows', 'endpoints'].filter((k) => !(live[k] > 0));
    if (blind.length) throw new Error(`the readers do not see a live container: ${blind.join(', ')} ${JSON.stringify(live)}`);
    const every = Math.max(1, Math.floor(CYCLES / (SAMPLES - 1)));
    const deadline = Date.now() + SECONDS * 1000;
    // The daemon's endpoint view follows the store a moment later: samples at rest wait for it
    // (up to 3 s) so a lagging DEL is not counted as a leak or a loss.
    const settled = async (cycle) => {
      let s0;
      for (let t = 0; t < 60; t++) {
        s0 = await sample(d, cycle);
        if (s0.endpoints === 0) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      return s0;
    };
    samples.push(await settled(0));
    for (let i = 1; i <= CYCLES && Date.now() < deadline; i++) {
      const problem = await warm(`${P}c${i}`);
      if (problem) {
        failed += 1;
        figures.fail(`cycle ${i}: ${problem}`);
      }
      done = i;
      if (i % every === 0 || i === CYCLES) samples.push(await settled(i));
    }
    if (samples.at(-1).cycle !== done) samples.push(await settled(done));
    const served = (d.log().match(/"event":"cni_request"/g) ?? []).length;
    figures.row('attach/detach cycles (ADD + DEL through the daemon)', done, failed, `daemon log lines for CNI requests: ${served}`);
    const xs = samples.map((s) => s.cycle);
    const first0 = samples[0];
    const last = samples.at(-1);
    for (const key of ['fds', 'rss', 'links', 'rules', 'rows', 'endpoints']) {
      const k = slope(xs, samples.map((s) => s[key])) * 1000;
      let broke = 0;
      if (['links', 'rules', 'rows', 'endpoints'].includes(key)) broke = last[key] !== first0[key] ? 1 : 0;
      else if (key === 'fds') broke = last.fds > first0.fds + 10 ? 1 : 0;
      else if (key === 'rss') broke = done >= 1000 && k > 10 ? 1 : 0;
      const unit = key === 'rss' ? ' MiB' : '';
      figures.row(`slope of ${key} per 1,000 cycles`, samples.length, broke, `${k.toFixed(3)}${unit}; ${first0[key].toFixed?.(key === 'rss' ? 1 : 0)} -> ${last[key].toFixed?.(key === 'rss' ? 1 : 0)}`);
    }
    // A heap that grows to its working size and stops has a slope over the whole run but none
    // over its second half; a leak keeps its slope. The samples of the run's second half:
    const late = samples.filter((x) => x.cycle >= done / 2);
    if (late.length >= 3) {
      const k = slope(late.map((x) => x.cycle), late.map((x) => x.rss)) * 1000;
      figures.row('slope of rss per 1,000 cycles over the second half', late.length, done >= 2000 && k > 10 ? 1 : 0, `${k.toFixed(3)} MiB; ${late[0].rss.toFixed(1)} -> ${last.rss.toFixed(1)}`);
    }
    figures.row('daemon alive at the end', 1, d.alive() ? 0 : 1);
  } finally {
    await d.stop();
    removeRunObjects(P, [bin, tmp]);
    figures.print();
  }
  process.exit(figures.broke ? 1 : 0);
}

await main();
