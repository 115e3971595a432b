#!/usr/bin/env node
// `npm run torture -- daemon-kill`: kill -9 of the daemon under DNS load. Containers on a
// shoal-bridge network with DNS registration (ADDs served by the daemon), dig loops inside a
// container asking for every name, then the daemon is killed with SIGKILL and started again on
// the same state. Measured per round: from the new daemon's spawn to the first answer, and
// whether every name answers with its address again (no record lost). Broke: an answer later
// than DK_MAX_MS (1 s) after the restart's spawn, a name missing or wrong afterwards, a restart that fails.
// Published ports meanwhile: container 0 publishes DK_PORT (embedded portmap) to a TCP server
// that greets every connection; two probes connect every 50 ms through the whole campaign, one
// from the host to 127.0.0.1:port (OUTPUT DNAT, route_localnet) and one from container 1 to the
// gateway's host address (PREROUTING DNAT, hairpin through the bridge). Broke: any connection
// that failed or was not greeted within 1 s, before, during the outage or after the restart:
// the ports are kernel rules and must not depend on the daemon being up.
// Knobs: DK_ROUNDS (default 10), DK_CONTAINERS (default 4, at least 2), DK_MAX_MS (default 1000),
// DK_DAEMON_ARGS (extra daemon flags for the restarts).
import { mkdirSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { Figures, ip, knob, privatePlugins, root, runTag, sleep, removeRunObjects } from './lib/common.mjs';
import { execPlugin } from './lib/cni-exec.mjs';
import { startDaemon } from './lib/daemon.mjs';

const run = promisify(execFile);
const ROUNDS = knob('DK_ROUNDS', 10);
const N = Math.max(2, knob('DK_CONTAINERS', 4));
const DNS_PORT = 18584;
const HOST_PORT = 18586;
// More daemon flags for the restarts (e.g. DK_DAEMON_ARGS="--dns-workers 1" to compare).
const EXTRA_ARGS = (process.env.DK_DAEMON_ARGS ?? '').split(' ').filter(Boolean);
// The goal (issue 19) is 1 s; a loaded CI machine takes longer to start Node at all.
const MAX_MS = knob('DK_MAX_MS', 1000);
const figures = new Figures('daemon-kill');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'shoal-torture-dk-'));
const state = path.join(tmp, 'state');
const runDir = path.join(tmp, 'run');
const bin = path.join(root, 'node_modules/.cache', `shoal-torture-dk-bin-${process.pid}`);
const P = `td${runTag}`;
const GW = '10.185.60.1';
const config = {
  cniVersion: '1.1.0', name: `${P}n`, type: 'shoal-bridge', bridge: `${P}br`, isGateway: true, stateDir: state,
  ipam: { type: 'shoal-ipam', subnet: '10.185.60.0/24', stateDir: state },
  discovery: { domainName: 'dk.shoal' },
};
// Container 0 also publishes a port (what podman sends for -p with the portMappings capability).
const configOf = (i) => (i === 0
  ? { ...config, capabilities: { portMappings: true }, portmap: { snat: true }, runtimeConfig: { portMappings: [{ hostPort: HOST_PORT, containerPort: 8080, protocol: 'tcp' }] } }
  : config);

// Run with `node -e` inside a namespace (or on the host): the server greets and closes; the probe
// connects every 50 ms until its stdin closes, one line per attempt ("ok" or "fail <why>").
const SERVER = `require('net').createServer((s) => s.end('hi')).listen(8080, () => console.log('ready'))`;
const PROBE = `const net = require('net'); const [host, port] = process.argv.slice(1); let stop = false;
process.stdin.on('close', () => (stop = true)).resume();
(async function loop() {
  while (!stop) {
    const t0 = Date.now();
    const line = await new Promise((done) => {
      let got = ''; const s = net.connect(Number(port), host);
      const timer = setTimeout(() => { s.destroy(); done('fail no greeting within 1 s'); }, 1000);
      s.on('data', (d) => (got += d)); s.on('error', (e) => { clearTimeout(timer); done('fail ' + e.code); });
      s.on('close', () => { clearTimeout(timer); done(got === 'hi' ? 'ok' : 'fail greeted ' + JSON.stringify(got)); });
    });
    console.log(Date.now() + ' ' + line);
    await new Promise((r) => setTimeout(r, Math.max(0, 50 - (Date.now() - t0))));
  }
})();`;

// A DNS prober run inside container 0 (node -e): an A query for argv[3] to argv[1]:argv[2] every
// 10 ms from one socket; prints the time of every answer carrying a record. dig is no good for
// timing a restart: a query sent while nothing listens is either refused (ICMP, rate-limited
// to one a second) or waits out dig's 1 s minimum timeout, so it measured up to 1 s too late.
const DNS_PROBER = `const s = require('dgram').createSocket('udp4'); const [server, port, name] = process.argv.slice(1);
const labels = Buffer.concat(name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])));
let id = 0; s.on('message', (m) => { if (m.length > 12 && m.readUInt16BE(6) > 0) console.log(Date.now() + ' answer'); });
s.on('error', () => undefined);
process.stdin.on('close', () => process.exit(0)).resume();
setInterval(() => { id = (id + 1) & 0xffff; const h = Buffer.alloc(12); h.writeUInt16BE(id, 0); h.writeUInt16BE(0x0100, 2); h.writeUInt16BE(1, 4);
  s.send(Buffer.concat([h, labels, Buffer.from([0, 0, 1, 0, 1])]), Number(port), server); }, 10);`;

/** A probe process (in `netns`, or on the host); its lines are collected until stop(). */
function portProbe(netns, host) {
  const argv = [process.execPath, '-e', PROBE, host, String(HOST_PORT)];
  return lineProcess(netns ? ['ip', 'netns', 'exec', netns, ...argv] : argv);
}

/** A child whose stdout lines start with a Date.now() time; stopped by closing its stdin. */
function lineProcess([file, ...args]) {
  const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const exited = new Promise((r) => child.once('exit', r));
  return {
    child,
    lines: () => out.split('\n').filter(Boolean).map((l) => ({ at: Number(l.slice(0, l.indexOf(' '))), text: l.slice(l.indexOf(' ') + 1) })),
    async stop() {
      child.stdin.end();
      await Promise.race([exited, sleep(3000)]);
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL');
    },
  };
}
const env = (command, i) => ({
  PATH: process.env.PATH, SHOAL_RUN_DIR: runDir, SHOAL_STATE_DIR: state,
  CNI_COMMAND: command, CNI_CONTAINERID: `${P}c${i}`, CNI_NETNS: `/run/netns/${P}s${i}`, CNI_IFNAME: 'eth0', CNI_PATH: bin, CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAME=w${i}`,
});

/** One A query from container 0's namespace; the answer's addresses (empty: none or no reply). */
async function ask(name, timeoutS = 1) {
  try {
    const { stdout } = await run('ip', ['netns', 'exec', `${P}s0`, 'dig', `@${GW}`, '-p', String(DNS_PORT), `+time=${timeoutS}`, '+tries=1', '+short', '+nocookie', name], { timeout: 5000 });
    return stdout.trim().split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

async function main() {
  console.log(`daemon-kill: ${ROUNDS} rounds, ${N} containers, prefix ${P}`);
  mkdirSync(state, { recursive: true });
  privatePlugins(['shoal-bridge', 'shoal-ipam'], bin);
  let d = await startDaemon({ run: runDir, state, args: ['--dns-port', String(DNS_PORT)] });
  const addrs = [];
  let load;
  let server;
  let probes = [];
  let dnsProbe;
  try {
    for (let i = 0; i < N; i++) {
      ip(['netns', 'add', `${P}s${i}`]);
      const add = await execPlugin(path.join(bin, 'shoal-bridge'), env('ADD', i), configOf(i));
      if (add.code !== 0) throw new Error(`ADD ${i} failed: ${add.stdout}`);
      addrs.push(add.json.ips[0].address.split('/')[0]);
    }
    const allAnswer = async () => {
      for (let i = 0; i < N; i++) if ((await ask(`w${i}.dk.shoal`))[0] !== addrs[i]) return `w${i}.dk.shoal -> ${JSON.stringify(await ask(`w${i}.dk.shoal`))}, expected ${addrs[i]}`;
      return undefined;
    };
    for (let t = 0; (await allAnswer()) && t < 50; t++) await sleep(100);
    const before = await allAnswer();
    if (before) throw new Error(`names do not answer before any kill: ${before}`);

    // The published port: a server in container 0, probes from the host and from container 1.
    server = spawn('ip', ['netns', 'exec', `${P}s0`, process.execPath, '-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise((resolve, reject) => {
      server.stdout.once('data', resolve);
      server.once('exit', (code) => reject(new Error(`the port's server exited (${code})`)));
    });
    probes = [
      { name: `127.0.0.1:${HOST_PORT} from the host`, probe: portProbe(undefined, '127.0.0.1') },
      { name: `${GW}:${HOST_PORT} (host address) from container 1`, probe: portProbe(`${P}s1`, GW) },
    ];
    const outages = [];
    dnsProbe = lineProcess(['ip', 'netns', 'exec', `${P}s0`, process.execPath, '-e', DNS_PROBER, GW, String(DNS_PORT), 'w0.dk.shoal']);

    // Load: two dig loops, all the time, counting answers.
    let stop = false;
    const stats = { asked: 0, answered: 0 };
    load = Promise.all([0, 1].map(async (k) => {
      for (let q = 0; !stop; q++) {
        stats.asked += 1;
        if ((await ask(`w${(q + k) % N}.dk.shoal`)).length) stats.answered += 1;
      }
    }));
    const times = [];
    const apiTimes = [];
    const phases = [];
    let late = 0;
    let lost = 0;
    let failed = 0;
    for (let r = 0; r < ROUNDS; r++) {
      await sleep(300);
      const killedAt = Date.now();
      await d.kill9();
      const spawned = performance.now();
      const spawnedAt = Date.now();
      try {
        d = await startDaemon({ run: runDir, state, args: ['--dns-port', String(DNS_PORT), ...EXTRA_ARGS] });
      } catch (err) {
        failed += 1;
        figures.fail(`restart ${r}: ${err.message.slice(-500)}`);
        break;
      }
      const apiUp = performance.now() - spawned;
      apiTimes.push(apiUp);
      // The daemon's own marks (ms since its process began): where the restart's time goes.
      const started = d.log().split('\n').map((l) => { try { return JSON.parse(l); } catch { return undefined; } }).find((l) => l?.event === 'daemon_started' && l.pid === d.pid);
      if (started?.startupMs) phases.push(started.startupMs);
      // The prober's first answer after the spawn (it asks every 10 ms all along).
      let first;
      for (const deadline = Date.now() + 10_000; first === undefined && Date.now() < deadline; await sleep(20)) {
        const at = dnsProbe.lines().map((l) => l.at).find((t) => t >= spawnedAt);
        if (at !== undefined) first = at - spawnedAt;
      }
      if (first === undefined || first > MAX_MS) {
        late += 1;
        figures.fail(`restart ${r}: first answer ${first === undefined ? 'never (10 s)' : `${first.toFixed(0)} ms`} after the spawn`);
      }
      if (first !== undefined) times.push(first);
      outages.push({ from: killedAt, to: killedAt + (first ?? apiUp) });
      const missing = await allAnswer();
      if (missing) {
        lost += 1;
        figures.fail(`restart ${r}: ${missing}`);
      }
    }
    stop = true;
    await load;
    await sleep(300);
    for (const { name, probe } of probes) {
      await probe.stop();
      const lines = probe.lines();
      const down = lines.filter((l) => outages.some((o) => l.at >= o.from && l.at <= o.to));
      const failedLines = lines.filter((l) => l.text !== 'ok');
      for (const l of failedLines.slice(0, 5)) figures.fail(`${name}: ${l.text} at ${new Date(l.at).toISOString()}`);
      figures.row(`connections to ${name}, kills included`, lines.length, failedLines.length, `${down.length} of them while the daemon was down`);
      if (lines.length === 0) figures.row(`${name}: the probe ran`, 1, 1, 'no attempt recorded');
    }
    probes = [];
    times.sort((a, b) => a - b);
    figures.row('daemon kill -9 and restart under DNS load', ROUNDS, failed, `${stats.answered} of ${stats.asked} load queries answered`);
    figures.row(`first answer within ${MAX_MS} ms of the restart's spawn`, times.length, late, times.length ? `median ${times[Math.floor(times.length / 2)].toFixed(0)} ms, max ${times.at(-1).toFixed(0)} ms` : '');
    apiTimes.sort((a, b) => a - b);
    figures.row('(for scale) control API answering after the spawn', apiTimes.length, 0, apiTimes.length ? `median ${apiTimes[Math.floor(apiTimes.length / 2)].toFixed(0)} ms` : '');
    figures.row(`every name (${N}) answers its address after the restart`, ROUNDS, lost);
    if (phases.length) {
      const med = (k) => { const xs = phases.map((p) => p[k]).filter((x) => x !== undefined).sort((a, b) => a - b); return xs.length ? xs[Math.floor(xs.length / 2)] : '?'; };
      const keys = Object.keys(phases[0]);
      figures.row('(for scale) daemon startup marks, median ms since its process began', phases.length, 0, keys.map((k) => `${k} ${med(k)}`).join(', '));
    }
    for (let i = 0; i < N; i++) {
      const del = await execPlugin(path.join(bin, 'shoal-bridge'), env('DEL', i), configOf(i));
      if (del.code !== 0) figures.fail(`DEL ${i}: ${del.stdout}`);
    }
  } finally {
    for (const { probe } of probes) await probe.stop();
    await dnsProbe?.stop();
    if (server && server.exitCode === null && server.signalCode === null) process.kill(server.pid, 'SIGKILL');
    await d.stop();
    removeRunObjects(P, [bin, tmp]);
    figures.print();
  }
  process.exit(figures.broke || figures.failures.length ? 1 : 0);
}

await main();
