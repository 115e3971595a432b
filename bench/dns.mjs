#!/usr/bin/env node
// DNS benchmark: dnsperf against Shoal's DNS server and against dnsmasq serving the same 1,000
// names, both on loopback, one after the other in one run. Prints qps, latency and the ratio.
//
//   node bench/dns.mjs                 (or: npm run bench -- dns)
//   BENCH_SECONDS=5 node bench/dns.mjs shorter runs (default 10 s each)
//   BENCH_PROFILE=1 node bench/dns.mjs also writes a V8 CPU profile of the Shoal server
//
// Shoal's TypeScript is bundled with esbuild into a temp dir and run in a child process, so
// dnsperf, Shoal and dnsmasq are three processes; every child is killed by its PID at the end.

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import dgram from 'node:dgram';
import net from 'node:net';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const NAMES = 1000;
const b = 1 + Math.floor(Math.random() * 250);
const shoalAddr = `127.59.${b}.1`;
const dnsmasqAddr = `127.59.${b}.2`;
const clientAddr = `127.59.${b}.10`;
const work = mkdtempSync(path.join(tmpdir(), 'shoal-bench-dns-'));
const children = new Set();

function which(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

async function freePort(address) {
  for (;;) {
    const s = dgram.createSocket('udp4');
    const port = await new Promise((res, rej) => {
      s.once('error', rej);
      s.bind(0, address, () => res(s.address().port));
    });
    s.close();
    const ok = await new Promise((res) => {
      const t = net.createServer();
      t.once('error', () => res(false));
      t.listen(port, address, () => t.close(() => res(true)));
    });
    if (ok) return port;
  }
}

function start(cmd, args, readyPattern) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${cmd} did not become ready: ${out}`)), 10_000);
    const onData = (d) => {
      out += d.toString();
      if (readyPattern.test(out)) {
        clearTimeout(timer);
        resolve(child);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => {
      children.delete(child);
      clearTimeout(timer);
      reject(new Error(`${cmd} exited (${code}): ${out}`));
    });
  });
}

async function stop(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  process.kill(child.pid, 'SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
  if (child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL');
  children.delete(child);
}

function dnsperf(server, port, queryFile) {
  const args = ['-s', server, '-p', String(port), '-a', clientAddr, '-d', queryFile, '-l', String(seconds), '-c', '4', '-q', '200', '-t', '2'];
  const r = spawnSync('dnsperf', args, { encoding: 'utf8', timeout: (seconds + 20) * 1000 });
  const text = `${r.stdout}${r.stderr}`;
  const num = (re) => Number(re.exec(text)?.[1] ?? NaN);
  return {
    qps: num(/Queries per second:\s+([\d.]+)/),
    avgMs: num(/Average Latency \(s\):\s+([\d.]+)/) * 1000,
    maxMs: num(/Average Latency \(s\):\s+[\d.]+ \(min [\d.]+, max ([\d.]+)\)/) * 1000,
    sdMs: num(/Latency StdDev \(s\):\s+([\d.]+)/) * 1000,
    completed: num(/Queries completed:\s+(\d+)/),
    lost: num(/Queries lost:\s+(\d+)/),
    noerror: num(/NOERROR (\d+)/),
    text,
  };
}

function address(i) {
  return `10.200.${Math.floor(i / 250)}.${(i % 250) + 1}`;
}

async function main() {
  for (const cmd of ['dnsperf', 'dnsmasq']) {
    if (!which(cmd)) {
      console.error(`bench dns: ${cmd} not installed`);
      process.exit(2);
    }
  }
  const names = Array.from({ length: NAMES }, (_, i) => `svc${String(i).padStart(4, '0')}`);
  // Same data both sides: 1,000 names, one IPv4 each, TTL 5 s, asked by bare name.
  const queryFile = path.join(work, 'queries.txt');
  writeFileSync(queryFile, names.map((n) => `${n} A\n`).join(''));
  const hostsFile = path.join(work, 'hosts');
  writeFileSync(hostsFile, names.map((n, i) => `${address(i)} ${n}\n`).join(''));
  const config = {
    networks: [{ name: 'bench', domain: 'bench.shoal', subnets: [`127.59.${b}.0/24`], gateways: [shoalAddr], upstreams: ['127.0.0.1:9'] }],
    endpoints: names.map((n, i) => ({ network: 'bench', containerId: `c${i}`, name: n, ipv4: [address(i)] })),
  };
  writeFileSync(path.join(work, 'records.json'), JSON.stringify(config));

  await build({
    entryPoints: [path.join(root, 'src/dns/index.ts')],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node24',
    outfile: path.join(work, 'dns.cjs'),
    logLevel: 'error',
  });
  const serverScript = path.join(work, 'server.cjs');
  writeFileSync(
    serverScript,
    `const { ShoalDns } = require('./dns.cjs');
const { Registry } = require(${JSON.stringify(path.join(root, 'node_modules/prom-client'))});
const fs = require('node:fs');
const dns = new ShoalDns({ registry: new Registry(), localTtl: 5, resolvConfPath: '/nonexistent' });
dns.setRecords(JSON.parse(fs.readFileSync(${JSON.stringify(path.join(work, 'records.json'))}, 'utf8')));
dns.addListener(process.argv[2], Number(process.argv[3])).then((l) => console.log('READY ' + l.port));
process.on('SIGTERM', () => dns.close().then(() => process.exit(0)));
`,
  );

  const shoalPort = await freePort(shoalAddr);
  const dnsmasqPort = await freePort(dnsmasqAddr);
  const profile = process.env.BENCH_PROFILE === '1';
  const nodeArgs = profile ? ['--cpu-prof', `--cpu-prof-dir=${path.join(root, 'bench', 'profiles')}`] : [];

  console.log(`1,000 names, A queries by bare name, dnsperf -c 4 -q 200 -l ${seconds}, loopback, ${shoalAddr} vs ${dnsmasqAddr}`);
  const shoal = await start(process.execPath, [...nodeArgs, serverScript, shoalAddr, String(shoalPort)], /READY/);
  const rs = dnsperf(shoalAddr, shoalPort, queryFile);
  await stop(shoal);

  const dnsmasq = await start(
    'dnsmasq',
    ['--no-daemon', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', `--addn-hosts=${hostsFile}`, '--bind-interfaces', `--listen-address=${dnsmasqAddr}`, `--port=${dnsmasqPort}`, '--pid-file=', '--user=root', '--local-ttl=5', '--cache-size=10000', '--log-facility=-'],
    /started|compile time options/,
  );
  await new Promise((r) => setTimeout(r, 300));
  const rd = dnsperf(dnsmasqAddr, dnsmasqPort, queryFile);
  await stop(dnsmasq);

  const row = (name, r) => `${name.padEnd(8)} ${r.qps.toFixed(0).padStart(9)} qps   avg ${r.avgMs.toFixed(3)} ms   max ${r.maxMs.toFixed(2)} ms   sd ${r.sdMs.toFixed(3)} ms   completed ${r.completed}  lost ${r.lost}  NOERROR ${r.noerror}`;
  console.log(row('shoal', rs));
  console.log(row('dnsmasq', rd));
  const ratio = rs.qps / rd.qps;
  console.log(`ratio shoal/dnsmasq qps: ${ratio.toFixed(2)}  (goal >= 1.00: ${ratio >= 1 ? 'met' : 'NOT met'})`);
  if (!Number.isFinite(ratio)) {
    console.log('--- dnsperf output (shoal) ---\n' + rs.text + '\n--- dnsperf output (dnsmasq) ---\n' + rd.text);
    process.exitCode = 1;
  }
  if (profile) console.log(`CPU profile(s) in bench/profiles: ${readdirSync(path.join(root, 'bench', 'profiles')).join(', ')}`);
}

try {
  await main();
} finally {
  for (const c of [...children]) await stop(c);
  rmSync(work, { recursive: true, force: true });
}
