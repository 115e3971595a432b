/**
 * The DNS accept rule against a host firewall whose input policy drops. To test a real
 * `policy drop` without cutting off this machine, a whole "host" lives in a test namespace H:
 * the bridge (reference plugin run inside H), the daemon (run inside H) and the firewall table.
 *
 * What it shows (and README states): Shoal's `inet shoal dns_input` accept does not save DNS from
 * another table's input chain with policy drop (nftables runs every base chain on the hook; a
 * drop anywhere is final). The daemon detects that chain and logs the rule to add there; with
 * that rule added to the foreign chain, DNS works again.
 *
 * And the per-client rate limit (--dns-client-rate, here 200/s): a container flooding the server
 * gets only about the rate answered, the kernel drops the rest in our chain, and another
 * container's queries meanwhile are all answered.
 */
import { spawn, spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { query } from '../helpers/dns.js';
import { clientBurst } from '../../src/daemon/firewall.js';
import { ipQuiet, KernelObjects } from '../helpers/kernel-objects.js';
import { uniqueName } from '../helpers/names.js';
import { digIn, dnsRulesOf, RefNetwork, startDaemon, tempDirs, waitFor, type DaemonProc } from './daemon-helpers.js';

const objs = new KernelObjects('sf');
const dirs = tempDirs('680');
let host: { name: string; path: string };
let ctr: { name: string; path: string };
let ctr2: { name: string; path: string };
let net: RefNetwork;
let daemon: DaemonProc | undefined;
const id = `${uniqueName('ct')}0000`;
const id2 = `${uniqueName('ct')}0001`;
const RATE = 200;

/**
 * Sends `count` A queries for `name` to `server`:53 from one UDP socket inside netns `ns`, `gapMs`
 * apart (0: as fast as it can), and counts the answers that arrive until 1.5 s after the last.
 */
function queriesIn(ns: string, server: string, name: string, count: number, gapMs: number): Promise<{ sent: number; answered: number; sendMs: number }> {
  const script = `
const dgram = require('node:dgram');
const [server, hex, count, gap] = [process.argv[1], process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const base = Buffer.from(hex, 'hex');
const q = (id) => { const b = Buffer.from(base); b.writeUInt16BE(id, 0); return b; };
const s = dgram.createSocket('udp4');
const seen = new Set();
s.on('message', (m) => seen.add(m.readUInt16BE(0)));
let i = 0;
const t0 = Date.now();
const done = () => { const sendMs = Date.now() - t0; setTimeout(() => { console.log(JSON.stringify({ sent: count, answered: seen.size, sendMs })); s.close(); }, 1500); };
const next = () => { if (i >= count) return done(); s.send(q(i++), 53, server, () => (gap ? setTimeout(next, gap) : setImmediate(next))); };
next();`;
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', script, server, query(name).toString('hex'), String(count), String(gapMs)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim()) as { sent: number; answered: number; sendMs: number }) : reject(new Error(`query sender exited ${code}`))));
  });
}

function nftIn(ns: string, script: string): void {
  const r = spawnSync('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: script, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`nft failed: ${r.stderr}`);
}

beforeAll(async () => {
  host = objs.netns();
  ctr = objs.netns();
  ctr2 = objs.netns();
  ipQuiet(['link', 'set', 'lo', 'up'], host.name);
  net = new RefNetwork(uniqueName('nf'), 'br-dns', dirs.state, { domainName: 'fw.shoal' }, host.name);
  const { result } = await net.attach(id, ctr.path);
  const add = await net.dnsAdd(id, ctr.path, result, 'alpha');
  expect(add.code, add.stderr).toBe(0);
  const second = await net.attach(id2, ctr2.path);
  const add2 = await net.dnsAdd(id2, ctr2.path, second.result, 'beta');
  expect(add2.code, add2.stderr).toBe(0);
  daemon = await startDaemon({ state: dirs.state, run: dirs.run, netns: host.name, args: ['--dns-client-rate', String(RATE)] });
  await waitFor('listener', async () => (daemon!.logs.some((l) => l['event'] === 'dns_listener_added') ? true : undefined));
}, 60_000);

afterAll(async () => {
  await daemon?.stop();
  for (const [cid, c] of [[id, ctr], [id2, ctr2]] as const) {
    if (!c) continue;
    await net?.dnsDel(cid, c.path).catch(() => undefined);
    await net?.detach(cid, c.path).catch(() => undefined);
  }
  // Everything else (bridge, tables) lives in H and goes with it.
  objs.cleanup();
  dirs.cleanup();
}, 30_000);

describe('680 DNS and a host firewall with input policy drop', () => {
  it('answers with only Shoal’s table present, and the accept rule is in inet shoal', async () => {
    expect(dnsRulesOf(`dns:${net.name}`, host.name)).toBe(1);
    expect(dnsRulesOf(`dns:${net.name}`, host.name, 'limit')).toBe(1);
    const r = await digIn(ctr.name, net.subnet.gateway, ['alpha.fw.shoal', 'A']);
    expect(r.status).toBe('NOERROR');
  });

  it('a flooding container gets about its rate answered; another container meanwhile gets every answer', async () => {
    const [flood, other] = await Promise.all([
      queriesIn(ctr.name, net.subnet.gateway, 'alpha.fw.shoal', 3000, 0),
      queriesIn(ctr2.name, net.subnet.gateway, 'beta.fw.shoal', 20, 50),
    ]);
    // The bucket holds the burst and refills at RATE/s while the flood is sent (and while its
    // last queries are still in the queue): about burst + RATE x the sending time get through.
    const burst = clientBurst(RATE);
    expect(flood.answered).toBeGreaterThanOrEqual(burst / 2);
    expect(flood.answered).toBeLessThanOrEqual(Math.ceil(burst + RATE * (0.5 + flood.sendMs / 1000)));
    expect(flood.answered).toBeLessThan(flood.sent / 2);
    expect({ sent: other.sent, answered: other.answered }).toEqual({ sent: 20, answered: 20 });
  });

  it('a foreign input chain with policy drop still drops DNS: our accept cannot override it', async () => {
    nftIn(host.name, 'table inet filter {\n chain input {\n  type filter hook input priority 0; policy drop;\n  ct state established,related accept\n  iif lo accept\n }\n}\n');
    const r = await digIn(ctr.name, net.subnet.gateway, ['alpha.fw.shoal', 'A']);
    expect(r.status).toBe('NO_ANSWER');
    expect(dnsRulesOf(`dns:${net.name}`, host.name)).toBe(1);
  });

  it('the daemon detects that chain on reload and logs the rule to add there; with it, DNS works', async () => {
    process.kill(daemon!.pid, 'SIGHUP');
    const warn = await daemon!.waitLog((l) => l['event'] === 'dns_firewall_conflict');
    expect(warn).toMatchObject({ family: 'inet', table: 'filter', chain: 'input' });
    const rule = /nft insert rule (.*)$/.exec(String(warn['msg']))?.[1];
    expect(rule).toContain(`ip daddr ${net.subnet.gateway}`);
    nftIn(host.name, `insert rule ${rule}\n`);
    const r = await digIn(ctr.name, net.subnet.gateway, ['alpha.fw.shoal', 'A']);
    expect(r.status).toBe('NOERROR');
    expect(r.answers).toHaveLength(1);
  });
});
