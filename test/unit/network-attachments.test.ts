import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { attachmentProblems, listAttachments } from '../../src/network/attachments.js';
import type { NetworkRecord } from '../../src/network/model.js';
import { attachmentKey } from '../../src/ipam/keys.js';
import { endpointKey } from '../../src/dns/registry.js';
import { SqliteStore } from '../../src/store/sqlite.js';

let dir: string;
let store: SqliteStore;

const net = {
  name: 'n1',
  subnets: [{ subnet: '10.250.1.0/24' }, { subnet: 'fd00:1::/64' }],
} as NetworkRecord;

const ipam = (cid: string, value: string) => store.put(attachmentKey('n1', cid, 'eth0'), value);
const dns = (cid: string, value: string) => store.put(endpointKey({ network: 'n1', containerId: cid, ifname: 'eth0' }), value);

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'shoal-attachments-'));
  store = new SqliteStore(path.join(dir, 'shoal.db'));
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('listAttachments', () => {
  it('lists IPAM attachments with their addresses, names from the DNS registry, and DNS-only endpoints', async () => {
    await ipam('a', JSON.stringify({ addresses: ['4:0afa0105', '6:fd000001000000000000000000000005'] }));
    await dns('a', JSON.stringify({ name: 'web', ipv4: ['10.250.1.5'] }));
    await dns('b', JSON.stringify({ name: 'db', ipv4: ['10.250.1.9'] }));
    const list = await listAttachments(store, net);
    expect(list).toEqual([
      { containerId: 'a', ifname: 'eth0', name: 'web', addresses: ['10.250.1.5/24', 'fd00:1::5/64'] },
      { containerId: 'b', ifname: 'eth0', name: 'db', addresses: ['10.250.1.9/24'] },
    ]);
    expect(attachmentProblems(net, list)).toEqual([]);
  });

  it('keeps an attachment whose records are corrupt, naming the record and the problem', async () => {
    await ipam('good', JSON.stringify({ addresses: ['4:0afa0102'] }));
    await ipam('notjson', '{"addresses": [');
    await ipam('noaddr', JSON.stringify({ address: '4:0afa0103' }));
    await ipam('badaddr', JSON.stringify({ addresses: ['10.250.1.4'] }));
    await ipam('dnsbad', JSON.stringify({ addresses: ['4:0afa0106'] }));
    await dns('dnsbad', '[oops');
    await dns('dnsshape', JSON.stringify({ name: 7, ipv4: ['10.250.1.7'] }));
    await store.put('ipam/n1/attachment/only-one-part', JSON.stringify({ addresses: [] }));

    const list = await listAttachments(store, net);
    const byId = new Map(list.map((a) => [a.containerId, a]));
    expect([...byId.keys()].sort()).toEqual(['badaddr', 'dnsbad', 'dnsshape', 'good', 'noaddr', 'notjson', 'only-one-part']);
    expect(byId.get('good')).toEqual({ containerId: 'good', ifname: 'eth0', addresses: ['10.250.1.2/24'] });
    expect(byId.get('notjson')!.problem).toMatch(/^store record "ipam\/n1\/attachment\/notjson\/eth0" is not valid JSON: /);
    expect(byId.get('noaddr')!.problem).toBe('store record "ipam/n1/attachment/noaddr/eth0" has no "addresses" list');
    expect(byId.get('badaddr')!.problem).toBe('store record "ipam/n1/attachment/badaddr/eth0" lists "10.250.1.4", which is not an address key');
    // The IPAM record is fine, the DNS record is not: the addresses stay, the problem is named.
    expect(byId.get('dnsbad')).toMatchObject({ ifname: 'eth0', addresses: ['10.250.1.6/24'], problem: expect.stringMatching(/^store record "dns\/endpoints\/n1\/dnsbad\/eth0" is not valid JSON/) });
    expect(byId.get('dnsshape')!.problem).toBe('store record "dns/endpoints/n1/dnsshape/eth0" has a "name" that is not a string');
    expect(byId.get('only-one-part')!.problem).toBe('store record "ipam/n1/attachment/only-one-part" has a key that is not <container id>/<ifname>');

    const problems = attachmentProblems(net, list);
    expect(problems).toHaveLength(6);
    expect(problems).toContain('network "n1", attachment "noaddr/eth0": store record "ipam/n1/attachment/noaddr/eth0" has no "addresses" list');
  });
});
