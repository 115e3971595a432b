import { describe, expect, it } from 'vitest';
import type { CniPlugin, CniRequest } from '../../cni/skel.js';
import { SUPPORTED_VERSIONS } from '../../cni/version.js';
import { CniError } from '../../cni/errors.js';
import type { CniResult } from '../../cni/types.js';
import { ENV_FOR, netconf, runCni } from '../helpers/cni.js';

const RESULT: CniResult = {
  interfaces: [
    { name: 'shoal0', mac: '02:00:00:00:00:01' },
    { name: 'eth0', mac: '02:00:00:00:00:02', sandbox: '/var/run/netns/t', mtu: 1400, socketPath: '/run/x.sock', pciID: '0000:00:01.0' },
  ],
  ips: [
    { address: '10.1.0.5/24', gateway: '10.1.0.1', interface: 1 },
    { address: 'fd00::5/64', gateway: 'fd00::1', interface: 1 },
  ],
  routes: [{ dst: '0.0.0.0/0', gw: '10.1.0.1', mtu: 1400, advmss: 1360, priority: 10, table: 100, scope: 0 }],
  dns: { nameservers: ['10.1.0.1'], search: ['shoal.internal'] },
};

/** A plugin that records what it was called with. */
function recordingPlugin(calls: CniRequest[] = []): CniPlugin {
  const record = async (req: CniRequest) => void calls.push(req);
  return {
    name: 'shoal-test',
    cniArgs: ['K8S_POD_NAME', 'IP'],
    add: async (req) => (calls.push(req), RESULT),
    del: record,
    check: record,
    status: record,
    gc: record,
  };
}

const PREV_RESULT_1X = { cniVersion: '1.0.0', ips: [{ address: '10.1.0.5/24', gateway: '10.1.0.1' }] };
const PREV_RESULT_0X = { cniVersion: '0.4.0', ips: [{ version: '4', address: '10.1.0.5/24', gateway: '10.1.0.1' }] };
const prevFor = (v: string) => (v.startsWith('0.') ? PREV_RESULT_0X : PREV_RESULT_1X);

const MINIMUM: Record<string, string> = { CHECK: '0.4.0', STATUS: '1.1.0', GC: '1.1.0' };
const older = (a: string, b: string) => a.localeCompare(b, undefined, { numeric: true }) < 0;

describe('skel: every verb x every version', () => {
  for (const version of SUPPORTED_VERSIONS) {
    describe(`cniVersion ${version}`, () => {
      it('ADD prints the result in the config version', async () => {
        const r = await runCni(recordingPlugin(), ENV_FOR.ADD!, netconf(version));
        expect(r.exitCode).toBe(0);
        expect(r.json?.cniVersion).toBe(version);
        const ips = r.json?.ips as Record<string, unknown>[];
        expect(ips.map((ip) => ip.address)).toEqual(['10.1.0.5/24', 'fd00::5/64']);
        if (version.startsWith('0.')) expect(ips.map((ip) => ip.version)).toEqual(['4', '6']);
        else expect(ips.every((ip) => !('version' in ip))).toBe(true);
        const eth0 = (r.json?.interfaces as Record<string, unknown>[])[1]!;
        const route = (r.json?.routes as Record<string, unknown>[])[0]!;
        if (version === '1.1.0') {
          expect(eth0).toMatchObject({ mtu: 1400, socketPath: '/run/x.sock', pciID: '0000:00:01.0' });
          expect(route).toMatchObject({ mtu: 1400, advmss: 1360, priority: 10, table: 100, scope: 0 });
        } else {
          expect(Object.keys(eth0).sort()).toEqual(['mac', 'name', 'sandbox']);
          expect(Object.keys(route).sort()).toEqual(['dst', 'gw']);
        }
        expect(r.json?.dns).toEqual({ nameservers: ['10.1.0.1'], search: ['shoal.internal'] });
      });

      for (const verb of ['DEL', 'CHECK', 'STATUS', 'GC'] as const) {
        const minimum = MINIMUM[verb];
        if (minimum && older(version, minimum)) {
          it(`${verb} is refused with code 1 (needs ${minimum})`, async () => {
            const calls: CniRequest[] = [];
            const r = await runCni(recordingPlugin(calls), ENV_FOR[verb]!, netconf(version, { prevResult: prevFor(version) }));
            expect(r.exitCode).toBe(1);
            expect(r.json).toMatchObject({ cniVersion: version, code: 1 });
            expect(r.json?.msg).toContain(minimum);
            expect(calls).toHaveLength(0);
          });
        } else {
          it(`${verb} succeeds with nothing on stdout`, async () => {
            const calls: CniRequest[] = [];
            const r = await runCni(recordingPlugin(calls), ENV_FOR[verb]!, netconf(version, { prevResult: prevFor(version) }));
            expect(r.stdout).toBe('');
            expect(r.exitCode).toBe(0);
            expect(calls).toHaveLength(1);
            expect(calls[0]!.command).toBe(verb);
            expect(calls[0]!.cniVersion).toBe(version);
            // prevResult arrives converted to the internal shape, whatever version it came in.
            expect(calls[0]!.prevResult).toEqual({ ips: [{ address: '10.1.0.5/24', gateway: '10.1.0.1' }] });
          });
        }
      }

      it('VERSION answers in the requested version', async () => {
        const r = await runCni(recordingPlugin(), ENV_FOR.VERSION!, { cniVersion: version });
        expect(r.exitCode).toBe(0);
        expect(r.json).toEqual({ cniVersion: version, supportedVersions: [...SUPPORTED_VERSIONS] });
      });

      it('errors carry the config version', async () => {
        const failing: CniPlugin = { add: async () => Promise.reject(new CniError(11, 'busy, retry')) };
        const r = await runCni(failing, ENV_FOR.ADD!, netconf(version));
        expect(r.json).toEqual({ cniVersion: version, code: 11, msg: 'busy, retry' });
      });
    });
  }
});

describe('skel: VERSION', () => {
  it('accepts empty stdin and answers in the newest version', async () => {
    const r = await runCni({}, { CNI_COMMAND: 'VERSION' }, '');
    expect(r.json).toEqual({ cniVersion: '1.1.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
  });
  it('answers in the newest version when asked in one it does not speak', async () => {
    const r = await runCni({}, { CNI_COMMAND: 'VERSION' }, { cniVersion: '9.9.9' });
    expect(r.json?.cniVersion).toBe('1.1.0');
  });
  it('needs no other variable', async () => {
    const r = await runCni({}, { CNI_COMMAND: 'VERSION' }, '');
    expect(r.exitCode).toBe(0);
  });
  it('rejects undecodable stdin with code 6', async () => {
    const r = await runCni({}, { CNI_COMMAND: 'VERSION' }, '{"cniVersion":');
    expect(r.json).toMatchObject({ code: 6 });
  });
});

describe('skel: environment', () => {
  const cases: [string, string, string[]][] = [
    ['ADD', 'CNI_CONTAINERID', ['CNI_CONTAINERID']],
    ['ADD', 'CNI_NETNS', ['CNI_NETNS']],
    ['ADD', 'CNI_IFNAME', ['CNI_IFNAME']],
    ['CHECK', 'CNI_NETNS', ['CNI_NETNS']],
    ['DEL', 'CNI_CONTAINERID', ['CNI_CONTAINERID']],
    ['DEL', 'CNI_IFNAME', ['CNI_IFNAME']],
    ['GC', 'CNI_PATH', ['CNI_PATH']],
  ];
  for (const [verb, variable] of cases) {
    it(`${verb} without ${variable} is code 4 naming it`, async () => {
      const env = { ...ENV_FOR[verb], [variable]: undefined };
      const r = await runCni(recordingPlugin(), env, netconf('1.1.0', { prevResult: PREV_RESULT_1X }));
      expect(r.exitCode).toBe(1);
      expect(r.json?.code).toBe(4);
      expect(r.json?.msg).toContain(variable);
    });
  }

  it('names every missing variable at once', async () => {
    const r = await runCni(recordingPlugin(), { CNI_COMMAND: 'ADD' }, netconf('1.0.0'));
    expect(r.json?.msg).toBe('required environment variables missing: CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME');
  });

  it('missing CNI_COMMAND is code 4 naming it, and prints the about text on stderr', async () => {
    const r = await runCni({ about: 'Shoal test plugin' }, {}, '');
    expect(r.json).toMatchObject({ code: 4, msg: expect.stringContaining('CNI_COMMAND') });
    expect(r.stderr).toContain('Shoal test plugin');
  });

  it('an unknown CNI_COMMAND is code 4', async () => {
    const r = await runCni({}, { CNI_COMMAND: 'FROB' }, '{}');
    expect(r.json).toMatchObject({ code: 4, msg: expect.stringContaining('"FROB"') });
  });

  it('DEL tolerates a missing CNI_NETNS and CNI_PATH', async () => {
    const calls: CniRequest[] = [];
    const env = { CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'c1', CNI_IFNAME: 'eth0' };
    const r = await runCni(recordingPlugin(calls), env, netconf('0.3.1'));
    expect(r.exitCode).toBe(0);
    expect(calls[0]!.netns).toBe('');
    expect(calls[0]!.path).toEqual([]);
  });

  it('STATUS needs only CNI_COMMAND', async () => {
    const r = await runCni(recordingPlugin(), { CNI_COMMAND: 'STATUS' }, netconf('1.1.0'));
    expect(r.exitCode).toBe(0);
  });

  it('splits CNI_PATH on ":"', async () => {
    const calls: CniRequest[] = [];
    await runCni(recordingPlugin(calls), { ...ENV_FOR.ADD, CNI_PATH: '/a::/b/c' }, netconf('1.0.0'));
    expect(calls[0]!.path).toEqual(['/a', '/b/c']);
  });

  for (const bad of ['-abc', 'a b', 'a/b', 'ä1', '.x']) {
    it(`rejects container ID ${JSON.stringify(bad)} with code 4 naming CNI_CONTAINERID`, async () => {
      const r = await runCni(recordingPlugin(), { ...ENV_FOR.ADD, CNI_CONTAINERID: bad }, netconf('1.0.0'));
      expect(r.json).toMatchObject({ code: 4, msg: expect.stringContaining('CNI_CONTAINERID') });
    });
  }
  for (const good of ['a', 'A1_b.c-d', '0123456789abcdef0123456789abcdef']) {
    it(`accepts container ID ${JSON.stringify(good)}`, async () => {
      const r = await runCni(recordingPlugin(), { ...ENV_FOR.ADD, CNI_CONTAINERID: good }, netconf('1.0.0'));
      expect(r.exitCode).toBe(0);
    });
  }
  for (const bad of ['.', '..', 'a/b', 'a:b', 'a b', 'tab\there', 'x'.repeat(16)]) {
    it(`rejects interface name ${JSON.stringify(bad)} with code 4 naming CNI_IFNAME`, async () => {
      const r = await runCni(recordingPlugin(), { ...ENV_FOR.DEL, CNI_IFNAME: bad }, netconf('1.0.0'));
      expect(r.json).toMatchObject({ code: 4, msg: expect.stringContaining('CNI_IFNAME') });
    });
  }
  it('accepts a 15-character interface name', async () => {
    const r = await runCni(recordingPlugin(), { ...ENV_FOR.ADD, CNI_IFNAME: 'x'.repeat(15) }, netconf('1.0.0'));
    expect(r.exitCode).toBe(0);
  });
});

describe('skel: CNI_ARGS', () => {
  const add = async (args: string) => {
    const calls: CniRequest[] = [];
    const r = await runCni(recordingPlugin(calls), { ...ENV_FOR.ADD, CNI_ARGS: args }, netconf('0.4.0'));
    return { ...r, args: calls[0]?.args };
  };
  it('parses the keys the plugin declared', async () => {
    expect((await add('K8S_POD_NAME=web-1;IP=10.1.0.9')).args).toEqual({ K8S_POD_NAME: 'web-1', IP: '10.1.0.9' });
  });
  it('keeps "=" inside a value', async () => {
    expect((await add('K8S_POD_NAME=a=b')).args).toEqual({ K8S_POD_NAME: 'a=b' });
  });
  it('an unknown key is code 2 naming it', async () => {
    const r = await add('K8S_POD_NAME=web;FOO=bar');
    expect(r.json).toMatchObject({ code: 2, msg: expect.stringContaining('FOO=bar') });
  });
  for (const flag of ['1', 'true', 'TRUE', 'True']) {
    it(`IgnoreUnknown=${flag} drops unknown keys (podman's form)`, async () => {
      const r = await add(`IgnoreUnknown=${flag};K8S_POD_NAME=web;FOO=bar`);
      expect(r.exitCode).toBe(0);
      expect(r.args).toEqual({ K8S_POD_NAME: 'web' });
    });
  }
  it('IgnoreUnknown=0 keeps unknown keys an error', async () => {
    expect((await add('IgnoreUnknown=0;FOO=bar')).json?.code).toBe(2);
  });
  it('IgnoreUnknown must be a boolean', async () => {
    expect((await add('IgnoreUnknown=maybe')).json).toMatchObject({ code: 4, msg: expect.stringContaining('CNI_ARGS') });
  });
  it('a pair without "=" is code 4 naming CNI_ARGS', async () => {
    expect((await add('K8S_POD_NAME')).json).toMatchObject({ code: 4, msg: expect.stringContaining('CNI_ARGS') });
  });
  it('empty CNI_ARGS and trailing ";" are fine', async () => {
    expect((await add('')).args).toEqual({});
    expect((await add('IP=1.2.3.4;')).args).toEqual({ IP: '1.2.3.4' });
  });
});

describe('skel: stdin and config', () => {
  it('bad JSON is code 6', async () => {
    const r = await runCni(recordingPlugin(), ENV_FOR.ADD!, '{"cniVersion": "1.0.0", ');
    expect(r.exitCode).toBe(1);
    expect(r.json).toMatchObject({ code: 6, cniVersion: '1.1.0' });
  });
  it('empty stdin is code 6', async () => {
    expect((await runCni(recordingPlugin(), ENV_FOR.DEL!, '')).json).toMatchObject({ code: 6, msg: expect.stringContaining('empty') });
  });
  it('a JSON non-object is code 6', async () => {
    expect((await runCni(recordingPlugin(), ENV_FOR.DEL!, '[1,2]')).json?.code).toBe(6);
  });
  it('a config nested 100,000 deep is code 6, not a stack overflow (code 999) in the schema checks', async () => {
    // Found by `npm run torture -- configs`: shoal-ipam's schema recursed into `ranges`.
    const { plugin } = await import('../../cni/plugins/shoal-ipam.js');
    const n = 100_000;
    const stdin = `{"cniVersion":"1.1.0","name":"x","type":"shoal-ipam","ipam":{"type":"shoal-ipam","subnet":"10.185.250.0/24","stateDir":"/nonexistent/shoal","ranges":${'['.repeat(n)}1${']'.repeat(n)}}}`;
    const r = await runCni(plugin, ENV_FOR.ADD!, stdin);
    expect(r.json).toMatchObject({ code: 6, msg: expect.stringContaining('nested deeper than 64 levels') });
  });
  it('a config nested 64 deep still reaches the plugin', async () => {
    const calls: CniRequest[] = [];
    const deep = JSON.parse(`${'['.repeat(62)}1${']'.repeat(62)}`) as unknown;
    const r = await runCni(recordingPlugin(calls), ENV_FOR.DEL!, netconf('1.0.0', { deep }));
    expect(r.exitCode).toBe(0);
    expect(calls).toHaveLength(1);
  });
  it('an unknown version is code 1 naming it and the supported list', async () => {
    const r = await runCni(recordingPlugin(), ENV_FOR.ADD!, netconf('0.2.0'));
    expect(r.json?.code).toBe(1);
    expect(r.json?.msg).toContain('"0.2.0"');
    expect(r.json?.msg).toContain('0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0');
  });
  it('a missing cniVersion is code 1', async () => {
    const r = await runCni(recordingPlugin(), ENV_FOR.ADD!, { name: 'n', type: 't' });
    expect(r.json).toMatchObject({ code: 1, msg: expect.stringContaining('no "cniVersion"') });
  });
  it('cniVersions: the highest supported entry when cniVersion is not one we speak', async () => {
    const r = await runCni(recordingPlugin(), ENV_FOR.ADD!, { ...netconf('2.0.0'), cniVersions: ['0.4.0', '1.0.0', '2.0.0'] });
    expect(r.json?.cniVersion).toBe('1.0.0');
  });
  it('cniVersions: the runtime-chosen cniVersion wins when we speak it', async () => {
    const r = await runCni(recordingPlugin(), ENV_FOR.ADD!, { ...netconf('1.0.0'), cniVersions: ['1.0.0', '1.1.0'] });
    expect(r.json?.cniVersion).toBe('1.0.0');
  });
  it('cniVersions with nothing we speak is code 1', async () => {
    const r = await runCni(recordingPlugin(), ENV_FOR.ADD!, { name: 'n', type: 't', cniVersions: ['2.0.0'] });
    expect(r.json?.code).toBe(1);
  });
  it('an invalid network name is code 7 naming the field and value', async () => {
    const r = await runCni(recordingPlugin(), ENV_FOR.ADD!, { ...netconf('1.0.0'), name: 'my net' });
    expect(r.json).toMatchObject({ code: 7, msg: expect.stringContaining('field "name": "my net"') });
  });
  it('unknown fields are tolerated and reach the plugin', async () => {
    const calls: CniRequest[] = [];
    await runCni(recordingPlugin(calls), ENV_FOR.ADD!, netconf('1.0.0', { bridge: 'shoal0', whatever: { x: 1 } }));
    expect((calls[0]!.config as Record<string, unknown>).bridge).toBe('shoal0');
  });
  it('a bad prevResult is code 7 naming the field', async () => {
    const prevResult = { cniVersion: '1.0.0', ips: [{ address: '10.1.0.5' }] };
    const r = await runCni(recordingPlugin(), ENV_FOR.DEL!, netconf('1.0.0', { prevResult }));
    expect(r.json).toMatchObject({ code: 7, msg: expect.stringContaining('prevResult.ips[0].address') });
  });
  it('CHECK without prevResult is code 7', async () => {
    const r = await runCni(recordingPlugin(), ENV_FOR.CHECK!, netconf('1.0.0'));
    expect(r.json).toMatchObject({ code: 7, msg: expect.stringContaining('prevResult') });
  });
  it('GC gets the valid attachments', async () => {
    const calls: CniRequest[] = [];
    const attachments = [{ containerID: 'c1', ifname: 'eth0' }];
    await runCni(recordingPlugin(calls), ENV_FOR.GC!, netconf('1.1.0', { 'cni.dev/valid-attachments': attachments }));
    expect(calls[0]!.validAttachments).toEqual(attachments);
  });
  it('GC accepts the older "cni.dev/attachments" spelling', async () => {
    const calls: CniRequest[] = [];
    const attachments = [{ containerID: 'c2', ifname: 'net1' }];
    await runCni(recordingPlugin(calls), ENV_FOR.GC!, netconf('1.1.0', { 'cni.dev/attachments': attachments }));
    expect(calls[0]!.validAttachments).toEqual(attachments);
  });
  it('passes stdin through unchanged for delegation', async () => {
    const calls: CniRequest[] = [];
    const text = JSON.stringify(netconf('1.0.0', { ipam: { type: 'x', subnet: '10.0.0.0/24' } }), null, 2);
    await runCni(recordingPlugin(calls), ENV_FOR.ADD!, text);
    expect(calls[0]!.stdin).toBe(text);
  });
});

describe('skel: plugin outcomes', () => {
  it('a thrown Shoal error becomes its CNI code, with the cause chain in details and no stack', async () => {
    const cause = Object.assign(new Error('ENOENT: /var/run/netns/t'), { code: 'ENOENT' });
    const err = Object.assign(new Error('network namespace "/var/run/netns/t" not found', { cause }), { code: 'ENETNSNOTFOUND' });
    const r = await runCni({ add: () => Promise.reject(err) }, ENV_FOR.ADD!, netconf('1.0.0'));
    expect(r.json).toEqual({
      cniVersion: '1.0.0',
      code: 3,
      msg: 'network namespace "/var/run/netns/t" not found',
      details: 'ENOENT: /var/run/netns/t',
    });
    expect(r.stdout).not.toContain('    at ');
  });
  it('an unknown error is 999', async () => {
    const r = await runCni({ add: () => Promise.reject(new TypeError('boom')) }, ENV_FOR.ADD!, netconf('1.0.0'));
    expect(r.json).toMatchObject({ code: 999, msg: 'boom' });
  });
  it('a plugin without ADD answers code 4', async () => {
    expect((await runCni({}, ENV_FOR.ADD!, netconf('1.0.0'))).json?.code).toBe(4);
  });
  it('a plugin without DEL, STATUS or GC succeeds', async () => {
    for (const verb of ['DEL', 'STATUS', 'GC']) {
      expect((await runCni({}, ENV_FOR[verb]!, netconf('1.1.0'))).exitCode).toBe(0);
    }
  });
  it('logs errors to stderr as JSON, never to stdout', async () => {
    const r = await runCni({ add: () => Promise.reject(new Error('nope')) }, ENV_FOR.ADD!, netconf('1.0.0'));
    const line = JSON.parse(r.stderr.trim().split('\n').at(-1)!);
    expect(line).toMatchObject({ level: 50, msg: 'nope', command: 'ADD', containerId: 'c0ffee' });
    expect(r.stdout.trim().split('\n')).toHaveLength(1);
  });
  it('logLevel "silent" keeps stderr empty', async () => {
    const r = await runCni({ add: () => Promise.reject(new Error('nope')) }, ENV_FOR.ADD!, netconf('1.0.0', { logLevel: 'silent' }));
    expect(r.stderr).toBe('');
  });
  it('plugin info-level logs appear only at logLevel info', async () => {
    const plugin: CniPlugin = { del: async (req) => req.log.info({ step: 1 }, 'hello') };
    expect((await runCni(plugin, ENV_FOR.DEL!, netconf('1.0.0'))).stderr).toBe('');
    const r = await runCni(plugin, ENV_FOR.DEL!, netconf('1.0.0', { logLevel: 'info' }));
    expect(JSON.parse(r.stderr)).toMatchObject({ level: 30, msg: 'hello', step: 1 });
  });
});

describe('skel: GC without an attachment list', () => {
  it('leaves validAttachments undefined (not "nothing is valid")', async () => {
    const calls: CniRequest[] = [];
    await runCni(recordingPlugin(calls), ENV_FOR.GC!, netconf('1.1.0'));
    expect(calls[0]!.validAttachments).toBeUndefined();
  });
});
