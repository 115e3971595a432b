#!/usr/bin/env node
// `npm run torture -- configs`: mutated CNI invocations fed to every Shoal plugin. Each case is
// a valid base config and environment with one mutation (random bytes, truncation, unknown
// versions, odd ifnames, container ids with separators, netns paths that are not namespaces,
// huge numbers, deep nesting, wrong types, unknown keys, dropped keys, bad CNI_ARGS).
// Asserted for every answer: a spec error JSON (cniVersion, numeric code, msg) with a code the
// mutation class allows, never a stack trace, never code 999; an ADD that succeeded is DELeted
// and must leave nothing. At the end: no link, netns, nft rule, allocation or DNS record left.
//
// In-process through the plugins' own modules (cni/plugins/*, cni/skel.ts, bundled here), plus
// a sample through the real executables (dist/cni/<type>: forwarder, then the Node plugin).
// Knobs: CONFIGS_COUNT (per plugin, default 100000), CONFIGS_EXEC (executable runs in all,
// default 500), CONFIGS_SECONDS (time budget of the in-process part, shared out per plugin, default 900),
// CONFIGS_PLUGINS (comma list), TORTURE_SEED.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Figures, STACK_FRAME, bundle, storeRows, knob, linksWith, nftMentions, privatePlugins, removeRunObjects, root, runTag, seeded } from './lib/common.mjs';
import { CLASSES, EXPECTED, mutate } from './lib/mutate.mjs';

const COUNT = knob('CONFIGS_COUNT', 100_000);
const EXEC = knob('CONFIGS_EXEC', 500);
const SECONDS = knob('CONFIGS_SECONDS', 900);
const ALL = ['shoal-bridge', 'shoal-macvlan', 'shoal-ipvlan', 'shoal-vxlan', 'shoal-ipam', 'shoal-portmap', 'shoal-dns'];
const PLUGINS = process.env.CONFIGS_PLUGINS ? process.env.CONFIGS_PLUGINS.split(',') : ALL;
const random = seeded();
const tmp = mkdtempSync(path.join(os.tmpdir(), 'shoal-torture-configs-'));
const stateDir = path.join(tmp, 'state');
const net = `tcf${runTag}`;
const bridgeName = `tcb${runTag}`;
const figures = new Figures('configs');

// Paths that exist but are not network namespaces, and some that do not exist.
const notNs = path.join(tmp, 'not-a-netns');
writeFileSync(notNs, 'x');
const NETNS_PATHS = ['/nonexistent/netns', notNs, tmp, '/dev/null', '', 'relative-ns', `/run/netns/${net}-missing`, '/proc/self/ns/../status', `${notNs}\0`, 'x'.repeat(5000)];

// Plugins resolve a default state/run dir from the environment: keep both inside this run.
process.env.SHOAL_STATE_DIR = stateDir;
process.env.SHOAL_RUN_DIR = path.join(tmp, 'run');
// Relative paths a mutation may produce land here, not in the project.
process.chdir(tmp);

/** `i` spreads published ports and the portmap target address over 4 values: the executables
 * run 4 cases at once, and two containers publishing one port, or two containers' mappings to
 * one address and port, is a refusal (code 100), not a finding. */
function baseConfig(type, i = 0) {
  const ipam = { type: 'shoal-ipam', subnet: '10.185.250.0/24', stateDir };
  const common = { cniVersion: '1.1.0', name: net, type, stateDir };
  switch (type) {
    case 'shoal-bridge':
      return { ...common, bridge: bridgeName, isGateway: true, ipMasq: true, capabilities: { portMappings: true, aliases: true }, runtimeConfig: { portMappings: [{ hostPort: 18594 + (i % 4), containerPort: 80, protocol: 'tcp' }], aliases: { [net]: ['web'] } }, ipam, portmap: {}, discovery: { domainName: 'torture.shoal' } };
    case 'shoal-macvlan':
    case 'shoal-ipvlan':
      // A parent that does not exist: nothing may ever be made on a real link.
      return { ...common, master: `tcm${runTag}`, mode: type === 'shoal-macvlan' ? 'bridge' : 'l2', ipam };
    case 'shoal-vxlan':
      return { ...common, vni: 4185, bridge: `tcv${runTag}`, underlayInterface: `tcu${runTag}`, ipam: { ...ipam, subnet: '10.185.251.0/24' } };
    case 'shoal-ipam':
      return { ...common, ipam };
    case 'shoal-portmap':
      return { ...common, capabilities: { portMappings: true }, runtimeConfig: { portMappings: [{ hostPort: 18590 + (i % 4), containerPort: 80, protocol: 'tcp' }] }, prevResult: { cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: notNs }], ips: [{ address: `10.185.252.${10 + (i % 4)}/24`, interface: 0 }] } };
    case 'shoal-dns':
      return { ...common, domainName: 'torture.shoal', prevResult: { cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: notNs }], ips: [{ address: '10.185.252.6/24', interface: 0 }] } };
  }
  throw new Error(type);
}

function baseEnv(verb, i) {
  const env = { PATH: process.env.PATH, CNI_COMMAND: verb, CNI_PATH: path.join(tmp, 'bin') };
  if (verb === 'ADD' || verb === 'DEL' || verb === 'CHECK') Object.assign(env, { CNI_CONTAINERID: `tc${runTag}x${i}`, CNI_NETNS: NETNS_PATHS[i % 3], CNI_IFNAME: 'eth0' });
  return env;
}

const VERBS = ['ADD', 'ADD', 'ADD', 'DEL', 'DEL', 'CHECK', 'GC', 'STATUS'];

/**
 * Judges one answer; returns a problem or undefined. `cls` is the mutation class, `verb` the
 * command: STATUS/GC ignore CNI_CONTAINERID/IFNAME/NETNS, so those classes may succeed there.
 */
function judge(cls, verb, code, stdout, stderr) {
  if (STACK_FRAME.test(stdout)) return `stack trace on stdout: ${stdout.slice(0, 300)}`;
  if (code === 0) {
    const envOnly = ['ifname', 'containerId', 'netns'].includes(cls) && (verb === 'GC' || verb === 'STATUS');
    if (!EXPECTED[cls].includes(0) && !envOnly && !(cls === 'cniArgs' && false)) return `exit 0 for a ${cls} mutation: ${stdout.slice(0, 200)}`;
    return undefined;
  }
  let json;
  try {
    json = JSON.parse(stdout);
  } catch {
    return `exit ${code} without JSON on stdout: ${JSON.stringify(stdout.slice(0, 200))} ${stderr.slice(0, 300)}`;
  }
  if (typeof json !== 'object' || json === null) return `stdout is not an object: ${stdout.slice(0, 200)}`;
  if (typeof json.cniVersion !== 'string' || typeof json.code !== 'number' || typeof json.msg !== 'string') return `not a spec error: ${stdout.slice(0, 200)}`;
  // CHECK of an attachment that was never added: the plugin says what it found missing
  // ("failed to check ..."); the spec leaves CHECK's failure codes to the plugin.
  if (json.code === 999 && verb === 'CHECK' && json.msg.startsWith('failed to check')) return undefined;
  if (json.code === 999) return `code 999 (internal) for ${cls}: ${json.msg.slice(0, 200)} ${String(json.details ?? '').slice(0, 200)}`;
  // STATUS answers 50/51 when the plugin cannot serve ADDs (here: a parent link that does not exist).
  const allowed = [...EXPECTED[cls], ...(verb === 'GC' ? [0, 4, 7] : verb === 'STATUS' ? [0, 4, 7, 50, 51] : [])];
  if (!allowed.includes(json.code)) return `code ${json.code} for ${cls} (expected ${EXPECTED[cls].join('/')}): ${json.msg.slice(0, 200)}`;
  return undefined;
}

async function inProcess() {
  const mod = await bundle('configs-plugins', [
    "export { pluginMain } from './cni/skel.ts';",
    ...ALL.map((t, i) => `export { plugin as p${i} } from './cni/plugins/${t}.ts';`),
  ].join('\n'));
  const plugins = Object.fromEntries(ALL.map((t, i) => [t, mod[`p${i}`]]));
  let escaped = 0;
  process.on('unhandledRejection', (err) => {
    escaped += 1;
    figures.fail(`unhandled rejection: ${err?.stack ?? err}`);
  });
  const run = async (type, env, stdin) => {
    let stdout = '';
    let stderr = '';
    let code;
    await mod.pluginMain(plugins[type], {
      env,
      stdin,
      stdout: { write: (s) => (stdout += s) },
      stderr: { write: (s) => (stderr += s) },
      exit: (c) => (code = c),
    });
    return { code, stdout, stderr };
  };
  for (const type of PLUGINS) {
    // The budget is shared out evenly: every plugin gets its turn.
    const deadline = Date.now() + (SECONDS * 1000) / PLUGINS.length;
    const byClass = Object.fromEntries(CLASSES.map((c) => [c, { n: 0, broke: 0 }]));
    let ran = 0;
    let adds = 0;
    for (let i = 0; i < COUNT && Date.now() < deadline; i++) {
      const verb = VERBS[i % VERBS.length];
      const c = mutate(random, { env: baseEnv(verb, i), config: baseConfig(type) }, NETNS_PATHS);
      let res;
      try {
        res = await run(type, c.env, c.stdin);
      } catch (err) {
        res = { code: -1, stdout: '', stderr: String(err?.stack ?? err) };
      }
      ran += 1;
      byClass[c.cls].n += 1;
      const problem = res.code === -1 ? `pluginMain threw: ${res.stderr.slice(0, 300)}` : judge(c.cls, verb, res.code, res.stdout, res.stderr);
      if (problem) {
        byClass[c.cls].broke += 1;
        figures.fail(`${type} ${verb} ${c.cls} ${c.what}: ${problem}`);
      }
      if (res.code === 0 && verb === 'ADD') {
        // What an accepted ADD made must go with its DEL (same env and config).
        adds += 1;
        const del = await run(type, { ...c.env, CNI_COMMAND: 'DEL' }, c.stdin);
        if (del.code !== 0) {
          byClass[c.cls].broke += 1;
          figures.fail(`${type} DEL after a successful ${c.cls} ADD failed: ${del.stdout.slice(0, 200)}`);
        }
      }
    }
    for (const cls of CLASSES) if (byClass[cls].n) figures.row(`in-process ${type} ${cls}`, byClass[cls].n, byClass[cls].broke);
    figures.row(`in-process ${type} total (ADDs accepted then DELeted: ${adds})`, ran, Object.values(byClass).reduce((n, b) => n + b.broke, 0), ran < COUNT ? `time budget: ${ran} of ${COUNT}` : '');
  }
  figures.row('in-process unhandled rejections', 1, escaped);
}

function execOne(bin, env, stdin) {
  return new Promise((resolve) => {
    const child = spawn(bin, [], { env: { ...env, SHOAL_RUN_DIR: path.join(tmp, 'run'), SHOAL_STATE_DIR: stateDir }, cwd: tmp, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.stdin.on('error', () => {});
    child.stdin.end(stdin);
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: signal ? `signal ${signal}` : code, stdout, stderr });
    });
  });
}

async function executables() {
  const bin = path.join(root, 'node_modules/.cache', `shoal-torture-configs-bin-${process.pid}`);
  privatePlugins(ALL, bin);
  process.on('exit', () => rmSync(bin, { recursive: true, force: true }));
  const per = Math.max(1, Math.floor(EXEC / PLUGINS.length));
  for (const type of PLUGINS) {
    let broke = 0;
    const cases = Array.from({ length: per }, (_, i) => {
      const verb = VERBS[i % VERBS.length];
      // Environment values cannot hold NUL bytes in a real process: draw again.
      for (;;) {
        const c = mutate(random, { env: baseEnv(verb, 1_000_000 + i), config: baseConfig(type, i) }, NETNS_PATHS);
        if (!Object.values(c.env).some((v) => v.includes('\0'))) return { verb, ...c };
      }
    });
    for (let i = 0; i < cases.length; i += 4) {
      await Promise.all(cases.slice(i, i + 4).map(async (c) => {
        const res = await execOne(path.join(bin, type), c.env, c.stdin);
        const problem = typeof res.code !== 'number' ? `${res.code}` : judge(c.cls, c.verb, res.code, res.stdout, res.stderr);
        if (problem) {
          broke += 1;
          figures.fail(`exec ${type} ${c.verb} ${c.cls}: ${problem}`);
        }
        if (res.code === 0 && c.verb === 'ADD') {
          const del = await execOne(path.join(bin, type), { ...c.env, CNI_COMMAND: 'DEL' }, c.stdin);
          if (del.code !== 0) {
            broke += 1;
            figures.fail(`exec ${type} DEL after a successful ${c.cls} ADD failed: ${del.stdout.slice(0, 200)}`);
          }
        }
      }));
    }
    figures.row(`executable ${type} (mixed classes)`, cases.length, broke);
  }
}

async function main() {
  mkdirSync(stateDir, { recursive: true });
  console.log(`configs: seed ${random.seed}, ${COUNT} per plugin in-process, ${EXEC} through executables, plugins ${PLUGINS.join(',')}`);
  try {
    await inProcess();
    if (EXEC > 0) await executables();
  } finally {
    const links = [...linksWith(`tcb${runTag}`), ...linksWith(`tcv${runTag}`), ...linksWith(`tcm${runTag}`)];
    const rules = [...nftMentions(net), ...nftMentions(`tc${runTag}x`)];
    const records = storeRows(stateDir, `tc${runTag}x`);
    figures.row('leftover links', 1, links.length, links.join(' '));
    figures.row('leftover nft rules/elements', 1, rules.length, rules.slice(0, 3).join(' ; '));
    figures.row('leftover store records (allocations, DNS, ports)', 1, records.length, records.slice(0, 3).join(' ; '));
    for (const l of links) (await import('node:child_process')).spawnSync('ip', ['link', 'del', l]);
    figures.print();
    // The run dir, and the skeletons of Shoal tables the run created (portmap's, masquerade's).
    removeRunObjects(`tc${runTag}x`, [tmp]);
  }
  process.exit(figures.broke ? 1 : 0);
}

await main();
