import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { attach, detach } from '../../src/network/attach.js';
import { renderConflist } from '../../src/network/conflist.js';
import { ConflistError, loadConflist } from '../../src/network/manage.js';
import type { NetworkRecord } from '../../src/network/model.js';
import { networkRecord } from '../helpers/network-record.js';

let dir: string;

function record(over: Partial<NetworkRecord> = {}): NetworkRecord {
  return networkRecord({ confFile: path.join(dir, 'n1.conflist'), stateDir: path.join(dir, 'state'), ...over });
}

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shoal-conflist-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('loadConflist', () => {
  it('reads the file when it is there, and re-renders from the record only when it is gone', () => {
    const net = record();
    expect(loadConflist(net)).toEqual(renderConflist(net));
    const edited = { ...renderConflist(net), plugins: [{ type: 'shoal-bridge', bridge: 'edited0' }] };
    fs.writeFileSync(net.confFile, JSON.stringify(edited));
    expect(loadConflist(net)).toEqual(edited);
  });

  it.each([
    ['{"cniVersion": "1.0.0", "name": "n1", "plugins": [', /not valid JSON/],
    ['', /not valid JSON/],
    ['[1, 2]', /not a JSON object/],
    ['{"name": "n1", "plugins": [{"type": "x"}]}', /"cniVersion" is missing/],
    ['{"cniVersion": "1.0.0", "name": "other", "plugins": [{"type": "x"}]}', /"name" is "other", not the network's name "n1"/],
    ['{"cniVersion": "1.0.0", "name": "n1"}', /"plugins" is missing or not a non-empty array/],
    ['{"cniVersion": "1.0.0", "name": "n1", "plugins": []}', /"plugins" is missing or not a non-empty array/],
    ['{"cniVersion": "1.0.0", "name": "n1", "plugins": [{"type": "x"}, {"bridge": "b"}]}', /"plugins\[1\]" is not an object with a "type"/],
  ])('refuses %j with an error naming the file and the problem, and leaves the file alone', (text, problem) => {
    const net = record();
    fs.writeFileSync(net.confFile, text);
    const before = fs.statSync(net.confFile);
    let thrown: unknown;
    try {
      loadConflist(net);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ConflistError);
    expect((thrown as ConflistError).code).toBe('ECONFLIST');
    expect((thrown as Error).message).toContain(`failed to load conflist "${net.confFile}": `);
    expect((thrown as Error).message).toMatch(problem);
    expect(fs.readFileSync(net.confFile, 'utf8')).toBe(text);
    expect(fs.statSync(net.confFile).mtimeMs).toBe(before.mtimeMs);
  });

  it('refuses a conflist it cannot read (a directory in its place)', () => {
    const net = record();
    fs.mkdirSync(net.confFile);
    expect(() => loadConflist(net)).toThrow(/failed to load conflist ".*n1\.conflist": cannot read it: EISDIR/);
  });
});

describe('attach and detach with a corrupt conflist', () => {
  // A fake shoal-bridge that logs its verbs and answers ADD, so the chain runs without root.
  function fakePlugins(): { pluginDir: string; log: string } {
    const pluginDir = path.join(dir, 'bin');
    const log = path.join(dir, 'log');
    fs.mkdirSync(pluginDir);
    fs.writeFileSync(log, '');
    fs.writeFileSync(
      path.join(pluginDir, 'shoal-bridge'),
      `#!/bin/sh\ncat >/dev/null\necho "$CNI_COMMAND" >> "${log}"\n[ "$CNI_COMMAND" = ADD ] && printf '{"cniVersion":"1.0.0","ips":[{"address":"10.250.1.2/24"}]}'\nexit 0\n`,
      { mode: 0o755 },
    );
    return { pluginDir, log };
  }
  const req = { containerId: 'c1', netns: '/run/netns/none', ifname: 'eth0', name: 'web', aliases: [], ports: [] };

  it('ADD is refused before any plugin runs; a cached DEL still runs, an uncached one names the file', async () => {
    const net = record();
    const { pluginDir, log } = fakePlugins();
    const opts = { pluginDir, stateDir: net.stateDir };
    fs.writeFileSync(net.confFile, JSON.stringify(renderConflist(net)));
    await attach(opts, net, req);
    fs.writeFileSync(net.confFile, '{ corrupt');
    await expect(attach(opts, net, { ...req, containerId: 'c2' })).rejects.toThrow(`failed to load conflist "${net.confFile}": not valid JSON`);
    // DEL of an attachment ADD cached needs no conflist: it runs with what ADD ran.
    await detach(opts, net, net.name, req);
    expect(fs.readFileSync(log, 'utf8').trim().split('\n')).toEqual(['ADD', 'DEL']);
    await expect(detach(opts, net, net.name, { ...req, containerId: 'c3' })).rejects.toThrow(ConflistError);
    expect(fs.readFileSync(net.confFile, 'utf8')).toBe('{ corrupt');
  });
});
