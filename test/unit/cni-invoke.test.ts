import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { delegateAdd, delegateCheck, delegateDel, delegateGc, delegateStatus, findInPath, ipamAdd, withRollback } from '../../cni/invoke.js';
import type { CniPlugin } from '../../cni/skel.js';
import { CniError } from '../../cni/errors.js';
import { ENV_FOR, netconf, runCni } from '../helpers/cni.js';

let dir: string;
let emptyDir: string;
let logPath: string;

/**
 * A fake IPAM plugin: records each call's CNI_COMMAND, container ID, args and stdin in a log,
 * writes to stderr, and answers ADD with a 0.4.0 result, or fails when the config says so.
 */
const FAKE_IPAM = (log: string) => `#!/bin/sh
stdin=$(cat)
printf '%s|%s|%s|%s\\n' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_ARGS" "$stdin" >> '${log}'
echo "fake-ipam: $CNI_COMMAND" >&2
case "$stdin" in
  *fail-$CNI_COMMAND*)
    echo '{"cniVersion":"0.4.0","code":11,"msg":"pool locked","details":"try later"}'
    exit 1;;
  *crash-$CNI_COMMAND*)
    echo 'panic: something' ; exit 2;;
esac
if [ "$CNI_COMMAND" = ADD ]; then
  echo '{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.9.0.7/24","gateway":"10.9.0.1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{"nameservers":["10.9.0.1"]}}'
fi
`;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shoal-cni-invoke-'));
  emptyDir = await mkdtemp(join(tmpdir(), 'shoal-cni-empty-'));
  logPath = join(dir, 'calls.log');
  await writeFile(join(dir, 'fake-ipam'), FAKE_IPAM(logPath));
  await chmod(join(dir, 'fake-ipam'), 0o755);
  await writeFile(join(dir, 'not-executable'), '#!/bin/sh\n');
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await rm(emptyDir, { recursive: true, force: true });
});

async function calls(): Promise<string[][]> {
  const text = await readFile(logPath, 'utf8').catch(() => '');
  await rm(logPath, { force: true });
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => line.split('|'));
}

function envFor(verb: string) {
  return { ...ENV_FOR[verb], PATH: process.env.PATH, CNI_PATH: `${emptyDir}:${dir}`, CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=web' };
}

/** A main plugin that delegates every verb to ipam.type, and fails after IPAM when asked. */
const delegating: CniPlugin = {
  name: 'shoal-test',
  add: (req) =>
    withRollback(async (undo) => {
      const result = await ipamAdd(req, undo);
      undo.push('remove veth', () => Promise.reject(new Error('veth already gone')));
      if ((req.config as Record<string, unknown>).failAfterIpam) throw new CniError(999, 'bridge step failed');
      return { ...result, interfaces: [{ name: req.ifname, sandbox: req.netns }], ips: result.ips?.map((ip) => ({ ...ip, interface: 0 })) };
    }, req.log),
  del: (req) => delegateDel(req),
  check: (req) => delegateCheck(req),
  status: (req) => delegateStatus(req),
  gc: (req) => delegateGc(req),
};

const conf = (version: string, extra: Record<string, unknown> = {}) => netconf(version, { ipam: { type: 'fake-ipam', subnet: '10.9.0.0/24' }, ...extra });

describe('delegation to the IPAM plugin', () => {
  it('ADD execs ipam.type from CNI_PATH with the same env and the full config, and converts its result', async () => {
    const stdin = JSON.stringify(conf('1.0.0'));
    const r = await runCni(delegating, envFor('ADD'), stdin);
    expect(r.exitCode).toBe(0);
    expect(r.json).toEqual({
      cniVersion: '1.0.0',
      interfaces: [{ name: 'eth0', sandbox: '/var/run/netns/t' }],
      ips: [{ interface: 0, address: '10.9.0.7/24', gateway: '10.9.0.1' }],
      routes: [{ dst: '0.0.0.0/0' }],
      dns: { nameservers: ['10.9.0.1'] },
    });
    expect(await calls()).toEqual([['ADD', 'c0ffee', 'IgnoreUnknown=1;K8S_POD_NAME=web', stdin]]);
  });

  it("passes the delegate's stderr through", async () => {
    const r = await runCni(delegating, envFor('ADD'), conf('1.0.0'));
    expect(r.stderr).toContain('fake-ipam: ADD');
    await calls();
  });

  for (const verb of ['DEL', 'CHECK', 'STATUS', 'GC'] as const) {
    it(`${verb} is delegated with CNI_COMMAND=${verb}`, async () => {
      const prevResult = { cniVersion: '1.1.0', ips: [{ address: '10.9.0.7/24' }] };
      const r = await runCni(delegating, envFor(verb), conf('1.1.0', { prevResult }));
      expect(r.exitCode).toBe(0);
      expect(r.stdout).toBe('');
      expect((await calls()).map((c) => c[0])).toEqual([verb]);
    });
  }

  it("re-raises the delegate's error with its code and message", async () => {
    const r = await runCni(delegating, envFor('ADD'), conf('0.4.0', { mode: 'fail-ADD' }));
    expect(r.json).toEqual({ cniVersion: '0.4.0', code: 11, msg: 'pool locked', details: 'try later' });
    await calls();
  });

  it('reports a delegate that crashes without an error JSON', async () => {
    const r = await runCni(delegating, envFor('DEL'), conf('1.0.0', { mode: 'crash-DEL' }));
    expect(r.json?.code).toBe(999);
    expect(r.json?.msg).toBe('IPAM plugin "fake-ipam" DEL failed with exit code 2: panic: something');
    await calls();
  });

  it('rolls back: DELs the IPAM allocation when a later ADD step fails, and returns the original error', async () => {
    const r = await runCni(delegating, envFor('ADD'), conf('1.0.0', { failAfterIpam: true }));
    expect(r.json).toMatchObject({ code: 999, msg: 'bridge step failed' });
    // the failed undo step is reported, and did not stop the IPAM release
    expect(r.json?.details).toContain('remove veth: veth already gone');
    expect((await calls()).map((c) => c[0])).toEqual(['ADD', 'DEL']);
  });

  it('does not DEL the IPAM when the IPAM ADD itself failed', async () => {
    await runCni(delegating, envFor('ADD'), conf('1.0.0', { mode: 'fail-ADD' }));
    expect((await calls()).map((c) => c[0])).toEqual(['ADD']);
  });

  it('a type missing from CNI_PATH is code 5 naming the type and the searched dirs', async () => {
    const r = await runCni(delegating, envFor('ADD'), netconf('1.0.0', { ipam: { type: 'host-local' } }));
    expect(r.json).toMatchObject({ code: 5, msg: `failed to find plugin "host-local" in CNI_PATH (searched ${emptyDir}, ${dir})` });
  });

  it('an empty CNI_PATH is code 4 naming CNI_PATH', async () => {
    const env = { ...envFor('ADD'), CNI_PATH: undefined };
    const r = await runCni(delegating, env, conf('1.0.0'));
    expect(r.json).toMatchObject({ code: 4, msg: expect.stringContaining('CNI_PATH') });
  });

  it('a config without ipam.type is code 7', async () => {
    const r = await runCni(delegating, envFor('ADD'), netconf('1.0.0'));
    expect(r.json).toMatchObject({ code: 7, msg: expect.stringContaining('"ipam.type"') });
  });

  it('findInPath skips files that are not executable', async () => {
    await expect(findInPath('not-executable', [dir])).rejects.toMatchObject({ cniCode: 5 });
    await expect(findInPath('fake-ipam', [emptyDir, dir])).resolves.toBe(join(dir, 'fake-ipam'));
  });

  it('delegateAdd can be given another type and stdin', async () => {
    let seen: unknown;
    const plugin: CniPlugin = {
      add: async (req) => {
        const stdin = JSON.stringify({ ...req.config, ipam: { type: 'fake-ipam', custom: 1 } });
        const result = await delegateAdd(req, { type: 'fake-ipam', stdin });
        seen = (await calls())[0]?.[3];
        return result;
      },
    };
    const r = await runCni(plugin, envFor('ADD'), netconf('1.1.0'));
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(seen as string).ipam.custom).toBe(1);
  });
});

describe('withRollback', () => {
  it('runs undo steps newest first, only on failure', async () => {
    const order: string[] = [];
    await expect(
      withRollback(async (undo) => {
        undo.push('a', () => order.push('a'));
        undo.push('b', () => order.push('b'));
        throw new Error('step 3 failed');
      }),
    ).rejects.toThrow('step 3 failed');
    expect(order).toEqual(['b', 'a']);
    const ok = await withRollback(async (undo) => {
      undo.push('never', () => order.push('never'));
      return 42;
    });
    expect(ok).toBe(42);
    expect(order).toEqual(['b', 'a']);
  });
});
