#!/usr/bin/env node
// `npm run torture -- crash`: kill -9 of a plugin at random points of ADD and DEL.
// shoal-bridge (with embedded portmap and DNS registration), shoal-macvlan (parent: a veth
// inside the container's namespace, linkInContainer), a conflist chain of shoal-bridge, the
// standalone shoal-portmap and shoal-dns (each given the previous one's result, as libcni does;
// the kill falls anywhere in the chain's life, DEL runs the chain in reverse), all as the built
// executables (dist/cni/<type>, no daemon: the Node plugin in the same PID); and shoal-vxlan on
// an overlay network of a two-node cluster (lib/overlay-nodes.mjs), run inside node 0 two ways:
// `vxlan` the Node plugin itself (the kill lands in the plugin's code), `vxlan-daemon` the
// forwarder served by node 0's daemon (the kill cuts the runtime's side off while the daemon
// works). Each round ADDs a container, killed after a random delay spread over an ADD's life; a
// finished ADD's address must not be held by any other live container of its network; a killed
// ADD is DELeted to completion (as a runtime does). Live containers are DELeted with a random
// kill too, then DEL again to completion. At the end: DEL of all, GC with no valid attachments,
// and then no link, nft rule, allocation, DNS record or published port is left, and for the
// overlay no endpoint in etcd and no FDB or neighbour entry on the other node.
// Knobs: CRASH_COUNT (rounds, default 1000), CRASH_SECONDS (budget, default 1800),
// CRASH_OVERLAY (default 1; 0 leaves out the cluster and the vxlan kinds), TORTURE_SEED.
import { mkdirSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Figures, ip, knob, nftMentions, privatePlugins, removeRunObjects, root, runTag, seeded, sleep, storeRows } from './lib/common.mjs';
import { execPlugin } from './lib/cni-exec.mjs';
import { startOverlay } from './lib/overlay-nodes.mjs';

const COUNT = knob('CRASH_COUNT', 1000);
const SECONDS = knob('CRASH_SECONDS', 1800);
const OVERLAY = knob('CRASH_OVERLAY', 1) > 0;
const SLOTS = 4;
const random = seeded();
const figures = new Figures('crash');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'shoal-torture-crash-'));
const stateDir = path.join(tmp, 'state');
const bin = path.join(root, 'node_modules/.cache', `shoal-torture-crash-bin-${process.pid}`);
const P = `tk${runTag}`;
const ids = `${P}c`;

/**
 * Each kind is a conflist: its plugins' configs for a slot, run link after link, each with the
 * previous link's result as prevResult (bridge and macvlan are lists of one). The vxlan kinds
 * are added once the cluster is up (their config is the conflist node 0's daemon wrote).
 */
const plugins = {
  bridge: (slot) => [
    {
      cniVersion: '1.1.0', name: `${P}b`, type: 'shoal-bridge', bridge: `${P}br`, isGateway: true, ipMasq: true, stateDir,
      capabilities: { portMappings: true, aliases: true },
      runtimeConfig: { portMappings: [{ hostPort: 18500 + slot, containerPort: 80, protocol: 'tcp', hostIP: '127.85.0.1' }], aliases: { [`${P}b`]: [`a${slot}`] } },
      ipam: { type: 'shoal-ipam', subnet: '10.185.10.0/24', stateDir },
      portmap: {},
      discovery: { domainName: 'crash.shoal' },
    },
  ],
  chain: (slot) => [
    { cniVersion: '1.1.0', name: `${P}n`, type: 'shoal-bridge', bridge: `${P}cb`, isGateway: true, ipMasq: true, stateDir, ipam: { type: 'shoal-ipam', subnet: '10.185.12.0/24', stateDir } },
    { cniVersion: '1.1.0', name: `${P}n`, type: 'shoal-portmap', stateDir, capabilities: { portMappings: true }, runtimeConfig: { portMappings: [{ hostPort: 18510 + slot, containerPort: 80, protocol: 'tcp', hostIP: '127.85.0.1' }] } },
    { cniVersion: '1.1.0', name: `${P}n`, type: 'shoal-dns', stateDir, domainName: 'chain.shoal', capabilities: { aliases: true }, runtimeConfig: { aliases: { [`${P}n`]: [`c${slot}`] } } },
  ],
  macvlan: () => [
    {
      cniVersion: '1.1.0', name: `${P}m`, type: 'shoal-macvlan', master: 'tkpar0', linkInContainer: true, mode: 'bridge', stateDir,
      ipam: { type: 'shoal-ipam', subnet: '10.185.11.0/24', stateDir },
    },
  ],
};

/** Where a kind's plugin runs and which executable (default: the host, dist/cni/<type>). */
const placement = {};
/** The overlay's cluster and readers (lib/overlay-nodes.mjs), once started. */
let overlay;

const env = (command, id, slot, kind) => ({
  PATH: process.env.PATH,
  SHOAL_RUN_DIR: path.join(tmp, 'run'),
  SHOAL_STATE_DIR: stateDir,
  ...placement[kind]?.env,
  CNI_COMMAND: command,
  CNI_PATH: bin,
  ...(id ? { CNI_CONTAINERID: id, CNI_NETNS: `/run/netns/${P}s${slot}`, CNI_IFNAME: 'eth0', CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAME=${id}` } : {}),
});

function setup() {
  mkdirSync(stateDir, { recursive: true });
  privatePlugins(['shoal-bridge', 'shoal-macvlan', 'shoal-ipam', 'shoal-portmap', 'shoal-dns', 'shoal-vxlan'], bin);
  for (let s = 0; s < SLOTS; s++) {
    ip(['netns', 'add', `${P}s${s}`]);
    // The macvlan parent: a veth pair inside the container's own namespace, never a host link.
    ip(['link', 'add', 'tkpar0', 'type', 'veth', 'peer', 'name', 'tkpar1'], `${P}s${s}`);
    ip(['link', 'set', 'tkpar0', 'up'], `${P}s${s}`);
    ip(['link', 'set', 'tkpar1', 'up'], `${P}s${s}`);
  }
}

/** The run's namespaces, links and dirs, and the skeletons of Shoal tables it created. */
function cleanup() {
  removeRunObjects(P, [bin, tmp]);
}

const addressOf = (run) => run.json?.ips?.[0]?.address?.split('/')[0];

/**
 * Runs `command` of kind `name` for a container, killed `killAfterMs` into its life (none: to
 * completion): ADD link after link, each with the previous result; DEL in reverse. The kill
 * lands in whichever link is running then. The result is the last link's run, with `killed` and
 * the whole list's `ms`.
 */
async function runVerb(name, command, id, slot, killAfterMs) {
  const links = command === 'DEL' ? plugins[name](slot).reverse() : plugins[name](slot);
  const started = performance.now();
  let prev;
  let run;
  for (const link of links) {
    const left = killAfterMs === undefined ? undefined : Math.max(0, killAfterMs - (performance.now() - started));
    const where = placement[name] ?? {};
    run = await execPlugin(path.join(bin, where.executable ?? link.type), env(command, id, slot, name), prev && command === 'ADD' ? { ...link, prevResult: prev } : link, left, where.netns);
    if (run.killed || run.code !== 0) break;
    prev = run.json;
  }
  return { ...run, ms: performance.now() - started };
}

/** `read()` again until `done` says so (default: nothing left) or 10 s pass; the last reading. */
async function settled(read, done = (left) => left.length === 0) {
  let left = read();
  for (const end = Date.now() + 10_000; !done(left) && Date.now() < end; left = read()) await sleep(200);
  return left;
}

async function main() {
  console.log(`crash: seed ${random.seed}, ${COUNT} rounds, prefix ${P}`);
  setup();
  const stats = {};
  const bump = (k, by = 1) => (stats[k] = (stats[k] ?? 0) + by);
  try {
    if (OVERLAY) {
      overlay = await startOverlay({ prefix: 'tkx', network: `${P}o`, subnet: '10.185.13.0/24' });
      const where = { netns: overlay.node.netns, env: overlay.env };
      for (const [kind, executable] of [['vxlan', 'shoal-node/shoal-vxlan'], ['vxlan-daemon', 'shoal-vxlan']]) {
        plugins[kind] = () => [overlay.conf];
        placement[kind] = { ...where, executable };
      }
    }
    // How long an ADD and a DEL take now, so the kill delays cover their whole life.
    const life = {};
    for (const name of Object.keys(plugins)) {
      const add = await runVerb(name, 'ADD', `${ids}probe${name}`, 0);
      if (add.code !== 0) throw new Error(`probe ADD ${name} failed: ${add.stdout}${add.stderr.slice(0, 500)}`);
      // The leftover readers below must see a live container, or their "0 left" means nothing.
      const seen = placement[name]
        ? { rules: overlay.rulesMentioning(ids).length, rows: overlay.rowsMentioning(`${ids}probe${name}`).length }
        : { rules: nftMentions(ids).length + nftMentions(`${P}${name[0]}/`).length, rows: storeRows(stateDir, `${ids}probe${name}`).length };
      if (seen.rows === 0 || (name !== 'macvlan' && seen.rules === 0)) throw new Error(`the leftover readers do not see the live probe ${name} container: ${JSON.stringify(seen)}`);
      if (placement[name]) {
        // And the other node's and etcd's readers see it once the daemons have acted.
        seen.published = (await settled(() => overlay.etcdKeysMentioning(`${ids}probe${name}`), (left) => left.length > 0)).length;
        seen.remote = (await settled(() => overlay.remoteEntries(), (left) => left.length > 0)).length;
        if (!seen.published || !seen.remote) throw new Error(`the overlay's leftover readers do not see the live probe ${name} container: ${JSON.stringify(seen)}`);
      }
      const del = await runVerb(name, 'DEL', `${ids}probe${name}`, 0);
      if (del.code !== 0) throw new Error(`probe DEL ${name} failed: ${del.stdout}`);
      life[name] = { add: add.ms, del: del.ms };
    }
    console.log(`calibrated: ${Object.entries(life).map(([n, l]) => `${n} ADD ${l.add.toFixed(0)} ms, DEL ${l.del.toFixed(0)} ms`).join('; ')}`);

    /** slot -> { plugin, id, ip } of the live container there. */
    const live = new Map();
    const deadline = Date.now() + SECONDS * 1000;
    const finishDel = async (name, id, slot, why) => {
      const del = await runVerb(name, 'DEL', id, slot);
      if (del.code !== 0) {
        bump('broke');
        figures.fail(`${name} DEL to completion after ${why} failed: ${del.stdout.slice(0, 300)} ${del.stderr.slice(-300)}`);
      }
    };
    let round = 0;
    for (; round < COUNT && Date.now() < deadline; round++) {
      const slot = random.int(SLOTS);
      if (live.has(slot)) {
        // DEL the slot's container, killed at a random point, then to completion.
        const { name, id } = live.get(slot);
        const del = await runVerb(name, 'DEL', id, slot, random.next() * life[name].del * 1.3);
        bump(`${name} DEL`);
        if (del.killed) bump(`${name} DEL killed`);
        else if (del.code !== 0) {
          bump('broke');
          figures.fail(`${name} DEL failed without a kill: ${del.stdout.slice(0, 300)}`);
        }
        await finishDel(name, id, slot, del.killed ? 'a killed DEL' : 'a DEL');
        live.delete(slot);
        continue;
      }
      const kinds = Object.keys(plugins);
      const name = kinds[random.int(kinds.length)];
      const id = `${ids}${round}`;
      const add = await runVerb(name, 'ADD', id, slot, random.next() * life[name].add * 1.3);
      bump(`${name} ADD`);
      if (add.killed) {
        bump(`${name} ADD killed`);
        await finishDel(name, id, slot, 'a killed ADD');
        continue;
      }
      if (add.code !== 0) {
        bump('broke');
        figures.fail(`${name} ADD failed without a kill: ${add.stdout.slice(0, 300)} ${add.stderr.slice(-300)}`);
        await finishDel(name, id, slot, 'a failed ADD');
        continue;
      }
      const address = addressOf(add);
      const network = plugins[name](slot)[0].name;
      const twice = [...live.values()].find((c) => c.ip === address && c.network === network);
      if (twice) {
        bump('duplicates');
        figures.fail(`${address} handed to ${id} while ${twice.id} holds it`);
      }
      live.set(slot, { name, id, ip: address, network });
    }
    for (const [slot, { name, id }] of live) await finishDel(name, id, slot, 'the end of the run');

    // GC with no valid attachments: whatever a killed process left without a DEL goes now (at
    // 1.1.0, which GC needs: the daemons write overlay conflists at 1.0.0 for podman's libcni).
    for (const [kind, config] of Object.entries(plugins).flatMap(([k, links]) => links(0).map((link) => [k, link]))) {
      const where = placement[kind] ?? {};
      const gc = await execPlugin(path.join(bin, where.executable ?? config.type), env('GC', undefined, 0, kind), { ...config, cniVersion: '1.1.0', 'cni.dev/valid-attachments': [] }, undefined, where.netns);
      if (gc.code !== 0) {
        bump('broke');
        figures.fail(`${kind}/${config.type} GC failed: ${gc.stdout.slice(0, 300)}`);
      }
    }
    for (const name of Object.keys(plugins)) {
      figures.row(`${name} ADD, kill -9 at a random point`, stats[`${name} ADD`] ?? 0, 0, `${stats[`${name} ADD killed`] ?? 0} killed`);
      figures.row(`${name} DEL, kill -9 at a random point`, stats[`${name} DEL`] ?? 0, 0, `${stats[`${name} DEL killed`] ?? 0} killed`);
    }
    figures.row('verbs failing without a kill, DELs not completing', round, stats.broke ?? 0);
    figures.row('address handed out twice', round, stats.duplicates ?? 0);

    // What must be gone: bridge ports, container links (but the parent veths), rules, records.
    const ports = [`${P}br`, `${P}cb`].flatMap((br) => JSON.parse(spawnSync('ip', ['-j', 'link', 'show', 'master', br], { encoding: 'utf8' }).stdout || '[]').map((l) => l.ifname));
    const ctrLinks = [];
    for (let s = 0; s < SLOTS; s++) for (const l of JSON.parse(ip(['-j', 'link', 'show'], `${P}s${s}`) || '[]')) if (!['lo', 'tkpar0', 'tkpar1'].includes(l.ifname)) ctrLinks.push(`${P}s${s}:${l.ifname}`);
    const rules = [...nftMentions(`${P}b/`), ...nftMentions(`${P}m/`), ...nftMentions(`${P}n/`), ...nftMentions(ids)];
    const records = storeRows(stateDir, ids);
    figures.row('leftover bridge ports (host veths)', 1, ports.length, ports.join(' '));
    figures.row('leftover container links', 1, ctrLinks.length, ctrLinks.join(' '));
    figures.row('leftover nft rules/elements (masquerade, ports)', 1, rules.length, rules.slice(0, 2).join(' ; '));
    figures.row('leftover store rows (allocations, DNS records, port records)', 1, records.length, records.slice(0, 2).join(' ; '));
    if (overlay) {
      const node = [...overlay.hostLinks(), ...overlay.rulesMentioning(ids), ...overlay.rowsMentioning(ids)];
      figures.row('overlay: leftover on node 0 (macvlans in the host, nft rules, store rows)', 1, node.length, node.slice(0, 2).join(' ; '));
      // The daemons act on store changes asynchronously: the etcd endpoints and node 1's
      // entries are given a few seconds (well within the lease TTL) to follow the DELs.
      const published = await settled(() => overlay.etcdKeysMentioning(ids));
      figures.row('overlay: endpoints left in etcd', 1, published.length, published.slice(0, 2).join(' ; '));
      const remote = await settled(() => overlay.remoteEntries());
      figures.row('overlay: FDB and neighbour entries left on node 1', 1, remote.length, remote.slice(0, 2).join(' ; '));
    }
  } finally {
    // The network's shared objects (bridge, its masquerade chain skeleton) by design outlive
    // DEL; this run owns them, so they go with it.
    await overlay?.stop();
    cleanup();
    figures.print();
  }
  process.exit(figures.broke ? 1 : 0);
}

await main();
