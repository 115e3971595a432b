import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { addNetworkList, checkNetworkList, delCached, gcNetworkList, ChainError } from '../../src/network/chain.js';
import { readCached } from '../../src/network/cache.js';
import type { Conflist } from '../../src/network/conflist.js';

// Fake plugins: shell scripts that log "<type> <verb> <stdin>" and answer like a CNI plugin,
// so the runner's protocol (order, prevResult threading, env, cache) is tested without root.
let dir: string;
let log: string;

function plugin(type: string, body = ''): void {
  const file = path.join(dir, 'bin', type);
  fs.writeFileSync(
    file,
    `#!/bin/sh
conf=$(cat)
printf '%s %s %s %s\\n' "${type}" "$CNI_COMMAND" "$CNI_ARGS" "$conf" >> "${log}"
${body}
case "$CNI_COMMAND" in
  ADD) printf '{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.2/24"}],"by":"${type}"}' ;;
esac
`,
    { mode: 0o755 },
  );
}

function calls(): Array<{ type: string; verb: string; args: string; conf: Record<string, unknown> }> {
  return fs
    .readFileSync(log, 'utf8')
    .trim()
    .split('\n')
    .map((l) => {
      const [type, verb, args, ...rest] = l.split(' ');
      return { type: type!, verb: verb!, args: args!, conf: JSON.parse(rest.join(' ')) as Record<string, unknown> };
    });
}

const list: Conflist = {
  cniVersion: '1.0.0',
  name: 'net1',
  plugins: [{ type: 'main', ipam: { type: 'x' } }, { type: 'ports', capabilities: { portMappings: true } }, { type: 'names', capabilities: { aliases: true } }],
};
const att = { containerId: 'c1', netns: '/run/netns/x', ifname: 'eth0', args: [['IgnoreUnknown', '1'], ['K8S_POD_NAME', 'web']] as Array<[string, string]>, capabilityArgs: { portMappings: [{ hostPort: 1 }], aliases: { net1: ['w'] } } };

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shoal-chain-'));
  fs.mkdirSync(path.join(dir, 'bin'));
  log = path.join(dir, 'log');
  fs.writeFileSync(log, '');
  for (const t of ['main', 'ports', 'names']) plugin(t);
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const opts = () => ({ pluginDir: path.join(dir, 'bin'), stateDir: path.join(dir, 'state') });

describe('chain runner', () => {
  it('ADD runs in order, threads prevResult, and caches the final result', async () => {
    const result = await addNetworkList(opts(), list, att);
    expect(result['by']).toBe('names');
    const c = calls();
    expect(c.map((x) => `${x.type} ${x.verb}`)).toEqual(['main ADD', 'ports ADD', 'names ADD']);
    expect(c[0]!.args).toBe('IgnoreUnknown=1;K8S_POD_NAME=web');
    expect(c[0]!.conf['prevResult']).toBeUndefined();
    expect((c[1]!.conf['prevResult'] as Record<string, unknown>)['by']).toBe('main');
    expect(c[1]!.conf['runtimeConfig']).toEqual({ portMappings: [{ hostPort: 1 }] });
    expect(c[2]!.conf['runtimeConfig']).toEqual({ aliases: { net1: ['w'] } });
    expect(c[2]!.conf).toMatchObject({ name: 'net1', cniVersion: '1.0.0' });
    expect(readCached(opts().stateDir, 'net1', 'c1', 'eth0')?.result['by']).toBe('names');
  });

  it('DEL runs in reverse with the cached result, then drops the cache; CHECK uses it too', async () => {
    await addNetworkList(opts(), list, att);
    await checkNetworkList(opts(), 'net1', 'c1', 'eth0');
    fs.writeFileSync(log, '');
    await delCached(opts(), 'net1', 'c1', 'eth0');
    const c = calls();
    expect(c.map((x) => `${x.type} ${x.verb}`)).toEqual(['names DEL', 'ports DEL', 'main DEL']);
    for (const x of c) expect((x.conf['prevResult'] as Record<string, unknown>)['by']).toBe('names');
    expect(readCached(opts().stateDir, 'net1', 'c1', 'eth0')).toBeUndefined();
    await expect(checkNetworkList(opts(), 'net1', 'c1', 'eth0')).rejects.toThrow(/no cached result/);
  });

  it('a failed ADD reports the plugin error and DELs the whole list; nothing is cached', async () => {
    plugin('ports', `[ "$CNI_COMMAND" = ADD ] && { printf '{"cniVersion":"1.0.0","code":11,"msg":"port 8080/tcp is already published by other"}'; exit 1; }`);
    await expect(addNetworkList(opts(), list, att)).rejects.toThrow('failed to run ports ADD for "net1": port 8080/tcp is already published by other (CNI error 11)');
    expect(calls().map((x) => `${x.type} ${x.verb}`)).toEqual(['main ADD', 'ports ADD', 'names DEL', 'ports DEL', 'main DEL']);
    expect(readCached(opts().stateDir, 'net1', 'c1', 'eth0')).toBeUndefined();
  });

  it('a missing plugin is named', async () => {
    fs.rmSync(path.join(dir, 'bin', 'names'));
    await expect(addNetworkList(opts(), list, att)).rejects.toBeInstanceOf(ChainError);
  });

  it('GC goes to every plugin as 1.1.0 with the valid attachments', async () => {
    await gcNetworkList(opts(), list, [{ containerID: 'c1', ifname: 'eth0' }]);
    const c = calls();
    expect(c.map((x) => `${x.type} ${x.verb}`)).toEqual(['main GC', 'ports GC', 'names GC']);
    expect(c[0]!.conf).toMatchObject({ cniVersion: '1.1.0', 'cni.dev/valid-attachments': [{ containerID: 'c1', ifname: 'eth0' }] });
  });
});
