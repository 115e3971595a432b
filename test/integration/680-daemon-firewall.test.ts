/**
 * The DNS accept rule against a host firewall whose input policy drops. To test a real
 * `policy drop` without cutting off this machine, a whole "host" lives in a test namespace H:
 * the bridge (reference plugin run inside H), the daemon (run inside H) and the firewall table.
 *
 * What it shows (and README states): Shoal's `inet shoal dns_input` accept does not save DNS from
 * another table's input chain with policy drop (nftables runs every base chain on the hook; a
 * drop anywhere is final). The daemon detects that chain and logs the rule to add there; with
 * that rule added to the foreign chain, DNS works again.
 */
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ipQuiet, KernelObjects } from '../helpers/kernel-objects.js';
import { uniqueName } from '../helpers/names.js';
import { digIn, dnsRulesOf, RefNetwork, startDaemon, tempDirs, waitFor, type DaemonProc } from './daemon-helpers.js';

const objs = new KernelObjects('sf');
const dirs = tempDirs('680');
let host: { name: string; path: string };
let ctr: { name: string; path: string };
let net: RefNetwork;
let daemon: DaemonProc | undefined;
const id = `${uniqueName('ct')}0000`;

function nftIn(ns: string, script: string): void {
  const r = spawnSync('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: script, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`nft failed: ${r.stderr}`);
}

beforeAll(async () => {
  host = objs.netns();
  ctr = objs.netns();
  ipQuiet(['link', 'set', 'lo', 'up'], host.name);
  net = new RefNetwork(uniqueName('nf'), 'br-dns', dirs.state, { domainName: 'fw.shoal' }, host.name);
  const { result } = await net.attach(id, ctr.path);
  const add = await net.dnsAdd(id, ctr.path, result, 'alpha');
  expect(add.code, add.stderr).toBe(0);
  daemon = await startDaemon({ state: dirs.state, run: dirs.run, netns: host.name });
  await waitFor('listener', async () => (daemon!.logs.some((l) => l['event'] === 'dns_listener_added') ? true : undefined));
}, 60_000);

afterAll(async () => {
  await daemon?.stop();
  await net?.dnsDel(id, ctr.path).catch(() => undefined);
  await net?.detach(id, ctr.path).catch(() => undefined);
  // Everything else (bridge, tables) lives in H and goes with it.
  objs.cleanup();
  dirs.cleanup();
}, 30_000);

describe('680 DNS and a host firewall with input policy drop', () => {
  it('answers with only Shoal’s table present, and the accept rule is in inet shoal', async () => {
    expect(dnsRulesOf(`dns:${net.name}`, host.name)).toBe(1);
    const r = await digIn(ctr.name, net.subnet.gateway, ['alpha.fw.shoal', 'A']);
    expect(r.status).toBe('NOERROR');
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
