/**
 * `shoal network` end to end through the built CLI (dist/bin/shoal) and the real plugins
 * (dist/cni): create/ls/inspect/rm/prune, connect/disconnect of a plain netns with the result
 * cache, and bad input (one line, non-zero exit, nothing created). Isolated state, run and CNI
 * config dirs; subnets 10.252-253.x.0/24; every object is removed in afterAll.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeNetworkLeftovers } from '../helpers/cli-networks.js';
import { testRunId } from '../helpers/names.js';
import { addrKey, attachmentKey } from '../../src/ipam/keys.js';
import { IpAddr } from '../../src/addr.js';
import { SqliteStore } from '../../src/store/sqlite.js';

const root = path.resolve(__dirname, '../..');
const SHOAL = path.join(root, 'dist/bin/shoal');
const ID = testRunId();
const NET = `cli7n${ID}`;
const NET2 = `cli7m${ID}`;
const NS = `cli7ns${ID}`;
const third = 1 + Math.floor(Math.random() * 250);
const SUBNET = `10.252.${third}.0/24`;
const SUBNET2 = `10.253.${third}.0/24`;
let dir: string;
let conf: string;

function shoal(...args: string[]) {
  const r = spawnSync(process.execPath, [SHOAL, ...args], {
    encoding: 'utf8',
    timeout: 60_000,
    // SHOAL_CNI_CONF_DIR too: a command that forgets --cni-conf-dir must still not touch /etc/cni/net.d.
    env: { ...process.env, SHOAL_STATE_DIR: path.join(dir, 'state'), SHOAL_RUN_DIR: path.join(dir, 'run'), SHOAL_CNI_CONF_DIR: conf },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function oneLineError(r: { status: number | null; stderr: string }, pattern: RegExp, status?: number) {
  expect(r.status).not.toBe(0);
  if (status !== undefined) expect(r.status).toBe(status);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stderr).toMatch(pattern);
}

function ensureBuilt() {
  const newest = (p: string): number => {
    const st = fs.statSync(p);
    if (!st.isDirectory()) return st.mtimeMs;
    return Math.max(0, ...fs.readdirSync(p).map((n) => newest(path.join(p, n))));
  };
  const sources = Math.max(newest(path.join(root, 'src')), newest(path.join(root, 'cni')));
  if (!fs.existsSync(SHOAL) || fs.statSync(SHOAL).mtimeMs < sources) {
    const b = spawnSync(process.execPath, [path.join(root, 'scripts/build.mjs')], { cwd: root, encoding: 'utf8' });
    if (b.status !== 0) throw new Error(`build failed: ${b.stderr}`);
  }
}

const conflists = () => fs.readdirSync(conf).sort();

beforeAll(() => {
  ensureBuilt();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shoal-cli7-'));
  conf = path.join(dir, 'conf');
  fs.mkdirSync(conf);
  spawnSync('ip', ['netns', 'add', NS]);
}, 120_000);

afterAll(() => {
  if (!dir) return;
  shoal('network', 'rm', '--force', NET, NET2);
  spawnSync('ip', ['netns', 'del', NS]);
  removeNetworkLeftovers([NET, NET2]);
  fs.rmSync(dir, { recursive: true, force: true });
}, 60_000);

describe('shoal network', () => {
  it('every command answers --help with exit 0', () => {
    for (const cmd of [['network'], ['network', 'create'], ['network', 'ls'], ['network', 'inspect'], ['network', 'rm'], ['network', 'connect'], ['network', 'disconnect'], ['network', 'prune'], ['run'], ['ps'], ['stop'], ['logs'], ['gc'], ['port'], ['cni'], ['version'], ['daemon']]) {
      const r = shoal(...cmd, '--help');
      expect(r.status, cmd.join(' ')).toBe(0);
      expect(r.stdout, cmd.join(' ')).toMatch(/Usage: shoal/);
    }
    expect(shoal().status).toBe(2);
    oneLineError(shoal('nosuch'), /unknown command "nosuch"/, 2);
  });

  it('create records the network and writes a conflist podman can use', () => {
    const r = shoal('network', 'create', '--cni-conf-dir', conf, '--subnet', SUBNET, '--add-host', 'db.internal:192.0.2.10', '--dns', '192.0.2.53', '-o', 'mtu=1400', NET);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(NET);
    const list = JSON.parse(fs.readFileSync(path.join(conf, `${NET}.conflist`), 'utf8'));
    expect(list.name).toBe(NET);
    // One plugin, one Node start-up per attachment: ports and DNS run inside shoal-bridge.
    expect(list.plugins.map((p: { type: string }) => p.type)).toEqual(['shoal-bridge']);
    expect(list.plugins[0]).toMatchObject({ mtu: 1400, isolate: true, ipam: { type: 'shoal-ipam', ranges: [[{ subnet: SUBNET }]] } });
    expect(list.plugins[0]).toMatchObject({
      capabilities: { portMappings: true, aliases: true },
      portmap: { snat: true },
      discovery: { hosts: { 'db.internal': ['192.0.2.10'] }, upstreams: ['192.0.2.53'] },
    });

    const ls = shoal('network', 'ls');
    expect(ls.stdout).toMatch(new RegExp(`${NET}\\s+bridge\\s+${SUBNET.replace(/\./g, '\\.')}\\s+0`));
    const json = JSON.parse(shoal('network', 'ls', '--format', 'json').stdout);
    expect(json.find((n: { name: string }) => n.name === NET)).toMatchObject({ driver: 'bridge', subnets: [SUBNET], containers: 0 });
    const [info] = JSON.parse(shoal('network', 'inspect', NET).stdout);
    expect(info).toMatchObject({ name: NET, gateway: `10.252.${third}.1`, options: { mtu: '1400' }, containers: [] });
  });

  it('picks a free subnet when none is given, avoiding other networks; the conflist goes to $SHOAL_CNI_CONF_DIR', () => {
    const r = shoal('network', 'create', NET2);
    expect(r.status, r.stderr).toBe(0);
    const [info] = JSON.parse(shoal('network', 'inspect', NET2).stdout);
    expect(info.subnets[0].subnet).toMatch(/\/24$/);
    expect(info.subnets[0].subnet).not.toBe(SUBNET);
    expect(info.conflist).toBe(path.join(conf, `${NET2}.conflist`));
    expect(conflists()).toContain(`${NET2}.conflist`);
    expect(shoal('network', 'rm', NET2).status).toBe(0);
    expect(conflists()).toEqual([`${NET}.conflist`]);
  });

  it('bad input: one line, non-zero exit, nothing created', () => {
    const before = conflists();
    const lsBefore = shoal('network', 'ls', '-q').stdout;
    oneLineError(shoal('network', 'create', '--cni-conf-dir', conf, '--subnet', `10.252.${third}.128/25`, NET2), new RegExp(`overlaps network "${NET}"`), 1);
    oneLineError(shoal('network', 'create', '--cni-conf-dir', conf, '--subnet', '127.0.0.0/24', NET2), /overlaps host route/, 1);
    oneLineError(shoal('network', 'create', '--cni-conf-dir', conf, '--subnet', 'banana', NET2), /invalid --subnet "banana"/, 1);
    oneLineError(shoal('network', 'create', '--cni-conf-dir', conf, '--driver', 'weave', NET2), /invalid --driver "weave"/, 1);
    // overlay is a cluster driver: without a daemon joined to a cluster, one line saying so.
    oneLineError(shoal('network', 'create', '--cni-conf-dir', conf, '--driver', 'overlay', NET2), /failed to reach the daemon at ".*shoald\.sock": no daemon is running there/, 1);
    oneLineError(shoal('network', 'create', '--cni-conf-dir', conf, '-o', 'colour=blue', NET2), /unknown --opt "colour"/, 1);
    oneLineError(shoal('network', 'create', '--cni-conf-dir', conf, '-o', 'novalue', NET2), /expected KEY=VALUE/, 2);
    oneLineError(shoal('network', 'create', '--cni-conf-dir', conf, '--subnet', SUBNET2, NET), /already exists/, 1);
    oneLineError(shoal('network', 'create', '--cni-conf-dir', conf, 'bad/name'), /invalid network name/, 1);
    oneLineError(shoal('network', 'create', '--cni-conf-dir', conf, '--frobnicate', NET2), /unknown option "--frobnicate"/, 2);
    oneLineError(shoal('network', 'create', '--cni-conf-dir', conf), /missing network name/, 2);
    expect(conflists()).toEqual(before);
    expect(shoal('network', 'ls', '-q').stdout).toBe(lsBefore);
  });

  it('unknown network: one line, non-zero exit', () => {
    for (const cmd of [['inspect'], ['rm'], ['connect'], ['disconnect']]) {
      const extra = cmd[0] === 'connect' || cmd[0] === 'disconnect' ? [NS] : [];
      oneLineError(shoal('network', ...cmd, `nosuch${ID}`, ...extra), /network "nosuch.*" not found|not connected/, 1);
    }
  });

  it('connect runs the chain for a netns, caches the result; rm refuses; disconnect removes it all', () => {
    const r = shoal('network', 'connect', '--alias', 'nsalias', NET, NS);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^eth0 10\\.252\\.${third}\\.\\d+/24`));
    const addr = spawnSync('ip', ['-n', NS, '-4', '-o', 'addr', 'show', 'eth0'], { encoding: 'utf8' }).stdout;
    expect(addr).toContain(`10.252.${third}.`);
    const cache = fs.readdirSync(path.join(dir, 'state', 'cni-results'));
    expect(cache).toHaveLength(1);
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'state', 'cni-results', cache[0]!), 'utf8'))).toMatchObject({ kind: 'cniCacheV1', containerId: NS, ifName: 'eth0', networkName: NET });
    expect(shoal('network', 'connect', '--check', NET, NS).status).toBe(0);

    const [info] = JSON.parse(shoal('network', 'inspect', NET).stdout);
    expect(info.containers).toEqual([expect.objectContaining({ containerId: NS, ifname: 'eth0', name: NS, addresses: [expect.stringMatching(/\/24$/)] })]);
    oneLineError(shoal('network', 'rm', NET), /1 container\(s\) attached/, 1);
    const pr = shoal('network', 'prune');
    expect(pr.status, pr.stderr).toBe(0);
    expect(pr.stdout).not.toContain(NET);

    const d = shoal('network', 'disconnect', NET, NS);
    expect(d.status, d.stderr).toBe(0);
    expect(spawnSync('ip', ['-n', NS, 'link', 'show', 'eth0']).status).not.toBe(0);
    expect(fs.readdirSync(path.join(dir, 'state', 'cni-results'))).toEqual([]);
    expect(JSON.parse(shoal('network', 'inspect', NET).stdout)[0].containers).toEqual([]);
    oneLineError(shoal('network', 'disconnect', NET, NS), /not connected/, 1);
  });

  it('rm --force detaches first; prune removes unused networks', () => {
    expect(shoal('network', 'connect', NET, NS).status).toBe(0);
    const rm = shoal('network', 'rm', '--force', NET);
    expect(rm.status, rm.stderr).toBe(0);
    expect(spawnSync('ip', ['-n', NS, 'link', 'show', 'eth0']).status).not.toBe(0);
    expect(spawnSync('ip', ['link', 'show', `shoal-${NET}`.slice(0, 15)], { stdio: 'ignore' }).status).not.toBe(0);
    expect(conflists()).toEqual([]);
    // The bridge plugin's network-level rules go with the network.
    expect(spawnSync('nft', ['list', 'table', 'inet', 'shoal'], { encoding: 'utf8' }).stdout).not.toContain(`"${NET}"`);
    expect(shoal('network', 'create', '--cni-conf-dir', conf, '--subnet', SUBNET2, NET2).status).toBe(0);
    const p = shoal('network', 'prune');
    expect(p.status, p.stderr).toBe(0);
    expect(p.stdout).toContain(NET2);
    expect(shoal('network', 'ls', '-q').stdout).toBe('');
  });

  it('a corrupt attachment record is reported by ls, inspect, rm and gc, and its attachment still counts (gc keeps its address)', async () => {
    expect(shoal('network', 'create', '--cni-conf-dir', conf, '--subnet', SUBNET2, NET2).status).toBe(0);
    const key = attachmentKey(NET2, 'broken1', 'eth0');
    const held = addrKey(NET2, IpAddr.parse(`10.253.${third}.5`));
    const withStore = async <T>(fn: (s: SqliteStore) => Promise<T>): Promise<T> => {
      const store = new SqliteStore(path.join(dir, 'state', 'shoal.db'));
      try {
        return await fn(store);
      } finally {
        store.close();
      }
    };
    await withStore(async (s) => {
      await s.put(held, JSON.stringify({ containerId: 'broken1', ifname: 'eth0', rangeSet: 0 }));
      await s.put(key, '{"addresses": [');
    });
    try {
      const warning = new RegExp(`warning: network "${NET2}", attachment "broken1/eth0": store record "${key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}" is not valid JSON`);
      const ls = shoal('network', 'ls');
      expect(ls.status, ls.stderr).toBe(0);
      expect(ls.stderr).toMatch(warning);
      expect(ls.stdout).toMatch(new RegExp(`${NET2}\\s+bridge\\s+\\S+\\s+1`));
      const inspect = shoal('network', 'inspect', NET2);
      expect(inspect.stderr).toMatch(warning);
      expect(JSON.parse(inspect.stdout)[0].containers).toEqual([expect.objectContaining({ containerId: 'broken1', ifname: 'eth0', problem: expect.stringContaining(key) })]);
      const rm = shoal('network', 'rm', NET2);
      expect(rm.status).toBe(1);
      expect(rm.stderr).toMatch(warning);
      expect(rm.stderr).toMatch(/1 container\(s\) attached \(broken1\)/);
      const gc = shoal('gc');
      expect(gc.status).toBe(1);
      expect(gc.stderr).toMatch(new RegExp(`shoal gc: network "${NET2}", attachment "broken1/eth0": store record`));
      await withStore(async (s) => {
        expect((await s.get(key))?.value).toBe('{"addresses": [');
        expect(await s.get(held)).toBeDefined();
      });
    } finally {
      await withStore(async (s) => {
        await s.delete(key);
        await s.delete(held);
      });
      shoal('network', 'rm', NET2);
    }
    expect(conflists()).toEqual([]);
  });

  it('a corrupt conflist is refused with its path and the problem, and left as it is', () => {
    expect(shoal('network', 'create', '--cni-conf-dir', conf, '--subnet', SUBNET2, NET2).status).toBe(0);
    const file = path.join(conf, `${NET2}.conflist`);
    fs.writeFileSync(file, '{"cniVersion": "1.0.0", "name": "');
    oneLineError(shoal('network', 'connect', NET2, NS), new RegExp(`failed to load conflist "${file.replace(/\./g, '\\.')}": not valid JSON`), 1);
    expect(fs.readFileSync(file, 'utf8')).toBe('{"cniVersion": "1.0.0", "name": "');
    expect(spawnSync('ip', ['-n', NS, 'link', 'show', 'eth0'], { stdio: 'ignore' }).status).not.toBe(0);
    expect(shoal('network', 'rm', NET2).status).toBe(0);
    expect(conflists()).toEqual([]);
  });
});
