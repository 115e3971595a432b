import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ensureKeys, readKeys } from '../../src/cluster/keys.js';
import { createClusterNetwork, localRecordOf } from '../../src/cluster/networks.js';
import { policyMessage, saMessage } from '../../src/kernel/xfrm.js';
import { deriveSa, describeIpsecOp, desiredIpsec, diffIpsec, guardRuleset, outboundGeneration, type KeyGeneration } from '../../src/overlay/ipsec.js';
import { SqliteStore } from '../../src/store/sqlite.js';

const g1: KeyGeneration = { gen: 1, key: Buffer.alloc(32, 1) };
const g2: KeyGeneration = { gen: 2, key: Buffer.alloc(32, 2) };
const A = '10.0.0.1';
const B = '10.0.0.2';
const C = '10.0.0.3';

describe('XFRM messages', () => {
  it('an SA: usersa_info of 224 bytes, ESP transport with ESN, rfc4106 AEAD with a 128-bit ICV', () => {
    const key = Buffer.alloc(36, 7);
    const { header, attrs } = saMessage({ src: A, dst: B, spi: 0x1234, reqid: 0x5301, key });
    expect(header.length).toBe(224);
    expect([...header.subarray(56, 60)]).toEqual([10, 0, 0, 2]); // id.daddr
    expect(header.readUInt32BE(72)).toBe(0x1234); // id.spi, network order
    expect(header.readUInt8(76)).toBe(50); // ESP
    expect([...header.subarray(80, 84)]).toEqual([10, 0, 0, 1]); // saddr
    expect(header.readUInt16LE(212)).toBe(2);
    expect(header.readUInt8(215)).toBe(0); // replay window lives in the ESN attribute
    expect(header.readUInt8(216) & 128).toBe(128); // XFRM_STATE_ESN
    const aead = attrs.find((a) => a.type === 18) as { value: Buffer };
    expect(aead.value.subarray(0, 17).toString()).toBe('rfc4106(gcm(aes))');
    expect(aead.value.readUInt32LE(64)).toBe(288);
    expect(aead.value.readUInt32LE(68)).toBe(128);
    const esn = attrs.find((a) => a.type === 23) as { value: Buffer };
    expect(esn.value.readUInt32LE(0)).toBe(4); // bitmap words
    expect(esn.value.readUInt32LE(20)).toBe(128);
    expect(esn.value.length).toBe(24 + 16);
  });

  it('a policy: userpolicy_info of 168 bytes with a UDP 4789 selector and a required ESP template', () => {
    const { header, attrs } = policyMessage({ dir: 'out', sel: { src: A, dst: B, proto: 17, dport: 4789 }, priority: 0x5301, action: 'allow', reqid: 0x5301 });
    expect(header.length).toBe(168);
    expect(header.readUInt16BE(32)).toBe(4789);
    expect(header.readUInt8(42)).toBe(32);
    expect(header.readUInt8(44)).toBe(17);
    expect(header.readUInt8(160)).toBe(1); // out
    const tmpl = (attrs[0] as { value: Buffer }).value;
    expect(tmpl.length).toBe(64);
    expect(tmpl.readUInt8(20)).toBe(50);
    expect(tmpl.readUInt32LE(44)).toBe(0x5301);
    expect(tmpl.readUInt8(50)).toBe(0); // not optional
  });

  it('refuses a key of the wrong size', () => {
    expect(() => saMessage({ src: A, dst: B, spi: 1, reqid: 1, key: Buffer.alloc(16) })).toThrow(/20 or 36/);
  });
});

describe('desired IPsec state', () => {
  it('derives a different key and SPI per direction, pair and generation, the same on both ends', () => {
    const ab = deriveSa(g1, A, B);
    expect(deriveSa(g1, A, B)).toEqual(ab);
    for (const other of [deriveSa(g1, B, A), deriveSa(g1, A, C), deriveSa(g2, A, B)]) {
      expect(other.spi).not.toBe(ab.spi);
      expect(other.key.equals(ab.key)).toBe(false);
    }
    expect(ab.spi).toBeGreaterThanOrEqual(0x100);
    expect(ab.key.length).toBe(36);
  });

  it('inbound SAs for every generation, outbound only for the one the peer acknowledged', () => {
    const d = desiredIpsec({ local: A, peers: [B, C], generations: [g1, g2], acked: new Map([[B, 2], [C, 1]]) });
    const inbound = d.sas.filter((s) => s.dst === A);
    const outbound = d.sas.filter((s) => s.src === A);
    expect(inbound.map((s) => `${s.src}:${s.gen}`).sort()).toEqual([`${B}:1`, `${B}:2`, `${C}:1`, `${C}:2`]);
    expect(outbound.map((s) => `${s.dst}:${s.gen}`).sort()).toEqual([`${B}:2`, `${C}:1`]);
    expect(d.policies).toHaveLength(4);
    expect(outboundGeneration([g1, g2], undefined)?.gen).toBe(1);
  });

  it('no generations: nothing desired', () => {
    expect(desiredIpsec({ local: A, peers: [B], generations: [], acked: new Map() })).toEqual({ sas: [], policies: [] });
  });

  it('rotation order: new inbound, new outbound, then the old outbound goes; a departed peer loses policies before SAs', () => {
    const before = desiredIpsec({ local: A, peers: [B, C], generations: [g1], acked: new Map([[B, 1], [C, 1]]) });
    const after = desiredIpsec({ local: A, peers: [B], generations: [g1, g2], acked: new Map([[B, 2]]) });
    const ops = diffIpsec({ sas: before.sas, policies: before.policies }, after, A);
    const text = ops.map(describeIpsecOp);
    const kinds = ops.map((o) => `${o.op}:${'sa' in o ? (o.sa.dst === A ? 'in' : 'out') : o.policy.dir}`);
    expect(kinds).toEqual(['add-sa:in', 'add-sa:out', 'del-policy:out', 'del-policy:in', 'del-sa:out', 'del-sa:out', 'del-sa:in']);
    expect(text.join(' ')).not.toMatch(/key [^g]/);
    expect(diffIpsec({ sas: after.sas, policies: after.policies }, after, A)).toEqual([]);
  });

  it('the guard drops plain VXLAN of the encrypted VNIs only, in and out', () => {
    const text = guardRuleset([4097, 4096]);
    expect(text).toContain('udp dport 4789 @th,96,24 { 4096, 4097 } rt ipsec missing counter drop');
    expect(text).toContain('meta ipsec missing counter drop');
    expect(guardRuleset([])).toBe('add table inet shoal-ipsec\ndelete table inet shoal-ipsec\n');
  });
});

describe('keys in the store', () => {
  let dir: string;
  let store: SqliteStore;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'shoal-keys-'));
    store = new SqliteStore(path.join(dir, 'shoal.db'));
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes the first generation, rotates when due, and keeps the two newest', async () => {
    const t0 = Date.parse('2026-01-01T00:00:00Z');
    expect(await ensureKeys(store, 'n', 60_000, t0)).toBe(true);
    expect(await ensureKeys(store, 'n', 60_000, t0 + 1000)).toBe(false);
    expect(await ensureKeys(store, 'n', 60_000, t0 + 60_000)).toBe(true);
    expect(await ensureKeys(store, 'n', 60_000, t0 + 120_000)).toBe(true);
    const keys = await readKeys(store, 'n');
    expect(keys.map((k) => k.gen)).toEqual([2, 3]);
    expect(keys[0]!.key.equals(keys[1]!.key)).toBe(false);
    expect(keys[0]!.key.length).toBe(32);
  });
});

describe('-o encrypted / -o rotation', () => {
  let dir: string;
  let store: SqliteStore;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'shoal-encnet-'));
    store = new SqliteStore(path.join(dir, 'shoal.db'));
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('records encrypted with the rotation (default 12 h) and shows them as options, never a key', async () => {
    const a = await createClusterNetwork(store, { name: 'a', options: { encrypted: 'true' } }, 'n0', []);
    expect(a).toMatchObject({ encrypted: true, rotationSeconds: 43200 });
    const b = await createClusterNetwork(store, { name: 'b', options: { encrypted: '', rotation: '60' } }, 'n0', []);
    expect(b.rotationSeconds).toBe(60);
    const rec = localRecordOf(b, { stateDir: '/s', confFile: '/c', underlayAddress: '10.0.0.1', daemonSocket: '/d' });
    expect(rec.options).toEqual({ vni: String(b.vni), encrypted: 'true', rotation: '60' });
    const plain = await createClusterNetwork(store, { name: 'c' }, 'n0', []);
    expect(plain.encrypted).toBeUndefined();
  });

  it('refuses a bad value, a rotation under 10 s, and a rotation without encryption', async () => {
    await expect(createClusterNetwork(store, { name: 'a', options: { encrypted: 'yes' } }, 'n0', [])).rejects.toThrow(/encrypted="yes": must be true or false/);
    await expect(createClusterNetwork(store, { name: 'a', options: { encrypted: 'true', rotation: '5' } }, 'n0', [])).rejects.toThrow(/rotation="5"/);
    await expect(createClusterNetwork(store, { name: 'a', options: { rotation: '60' } }, 'n0', [])).rejects.toThrow(/only an encrypted network/);
  });
});
