import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/store/sqlite.js';
import { ensureBuilt, removeBuiltCopy, netconf, runPlugin } from './ipam-helpers.js';

// The shoal-ipam executable end to end: real processes, a real store in a temp state dir.

let dir: string;
beforeAll(() => {
  ensureBuilt();
  dir = mkdtempSync(path.join(os.tmpdir(), 'shoal-ipam-it-'));
}, 120_000);
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  removeBuiltCopy();
});

function stateDir(name: string): string {
  return path.join(dir, name);
}

describe('shoal-ipam plugin', () => {
  it('dual stack ADD prints the result in the config\'s version', async () => {
    const ipam = { ranges: [[{ subnet: '10.77.0.0/24' }], [{ subnet: 'fd77::/64' }]], routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0' }] };
    const v04 = await runPlugin({ command: 'ADD', containerId: 'c1', config: netconf(stateDir('dual'), ipam, {}, '0.4.0') });
    expect(v04.code, v04.stdout).toBe(0);
    expect(v04.json).toEqual({
      cniVersion: '0.4.0',
      ips: [
        { version: '4', address: '10.77.0.2/24', gateway: '10.77.0.1' },
        { version: '6', address: 'fd77::2/64', gateway: 'fd77::1' },
      ],
      routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0' }],
    });
    const v1 = await runPlugin({ command: 'ADD', containerId: 'c2', config: netconf(stateDir('dual'), ipam, {}, '1.0.0') });
    expect(v1.json).toEqual({
      cniVersion: '1.0.0',
      ips: [
        { address: '10.77.0.3/24', gateway: '10.77.0.1' },
        { address: 'fd77::3/64', gateway: 'fd77::1' },
      ],
      routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0' }],
    });
    // CHECK against what ADD printed, then DEL twice (the second is a no-op success).
    const check = await runPlugin({ command: 'CHECK', containerId: 'c2', config: netconf(stateDir('dual'), ipam, { prevResult: v1.json }, '1.0.0') });
    expect(check.code, check.stdout).toBe(0);
    for (let i = 0; i < 2; i++) {
      const del = await runPlugin({ command: 'DEL', containerId: 'c2', config: netconf(stateDir('dual'), ipam) });
      expect(del.code, del.stdout).toBe(0);
    }
    const after = await runPlugin({ command: 'CHECK', containerId: 'c2', config: netconf(stateDir('dual'), ipam, { prevResult: v1.json }, '1.0.0') });
    expect(after.code).toBe(1);
    expect(after.json?.['msg']).toContain('holds no addresses');
  });

  it('a /29 fills up, the next ADD fails cleanly, and STATUS says so (code 50) until a DEL', async () => {
    const ipam = { subnet: '10.78.0.0/29' };
    const config = netconf(stateDir('small'), ipam);
    const status = await runPlugin({ command: 'STATUS', config });
    expect(status.code, status.stdout).toBe(0);
    const got: string[] = [];
    for (let i = 0; i < 5; i++) {
      const add = await runPlugin({ command: 'ADD', containerId: `c${i}`, config });
      expect(add.code, add.stdout).toBe(0);
      got.push((add.json!['ips'] as Array<{ address: string }>)[0]!.address);
    }
    expect(got).toEqual(['10.78.0.2/29', '10.78.0.3/29', '10.78.0.4/29', '10.78.0.5/29', '10.78.0.6/29']);
    const full = await runPlugin({ command: 'ADD', containerId: 'c5', config });
    expect(full.code).toBe(1);
    expect(full.json).toMatchObject({ code: 999, msg: 'no free address left in network "ipamtest" range set 0 (10.78.0.0/29 10.78.0.1-10.78.0.6)' });
    expect(full.stdout).not.toContain('    at '); // no stack trace on stdout
    const exhausted = await runPlugin({ command: 'STATUS', config });
    expect(exhausted.json).toMatchObject({ code: 50, msg: expect.stringContaining('range set 0 (10.78.0.0/29') });
    await runPlugin({ command: 'DEL', containerId: 'c3', config });
    expect((await runPlugin({ command: 'STATUS', config })).code).toBe(0);
    const again = await runPlugin({ command: 'ADD', containerId: 'c5', config });
    expect((again.json!['ips'] as Array<{ address: string }>)[0]!.address).toBe('10.78.0.5/29');
  });

  it('GC keeps exactly the valid attachments', async () => {
    const config = netconf(stateDir('gc'), { ranges: [[{ subnet: '10.79.0.0/24' }]] });
    for (const id of ['a', 'b', 'c']) for (const ifname of ['eth0', 'eth1']) {
      const add = await runPlugin({ command: 'ADD', containerId: id, ifname, config });
      expect(add.code, add.stdout).toBe(0);
    }
    const valid = [
      { containerID: 'a', ifname: 'eth1' },
      { containerID: 'c', ifname: 'eth0' },
    ];
    // A service's VIP is held by Shoal itself (no runtime knows it): a runtime's GC keeps it.
    const { allocate } = await import('../../src/ipam/allocator.js');
    const { parseIpamConfig } = await import('../../src/ipam/config.js');
    const before = new SqliteStore(path.join(stateDir('gc'), 'shoal.db'));
    try {
      await before.transaction((txn) => allocate(txn, 'ipamtest', parseIpamConfig(config['ipam']), { containerId: 'service:web', ifname: 'vip' }, []));
    } finally {
      before.close();
    }
    const gc = await runPlugin({ command: 'GC', config: { ...config, 'cni.dev/valid-attachments': valid } });
    expect(gc.code, gc.stdout).toBe(0);
    const store = new SqliteStore(path.join(stateDir('gc'), 'shoal.db'));
    try {
      const owners = (await store.list('ipam/ipamtest/addr/')).map((kv) => {
        const o = JSON.parse(kv.value) as { containerId: string; ifname: string };
        return `${o.containerId}/${o.ifname}`;
      });
      expect(owners.sort()).toEqual(['a/eth1', 'c/eth0', 'service:web/vip']);
      expect((await store.list('ipam/ipamtest/attachment/')).map((kv) => decodeURIComponent(kv.key.split('/').slice(-2).join('/'))).sort()).toEqual(['a/eth1', 'c/eth0', 'service:web/vip']);
    } finally {
      store.close();
    }
    // The older key is accepted too; a GC without either is refused, not read as "none valid".
    expect((await runPlugin({ command: 'GC', config: { ...config, 'cni.dev/attachments': valid } })).code).toBe(0);
    const refused = await runPlugin({ command: 'GC', config });
    expect(refused.json).toMatchObject({ code: 7, msg: expect.stringContaining('cni.dev/valid-attachments') });
  });

  it('requested addresses via CNI_ARGS and runtimeConfig, and config errors as code 7', async () => {
    const config = netconf(stateDir('req'), { ranges: [[{ subnet: '10.80.0.0/24' }]] });
    const viaArgs = await runPlugin({ command: 'ADD', containerId: 'a', cniArgs: 'IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.80.0.50', config });
    expect((viaArgs.json!['ips'] as Array<{ address: string }>)[0]!.address).toBe('10.80.0.50/24');
    const viaRuntime = await runPlugin({ command: 'ADD', containerId: 'b', config: { ...config, runtimeConfig: { ips: ['10.80.0.60/24'] } } });
    expect((viaRuntime.json!['ips'] as Array<{ address: string }>)[0]!.address).toBe('10.80.0.60/24');
    const taken = await runPlugin({ command: 'ADD', containerId: 'c', cniArgs: 'IP=10.80.0.50', config });
    expect(taken.json).toMatchObject({ msg: expect.stringContaining('10.80.0.50') });
    const bad = await runPlugin({ command: 'ADD', containerId: 'd', config: netconf(stateDir('req'), { ranges: [[{ subnet: '10.80.0.0/24', rangeStart: '10.80.0.90', rangeEnd: '10.80.0.10' }]] }) });
    expect(bad.json).toEqual({
      cniVersion: '1.1.0',
      code: 7,
      msg: 'invalid network config: field "ipam.ranges[0][0].rangeStart" = "10.80.0.90": is after rangeEnd 10.80.0.10',
    });
  });
});
