import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CniError, cniCodeOf, toCniErrorJson, unsupportedField } from '../../cni/errors.js';
import { ShoalError, failedTo } from '../../src/errors.js';
import { NetlinkError, NetnsNotFoundError, SyscallError, LinkNotFoundError } from '../../src/kernel/errors.js';
import { notImplementedPlugin } from '../../cni/stub.js';
import { ENV_FOR, netconf, runCni } from '../helpers/cni.js';

describe('error mapping', () => {
  it.each([
    [new CniError(7, 'x'), 7],
    [new NetnsNotFoundError('/var/run/netns/x'), 3],
    [new SyscallError('setns', 11, 'EAGAIN'), 11],
    [new NetlinkError('RTM_NEWLINK', 16, 'EBUSY'), 11],
    [new NetlinkError('RTM_NEWLINK', 22, 'EINVAL', 'VXLAN ID must be lower than 16777216'), 999],
    [new LinkNotFoundError('veth0'), 999],
    [new ShoalError('EINVALIDCONFIG', 'ranges overlap'), 7],
    [new ShoalError('EPORTCONFLICT', 'port 8080/tcp is already published by web'), 100],
    [new ShoalError('ECONTAINERUNKNOWN', 'container c holds no addresses'), 3],
    [Object.assign(new ShoalError('ESTORE', 'locked'), { retryable: true }), 11],
    [Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }), 5],
    [new Error('plain'), 999],
    ['a string', 999],
  ])('%s -> %i', (err, code) => {
    expect(cniCodeOf(err)).toBe(code);
  });

  it('has exactly the spec fields; details carry the cause chain without repeating it', () => {
    const root = new SyscallError('open', 2, 'ENOENT', '/var/run/netns/x');
    const mid = new ShoalError('EX', failedTo('open', '/var/run/netns/x', root), { cause: root });
    const top = new ShoalError('EX', 'failed to attach container', { cause: mid });
    const json = toCniErrorJson(top, '1.0.0');
    expect(Object.keys(json)).toEqual(['cniVersion', 'code', 'msg', 'details']);
    expect(json.details).toBe('failed to open "/var/run/netns/x": open /var/run/netns/x: ENOENT (no such file or directory)');
    expect(JSON.stringify(json)).not.toMatch(/\n\s+at /);
  });

  it('omits details when there is nothing more to say', () => {
    expect(toCniErrorJson(new Error('x'), '0.4.0')).toEqual({ cniVersion: '0.4.0', code: 999, msg: 'x' });
  });

  it('code 2 names the key and the value', () => {
    expect(unsupportedField('hairpinMode', 'sometimes').message).toBe('unsupported field "hairpinMode" = "sometimes"');
  });
});

describe('the not-yet-implemented plugin', () => {
  const plugin = notImplementedPlugin('shoal-vxlan');
  it.each(['ADD', 'CHECK', 'STATUS', 'GC'])('%s is code 50 naming the plugin', async (verb) => {
    const r = await runCni(plugin, ENV_FOR[verb]!, netconf('1.1.0', { prevResult: { cniVersion: '1.1.0' } }));
    expect(r.json).toMatchObject({ code: 50, msg: `shoal-vxlan: ${verb} is not implemented yet` });
  });
  it('DEL succeeds: it never added anything', async () => {
    const r = await runCni(plugin, ENV_FOR.DEL!, netconf('0.3.0'));
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe('');
  });
});

describe('log file', () => {
  it('appends JSON log lines to the configured logFile as well as stderr', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-cni-log-'));
    try {
      const logFile = join(dir, 'sub', 'cni.log');
      const r = await runCni(notImplementedPlugin('shoal-dns'), ENV_FOR.ADD!, netconf('1.0.0', { logFile }));
      const line = JSON.parse((await readFile(logFile, 'utf8')).trim());
      expect(line).toMatchObject({ level: 50, plugin: 'shoal-dns', code: 50 });
      expect(r.stderr).toContain('"code":50');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
