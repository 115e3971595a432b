#!/usr/bin/env node
// DNS benchmark (issue 18): Shoal's DNS server against dnsmasq, both on the gateway address of a
// container network, queried with dnsperf from inside the container's namespace. Rounds
// alternate (Shoal first in even rounds, dnsmasq first in odd ones), each measurement after the
// same settle time, so load from anything else on the machine falls on both alike; figures are
// medians over the rounds with their min-max spread.
//
//   npm run bench -- dns
//   BENCH_SECONDS=5 BENCH_ROUNDS=5 BENCH_WORKERS=2 BENCH_SETTLE_MS=1000 node bench/dns.mjs
//   BENCH_RECORDS=1000,100000   record counts (local names, asked by bare name, all of them cycled)
//   BENCH_CHANGES=20  records added and removed one at a time, timed until every client socket
//                    sees each change (BENCH_CHANGE_SETTLE_MS=200 of quiet before each)
//   BENCH_BEFORE=1   also the server as it was before issue 18 (main thread, Node's dgram), as
//                    a third target in the same alternation ("shoal-0")
//
// Scenarios: local names at each record count; forwarded names (1,000 names under fwd.test,
// answered by a third server, a dnsmasq upstream) with a warm cache, at the first record count.
// Everything lives in 10.181.<b>.0/24 (a veth pair into a namespace made for the run) and
// 127.81.<b>.53 (the upstream), on ports 18153-18155; all of it is removed at the end.

import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { dnsperf } from './lib/dnsperf.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const env = process.env;
const seconds = Number(env.BENCH_SECONDS ?? 5);
const rounds = Number(env.BENCH_ROUNDS ?? 5);
const workers = Number(env.BENCH_WORKERS ?? 2);
const settleMs = Number(env.BENCH_SETTLE_MS ?? 1000);
const recordCounts = (env.BENCH_RECORDS ?? '1000,100000').split(',').map(Number);
const changes = Number(env.BENCH_CHANGES ?? 20);
const changeSettleMs = Number(env.BENCH_CHANGE_SETTLE_MS ?? 200);
const FORWARDED = 1000;
const b = 200 + Math.floor(Math.random() * 50);
const id = randomBytes(3).toString('hex');
const netns = `sdnsb${id}`;
const vethHost = `sdb${id}h`;
const vethNs = `sdb${id}c`;
const gateway = `10.181.${b}.1`;
const client = `10.181.${b}.2`;
const upstreamAddr = `127.81.${b}.53`;
const before = env.BENCH_BEFORE === '1';
const PORTS = { shoal: 18153, dnsmasq: 18154, upstream: 18155, before: 18156 };
mkdirSync(path.join(root, 'node_modules', '.cache'), { recursive: true });
// Under node_modules so the bundles find the shoal-sys addon the way dist/ does.
const work = mkdtempSync(path.join(root, 'node_modules', '.cache', 'shoal-bench-dns-'));
const children = new Set();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function ip(...args) {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
}

function setUpNetwork() {
  ip('netns', 'add', netns);
  ip('link', 'add', vethHost, 'type', 'veth', 'peer', 'name', vethNs, 'netns', netns);
  ip('addr', 'add', `${gateway}/24`, 'dev', vethHost);
  ip('link', 'set', vethHost, 'up');
  ip('-n', netns, 'addr', 'add', `${client}/24`, 'dev', vethNs);
  ip('-n', netns, 'link', 'set', vethNs, 'up');
  ip('-n', netns, 'link', 'set', 'lo', 'up');
}

function tearDownNetwork() {
  spawnSync('ip', ['link', 'del', vethHost]);
  spawnSync('ip', ['netns', 'del', netns]);
}

function start(cmd, args, readyPattern, onLine = () => {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${cmd} did not become ready: ${out}`)), 180_000);
    const onData = (d) => {
      out += d.toString();
      for (const line of d.toString().split('\n')) if (line) onLine(line);
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
  await Promise.race([exited, sleep(3000)]);
  if (child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL');
  children.delete(child);
}

function rssOf(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

const address = (i) => `10.181.${Math.floor(i / 250) % 256}.${(i % 250) + 1}`;
const localName = (i) => `svc${String(i).padStart(6, '0')}`;
const fwdName = (i) => `f${String(i).padStart(4, '0')}.fwd.test`;

function dnsmasqArgs(addr, port, hosts, extra) {
  return ['--no-daemon', '--conf-file=/dev/null', '--no-hosts', `--addn-hosts=${hosts}`, '--bind-interfaces', `--listen-address=${addr}`, `--port=${port}`, '--pid-file=', '--user=root', '--log-facility=-', ...extra];
}

async function bundles() {
  const common = { bundle: true, platform: 'node', target: 'node24', format: 'cjs', logLevel: 'error', external: ['*.node'], define: { 'import.meta.url': 'importMetaUrl' }, inject: [path.join(root, 'scripts/import-meta-url.js')] };
  // ESM for its top-level await; require() for the CommonJS packages inside it.
  const esm = { ...common, format: 'esm', define: {}, inject: [], banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" } };
  await build({ ...esm, entryPoints: [path.join(root, 'bench/lib/dns-shoal-server.ts')], outfile: path.join(work, 'server.mjs') });
  await build({ ...common, entryPoints: [path.join(root, 'src/dns/worker-main.ts')], outfile: path.join(work, 'dns-worker.cjs') });
}

function median(xs) {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
const spread = (xs, digits) => `${median(xs).toFixed(digits)} [${Math.min(...xs).toFixed(digits)}-${Math.max(...xs).toFixed(digits)}]`;

async function scenario(label, queryFile, targets, warm) {
  if (warm) for (const t of targets) dnsperf({ netns, server: gateway, port: t.port, queryFile, seconds, outFile: path.join(work, 'warm.txt'), runs: 2 });
  const results = Object.fromEntries(targets.map((t) => [t.name, []]));
  for (let r = 0; r < rounds; r += 1) {
    const order = r % 2 === 0 ? targets : [...targets].reverse();
    for (const t of order) {
      await sleep(settleMs);
      results[t.name].push(dnsperf({ netns, server: gateway, port: t.port, queryFile, seconds, outFile: path.join(work, `${t.name}.txt`) }));
    }
  }
  console.log(`\n${label}: ${rounds} rounds of ${seconds} s, alternating, ${settleMs} ms settle; median [min-max]`);
  for (const t of targets) {
    const rs = results[t.name];
    console.log(`  ${t.name.padEnd(8)} qps ${spread(rs.map((x) => x.qps), 0).padEnd(26)} p50 ${spread(rs.map((x) => x.p50), 3)} ms   p99 ${spread(rs.map((x) => x.p99), 3)} ms   lost ${rs.reduce((a, x) => a + x.lost, 0)}`);
  }
  const [a, c] = targets.map((t) => results[t.name]);
  const ratios = a.map((x, i) => x.qps / c[i].qps);
  console.log(`  paired ratio shoal/dnsmasq qps ${spread(ratios, 2)} (goal >= 1.00: ${median(ratios) >= 1 ? 'met' : 'NOT met'}); p99 ${median(a.map((x) => x.p99)) <= median(c.map((x) => x.p99)) ? 'no worse' : 'WORSE'}`);
  if (results['shoal-0']) console.log(`  paired ratio shoal-0 (before issue 18)/dnsmasq qps ${spread(results['shoal-0'].map((x, i) => x.qps / c[i].qps), 2)}`);
  if (a.concat(c).some((x) => !Number.isFinite(x.qps) || x.noerror === 0)) console.log(`  a run failed:\n${a.concat(c).find((x) => !Number.isFinite(x.qps) || x.noerror === 0).summary}`);
}

/** Lines a child prints, awaited one pattern at a time. */
function lineReader() {
  const lines = [];
  const waiters = new Set();
  return {
    push(line) {
      lines.push(line);
      for (const w of [...waiters]) w();
    },
    /** The next line matching `re` (lines before it are dropped); undefined after `ms`. */
    next(re, ms = 70_000) {
      return new Promise((resolve) => {
        const timer = setTimeout(() => (waiters.delete(check), resolve(undefined)), ms);
        const check = () => {
          while (lines.length) {
            const l = lines.shift();
            if (re.test(l)) {
              clearTimeout(timer);
              waiters.delete(check);
              resolve(l);
              return;
            }
          }
        };
        waiters.add(check);
        check();
      });
    },
  };
}

/**
 * A probe in the client namespace (bench/lib/dns-change-probe.mjs) for the server on `port`:
 * `time(name, expected, change)` runs `change` once the probe's clock runs, and resolves with
 * the ms until 16 client sockets all see `expected` for `name`.
 */
async function startProbe(port) {
  const probe = spawn('ip', ['netns', 'exec', netns, process.execPath, path.join(root, 'bench/lib/dns-change-probe.mjs'), gateway, String(port)], { stdio: ['pipe', 'pipe', 'inherit'] });
  children.add(probe);
  const out = lineReader();
  let rest = '';
  probe.stdout.on('data', (d) => {
    const parts = (rest + d.toString()).split('\n');
    rest = parts.pop();
    for (const l of parts) out.push(l);
  });
  if (!(await out.next(/^ready/))) throw new Error('change probe did not start');
  return {
    stop: () => stop(probe),
    async time(name, expected, change) {
      probe.stdin.write(`go ${name} ${expected}\n`);
      await out.next(/^started/);
      change();
      const seen = await out.next(/^seen /);
      return Number(seen?.slice(5) ?? NaN);
    },
  };
}

const percentile = (xs, p) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return s.length === xs.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] : NaN;
};

async function main() {
  for (const cmd of ['dnsperf', 'dnsmasq', 'ip']) {
    if (spawnSync('sh', ['-c', `command -v ${cmd}`]).status !== 0) throw new Error(`bench dns: ${cmd} not installed`);
  }
  setUpNetwork();
  await bundles();
  const fwdHosts = path.join(work, 'fwd-hosts');
  writeFileSync(fwdHosts, Array.from({ length: FORWARDED }, (_, i) => `192.0.2.${(i % 250) + 1} ${fwdName(i)}\n`).join(''));
  const fwdQueries = path.join(work, 'fwd-queries.txt');
  writeFileSync(fwdQueries, Array.from({ length: FORWARDED }, (_, i) => `${fwdName(i)} A\n`).join(''));
  const upstream = await start('dnsmasq', dnsmasqArgs(upstreamAddr, PORTS.upstream, fwdHosts, ['--no-resolv', '--local-ttl=3600']), /started|compile time options/);
  console.log(`dnsperf -c 4 -q 200 in netns ${netns} (${client}) -> ${gateway}; Shoal: ${workers} worker thread(s), batched UDP; machine: ${spawnSync('nproc', { encoding: 'utf8' }).stdout.trim()} cores shared with other work`);
  for (const [k, n] of recordCounts.entries()) {
    const names = Array.from({ length: n }, (_, i) => localName(i));
    const hosts = path.join(work, `hosts-${n}`);
    writeFileSync(hosts, names.map((x, i) => `${address(i)} ${x}\n`).join(''));
    const queries = path.join(work, `queries-${n}.txt`);
    writeFileSync(queries, names.map((x) => `${x} A\n`).join(''));
    const records = path.join(work, `records-${n}.json`);
    const network = { name: 'bench', domain: 'bench.shoal', subnets: [`10.181.${b}.0/24`], gateways: [gateway], upstreams: [`${upstreamAddr}:${PORTS.upstream}`] };
    writeFileSync(records, JSON.stringify({ networks: [network], endpoints: names.map((x, i) => ({ network: 'bench', containerId: `c${i}`, name: x, ipv4: [address(i)] })) }));

    const mem = [];
    let applied = '';
    const shoalOut = lineReader();
    const shoal = await start(process.execPath, ['--expose-gc', path.join(work, 'server.mjs'), records, gateway, String(PORTS.shoal), String(workers), path.join(work, 'dns-worker.cjs')], /READY/, (l) => {
      if (l.startsWith('MEM ')) mem.push(Number(l.slice(4)));
      if (l.startsWith('APPLIED ')) applied = l.slice(8);
      shoalOut.push(l);
    });
    const shoal0Out = lineReader();
    const shoal0 = before ? await start(process.execPath, ['--expose-gc', path.join(work, 'server.mjs'), records, gateway, String(PORTS.before), '0', '', 'dgram'], /READY/, (l) => shoal0Out.push(l)) : undefined;
    const emptyMasq = await start('dnsmasq', dnsmasqArgs(gateway, PORTS.dnsmasq, '/dev/null', ['--no-resolv', '--cache-size=10000']), /started|compile time options/);
    await sleep(300);
    const masqEmptyRss = rssOf(emptyMasq.pid);
    await stop(emptyMasq);
    const masq = await start('dnsmasq', dnsmasqArgs(gateway, PORTS.dnsmasq, hosts, ['--no-resolv', `--server=${upstreamAddr}#${PORTS.upstream}`, '--local=/bench.shoal/', '--cache-size=10000', '--local-ttl=5']), /started|compile time options/);
    await sleep(500 + n / 100);
    console.log(`\n== ${n.toLocaleString('en')} records`);
    console.log(`  memory: Shoal RSS +${((mem[1] - mem[0]) / 2 ** 20).toFixed(1)} MiB for the records (${workers} worker snapshot(s); ${(mem[1] / 2 ** 20).toFixed(0)} MiB total), records applied in ${applied} ms; dnsmasq RSS +${((rssOf(masq.pid) - masqEmptyRss) / 2 ** 20).toFixed(1)} MiB (${(rssOf(masq.pid) / 2 ** 20).toFixed(0)} MiB total)`);
    const targets = [
      { name: 'shoal', port: PORTS.shoal },
      { name: 'dnsmasq', port: PORTS.dnsmasq },
      ...(before ? [{ name: 'shoal-0', port: PORTS.before }] : []),
    ];
    await scenario(`local names, ${n.toLocaleString('en')} records, all asked in turn`, queries, targets, false);
    // Records added and removed while idle, one at a time: ms until every client socket sees
    // each change. Shoal is handed the whole new record set (parsed beforehand: reading it is
    // the daemon's part) and finds what changed; dnsmasq re-reads its hosts file on SIGHUP.
    // Asked as newbieN.bench.shoal, which both answer locally once it is gone (NXDOMAIN:
    // Shoal's zone, dnsmasq's --local=/bench.shoal/), so no upstream round trip is measured.
    const seen = { shoal: [], dnsmasq: [], 'shoal-0': [] };
    const inside = { set: [], applied: [] };
    const base = JSON.parse(readFileSync(records, 'utf8'));
    const hostsText = readFileSync(hosts, 'utf8');
    const probes = { shoal: await startProbe(PORTS.shoal), dnsmasq: await startProbe(PORTS.dnsmasq), 'shoal-0': before ? await startProbe(PORTS.before) : undefined };
    const shoalChange = async (server, out, probe, name, want) => {
      process.kill(server.pid, 'SIGUSR1');
      if (!(await out.next(/^LOADED/))) throw new Error('the Shoal server did not load its next records');
      await sleep(changeSettleMs);
      const ms = await probe.time(name, want, () => process.kill(server.pid, 'SIGHUP'));
      const [set, applied] = ((await out.next(/^CHANGED /, 10_000)) ?? 'CHANGED NaN NaN').split(' ').slice(1).map(Number);
      if (server === shoal) {
        inside.set.push(set);
        inside.applied.push(applied);
      }
      return ms;
    };
    for (let i = 0; i < changes; i += 1) {
      const name = `newbie${i}`;
      const addr = `10.181.${b}.${100 + (i % 100)}`;
      const extra = { network: 'bench', containerId: `c-${name}`, name, ipv4: [addr] };
      for (const [change, want] of [['add', addr], ['remove', `!${addr}`]]) {
        writeFileSync(`${records}.reload`, JSON.stringify(change === 'add' ? { ...base, endpoints: [...base.endpoints, extra] } : base));
        writeFileSync(hosts, change === 'add' ? `${hostsText}${addr} ${name}.bench.shoal\n` : hostsText);
        seen.shoal.push(await shoalChange(shoal, shoalOut, probes.shoal, `${name}.bench.shoal`, want));
        await sleep(changeSettleMs);
        seen.dnsmasq.push(await probes.dnsmasq.time(`${name}.bench.shoal`, want, () => process.kill(masq.pid, 'SIGHUP')));
        if (shoal0) seen['shoal-0'].push(await shoalChange(shoal0, shoal0Out, probes['shoal-0'], `${name}.bench.shoal`, want));
      }
    }
    for (const p of Object.values(probes)) await p?.stop();
    const changeLine = (xs) => `p50 ${percentile(xs, 50)?.toFixed(1)} p99 ${percentile(xs, 99)?.toFixed(1)} max ${Math.max(...xs).toFixed(1)}`;
    console.log(`  record change seen by 16 client sockets (${changes} adds and ${changes} removes, one at a time), ms: shoal ${changeLine(seen.shoal)}; dnsmasq ${changeLine(seen.dnsmasq)}${shoal0 ? `; shoal-0 ${changeLine(seen['shoal-0'])}` : ''}`);
    console.log(`    inside Shoal: setRecords (the diff) ${changeLine(inside.set)}; until every worker applied it ${changeLine(inside.applied)}`);
    if (k === 0) await scenario(`forwarded names (${FORWARDED} under fwd.test), warm caches`, fwdQueries, targets, true);
    await stop(shoal);
    await stop(shoal0);
    await stop(masq);
  }
  await stop(upstream);
}

const cleanup = async () => {
  for (const c of [...children]) await stop(c);
  tearDownNetwork();
  rmSync(work, { recursive: true, force: true });
};
process.on('SIGINT', () => void cleanup().then(() => process.exit(130)));
try {
  await main();
} catch (err) {
  console.error(err);
  process.exitCode = 1;
} finally {
  await cleanup();
}
