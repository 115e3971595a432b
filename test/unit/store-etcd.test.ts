import { describe, expect, it } from 'vitest';
import { CompareResult, CompareTarget, GRPCDeadlineExceededError, GRPCUnavailableError, type IKeyValue, type IRangeRequest, type IRangeResponse } from 'etcd3';
import { neverSent } from '../../src/store/etcd.js';
import { listRange, prefixRangeEnd, TxnAttempt } from '../../src/store/etcd-txn.js';
import { StoreError } from '../../src/store/errors.js';
import { parseEtcdUrl, StoreUrlError } from '../../src/store/etcd-url.js';

const NS = '/shoal/v1/';
const b = (s: string) => Buffer.from(s);

describe('etcd key ranges', () => {
  it('prefixRangeEnd increments the last byte below 0xff, dropping trailing 0xff bytes', () => {
    expect(prefixRangeEnd(b('/shoal/v1/'))).toEqual(b('/shoal/v10'));
    expect(prefixRangeEnd(b('a'))).toEqual(b('b'));
    expect(prefixRangeEnd(Buffer.from([0x61, 0xff, 0xff]))).toEqual(b('b'));
    expect(prefixRangeEnd(Buffer.from([0xff]))).toEqual(Buffer.from([0]));
  });

  it('listRange covers the prefix, clipped by from and (inclusive) to', () => {
    expect(listRange(NS, 'c/')).toEqual({ start: b('/shoal/v1/c/'), end: b('/shoal/v1/c0') });
    expect(listRange(NS, '')).toEqual({ start: b('/shoal/v1/'), end: b('/shoal/v10') });
    // from inside the prefix moves the start; from before it does not.
    expect(listRange(NS, 'c/', { from: 'c/b' })!.start).toEqual(b('/shoal/v1/c/b'));
    expect(listRange(NS, 'c/', { from: 'a' })!.start).toEqual(b('/shoal/v1/c/'));
    // to is inclusive: the end is to + NUL; a to past the prefix leaves the prefix end.
    expect(listRange(NS, 'c/', { to: 'c/b' })!.end).toEqual(Buffer.concat([b('/shoal/v1/c/b'), Buffer.from([0])]));
    expect(listRange(NS, 'c/', { to: 'd' })!.end).toEqual(b('/shoal/v1/c0'));
    expect(listRange(NS, 'c/', { from: 'c/z', to: 'c/a' })).toBeUndefined();
    expect(listRange(NS, 'c/', { to: 'b' })).toBeUndefined();
  });
});

describe('neverSent', () => {
  it('is true only for requests that cannot have reached etcd', () => {
    expect(neverSent(new GRPCUnavailableError('14 UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED'))).toBe(true);
    expect(neverSent(new GRPCUnavailableError('etcdserver: no leader'))).toBe(true);
    expect(neverSent(new GRPCUnavailableError('etcdserver: request timed out'))).toBe(false);
    expect(neverSent(new GRPCUnavailableError('etcdserver: leader changed'))).toBe(false);
    expect(neverSent(new GRPCDeadlineExceededError('4 DEADLINE_EXCEEDED'))).toBe(false);
    expect(neverSent(new Error('No connection established'))).toBe(false);
  });
});

/** A tiny multi-version KV: enough to answer ranges at a revision. */
function fakeEtcd(initial: Record<string, string>) {
  let revision = 1;
  const history: { key: string; value: string | null; rev: number; create: number }[] = [];
  for (const [k, v] of Object.entries(initial)) history.push({ key: NS + k, value: v, rev: ++revision, create: revision });
  const requests: IRangeRequest[] = [];
  const at = (rev: number) => {
    const state = new Map<string, IKeyValue>();
    for (const h of history.filter((x) => x.rev <= rev)) {
      if (h.value === null) state.delete(h.key);
      else {
        const prev = state.get(h.key);
        state.set(h.key, { key: b(h.key), value: b(h.value), mod_revision: String(h.rev), create_revision: String(prev ? prev.create_revision : h.rev), version: '1', lease: '0' });
      }
    }
    return [...state.values()].sort((x, y) => Buffer.compare(x.key, y.key));
  };
  return {
    requests,
    write(key: string, value: string | null) {
      history.push({ key: NS + key, value, rev: ++revision, create: revision });
    },
    get revision() {
      return revision;
    },
    range: async (req: IRangeRequest): Promise<IRangeResponse> => {
      requests.push(req);
      const rev = req.revision ? Number(req.revision) : revision;
      let kvs = at(rev).filter((kv) => (req.range_end ? Buffer.compare(kv.key, req.key!) >= 0 && Buffer.compare(kv.key, req.range_end) < 0 : kv.key.equals(req.key!)));
      const total = kvs.length;
      const limit = Number(req.limit ?? 0);
      if (limit > 0) kvs = kvs.slice(0, limit);
      return { header: { revision: String(revision), cluster_id: '', member_id: '', raft_term: '' }, kvs, more: kvs.length < total, count: String(total) };
    },
  };
}

describe('TxnAttempt', () => {
  it('reads one snapshot: every read after the first is at the first read\'s revision', async () => {
    const etcd = fakeEtcd({ a: '1', b: '2' });
    const txn = new TxnAttempt(NS, etcd.range);
    expect((await txn.get('a'))!.value).toBe('1');
    const snapshot = etcd.revision;
    etcd.write('b', 'changed');
    expect((await txn.get('b'))!.value).toBe('2');
    expect(etcd.requests[0]!.revision).toBeUndefined();
    expect(Number(etcd.requests[1]!.revision)).toBe(snapshot);
  });

  it('sees its own writes in get, list and count, limit included', async () => {
    const etcd = fakeEtcd({ 'n/a': '1', 'n/b': '2', 'n/c': '3' });
    const txn = new TxnAttempt(NS, etcd.range);
    await txn.put('n/ab', 'new');
    expect(await txn.delete('n/a')).toBe(true);
    expect(await txn.delete('n/none')).toBe(false);
    expect(await txn.get('n/a')).toBeUndefined();
    expect((await txn.get('n/ab'))!.value).toBe('new');
    expect((await txn.list('n/')).map((kv) => kv.key)).toEqual(['n/ab', 'n/b', 'n/c']);
    expect((await txn.list('n/', { limit: 2 })).map((kv) => kv.key)).toEqual(['n/ab', 'n/b']);
    expect(await txn.count('n/')).toBe(3);
    expect(await txn.count('n/', { from: 'n/b' })).toBe(2);
  });

  it('commits nothing when it wrote nothing', async () => {
    const etcd = fakeEtcd({ a: '1' });
    const txn = new TxnAttempt(NS, etcd.range);
    await txn.get('a');
    await txn.list('');
    expect(txn.commitRequest(128)).toBeUndefined();
  });

  it('compares every key read (absent as 0) and every listed range against the snapshot', async () => {
    const etcd = fakeEtcd({ 'n/a': '1', 'n/b': '2', x: '9' });
    const txn = new TxnAttempt(NS, etcd.range);
    const x = await txn.get('x');
    await txn.get('missing');
    await txn.list('n/');
    const snapshot = etcd.revision;
    await txn.put('n/c', '3');
    await txn.delete('x');
    const req = txn.commitRequest(128)!;
    const byKey = new Map(req.compare!.filter((c) => !c.range_end).map((c) => [c.key!.toString(), c]));
    expect(byKey.get(NS + 'x')).toMatchObject({ target: CompareTarget.Mod, result: CompareResult.Equal, mod_revision: x!.modRevision });
    expect(byKey.get(NS + 'missing')).toMatchObject({ mod_revision: 0 });
    expect(byKey.get(NS + 'n/a')).toBeDefined();
    expect(byKey.get(NS + 'n/b')).toBeDefined();
    const ranges = req.compare!.filter((c) => c.range_end);
    expect(ranges).toEqual([{ key: b(NS + 'n/'), range_end: b(NS + 'n0'), target: CompareTarget.Mod, result: CompareResult.Less, mod_revision: snapshot + 1 }]);
    expect(req.success).toEqual([{ request_put: { key: b(NS + 'n/c'), value: b('3') } }, { request_delete_range: { key: b(NS + 'x') } }]);
  });

  it('compares only the part of a range a limited list read', async () => {
    const etcd = fakeEtcd({ 'n/a': '1', 'n/b': '2', 'n/c': '3' });
    const txn = new TxnAttempt(NS, etcd.range);
    await txn.list('n/', { limit: 1 });
    await txn.put('y', '1');
    const ranges = txn.commitRequest(128)!.compare!.filter((c) => c.range_end);
    expect(ranges[0]!.range_end).toEqual(Buffer.concat([b(NS + 'n/a'), Buffer.from([0])]));
  });
});

describe('TxnAttempt within --max-txn-ops', () => {
  it('refuses more writes than one etcd transaction takes, naming the limit', async () => {
    const txn = new TxnAttempt(NS, fakeEtcd({}).range);
    for (let i = 0; i < 5; i++) await txn.put(`k${i}`, 'v');
    expect(() => txn.commitRequest(4, 'etcd://x:2379')).toThrow(StoreError);
    expect(() => txn.commitRequest(4, 'etcd://x:2379')).toThrow(/it writes 5 keys; etcd takes at most 4 in one transaction \(--max-txn-ops\)/);
    expect(txn.commitRequest(5)!.success).toHaveLength(5);
  });

  it('keeps the compares of gets and ranges, and adds per-key compares of listed keys as far as they fit', async () => {
    const etcd = fakeEtcd({ 'n/a': '1', 'n/b': '2', 'n/c': '3', 'n/d': '4', x: '1' });
    const txn = new TxnAttempt(NS, etcd.range);
    await txn.get('x');
    await txn.list('n/');
    await txn.put('y', '1');
    const full = txn.commitRequest(128)!.compare!;
    expect(full).toHaveLength(1 + 1 + 4);
    const clipped = txn.commitRequest(4)!.compare!;
    expect(clipped).toHaveLength(4);
    expect(clipped.filter((c) => c.range_end)).toHaveLength(1);
    expect(clipped.some((c) => c.key!.equals(b(NS + 'x')))).toBe(true);
    expect(() => txn.commitRequest(1)).toThrow(/it read 2 keys and ranges; etcd compares at most 1/);
  });
});

describe('parseEtcdUrl', () => {
  it('reads host:port lists, with the default port and bracketed IPv6', () => {
    expect(parseEtcdUrl('etcd://10.0.0.1:2379,10.0.0.2:2379')).toEqual(['10.0.0.1:2379', '10.0.0.2:2379']);
    expect(parseEtcdUrl('etcd://a,b:2380,a')).toEqual(['a:2379', 'b:2380']);
    expect(parseEtcdUrl('etcd://[fd00::1]:2379')).toEqual(['[fd00::1]:2379']);
  });

  it('refuses what is not an etcd URL, naming it', () => {
    for (const bad of ['sqlite:/x', 'etcd://', 'etcd://a:99999', 'etcd://a b', 'http://a:2379']) {
      expect(() => parseEtcdUrl(bad)).toThrow(StoreUrlError);
    }
    expect(() => parseEtcdUrl('etcd://a:0')).toThrow(/invalid store "etcd:\/\/a:0": port 0 is out of range/);
  });
});
