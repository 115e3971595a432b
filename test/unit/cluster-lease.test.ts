import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Lease, LeaseLostError } from '../../src/cluster/lease.js';
import { StoreLeaseNotFoundError, StoreUnavailableError } from '../../src/store/errors.js';
import type { LeaseBackend } from '../../src/store/etcd.js';

/**
 * A LeaseBackend whose answers the test controls. `mode` says what a keep-alive does:
 * 'answer' (TTL as granted), 'silent' (never answers: the etcd3#110 case, a stream that looks
 * open through a cut), 'gone' (TTL 0), 'error' (a bounded failure).
 */
function fakeBackend() {
  let next = 1;
  const b = {
    name: 'etcd://fake:2379',
    mode: 'answer' as 'answer' | 'silent' | 'gone' | 'error',
    serverTtl: 5,
    grantFails: false,
    granted: [] as string[],
    revoked: [] as string[],
    puts: [] as { id: string; entries: [string, string][] }[],
    deleted: [] as string[],
    keepAlives: 0,
    putError: undefined as Error | undefined,
    async leaseGrant(ttlSeconds: number) {
      if (b.grantFails) throw new StoreUnavailableError('grant a lease on', ['fake:2379'], 'no answer within 1000 ms');
      const id = String(next++);
      b.granted.push(id);
      return { id, ttlSeconds };
    },
    leaseKeepAlive(_id: string): Promise<number> {
      b.keepAlives++;
      if (b.mode === 'silent') return new Promise(() => undefined);
      if (b.mode === 'gone') return Promise.resolve(0);
      if (b.mode === 'error') return Promise.reject(new StoreUnavailableError('keep a lease alive on', ['fake:2379'], 'no answer'));
      return Promise.resolve(3);
    },
    async leaseTimeToLive() {
      return b.serverTtl;
    },
    async leaseRevoke(id: string) {
      b.revoked.push(id);
    },
    async putLeased(entries: ReadonlyArray<readonly [string, string]>, id: string) {
      if (b.putError) throw b.putError;
      b.puts.push({ id, entries: entries.map(([k, v]) => [k, v]) });
    },
    async delete(key: string) {
      b.deleted.push(key);
      return true;
    },
  };
  return b satisfies LeaseBackend;
}

let backend: ReturnType<typeof fakeBackend>;
let lease: Lease;
let lost: LeaseLostError[];

beforeEach(() => {
  vi.useFakeTimers({ now: 1_000_000 });
  backend = fakeBackend();
  lease = new Lease(backend, { ttlSeconds: 3, now: () => Date.now() });
  lost = [];
  lease.on('lost', (err) => lost.push(err));
});

afterEach(() => {
  lease.release();
  vi.useRealTimers();
});

describe('Lease', () => {
  it('grants, writes the keys put under it, and stays alive while keep-alives are answered', async () => {
    const id = await lease.grant();
    expect(id).toBe('1');
    expect(lease.state).toBe('alive');
    await lease.put('nodes/n1', 'addr');
    expect(backend.puts).toEqual([{ id: '1', entries: [['nodes/n1', 'addr']] }]);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(lease.state).toBe('alive');
    expect(lost).toEqual([]);
    // One keep-alive per TTL/3.
    expect(backend.keepAlives).toBeGreaterThanOrEqual(29);
    expect(lease.expiresAt).toBeGreaterThan(Date.now());
  });

  it('concurrent grants share one lease', async () => {
    const [x, y] = await Promise.all([lease.grant(), lease.grant()]);
    expect(x).toBe(y);
    expect(backend.granted).toEqual(['1']);
    expect(await lease.grant()).toBe('1');
  });

  it('etcd3#110: keep-alives that are never answered lose the lease by its TTL, not later', async () => {
    await lease.grant();
    await vi.advanceTimersByTimeAsync(2000); // a few answered keep-alives
    const lastAnswered = lease.expiresAt;
    backend.mode = 'silent';
    const cut = Date.now();
    await vi.advanceTimersByTimeAsync(lastAnswered - cut - 1);
    expect(lost).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(lost).toHaveLength(1);
    expect(lost[0]).toBeInstanceOf(LeaseLostError);
    expect(lost[0]!.reason).toBe('expired');
    expect(lost[0]!.leaseId).toBe('1');
    expect(lease.state).toBe('lost');
    // Within the TTL of the cut.
    expect(Date.now() - cut).toBeLessThanOrEqual(3000);
    // Emitted once; nothing runs any more.
    const keepAlives = backend.keepAlives;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(lost).toHaveLength(1);
    expect(backend.keepAlives).toBe(keepAlives);
  });

  it('failing keep-alives are not a loss until the expiry passes', async () => {
    await lease.grant();
    backend.mode = 'error';
    const failures: Error[] = [];
    lease.on('keepaliveFailed', (e) => failures.push(e));
    await vi.advanceTimersByTimeAsync(2500);
    expect(failures.length).toBeGreaterThan(0);
    expect(lease.state).toBe('alive');
    backend.mode = 'answer';
    await vi.advanceTimersByTimeAsync(10_000);
    expect(lease.state).toBe('alive');
  });

  it('TTL 0 in a keep-alive answer, or -1 from the server check, is a loss', async () => {
    await lease.grant();
    backend.mode = 'gone';
    await vi.advanceTimersByTimeAsync(1000);
    expect(lost.map((e) => e.reason)).toEqual(['not-found']);

    backend.mode = 'answer';
    await lease.grant();
    backend.serverTtl = -1;
    await vi.advanceTimersByTimeAsync(3000);
    expect(lost.map((e) => e.reason)).toEqual(['not-found', 'not-found']);
    expect(lost[1]!.message).toMatch(/etcd reports it expired or revoked/);
  });

  it('a put refused for an unknown lease is a loss', async () => {
    await lease.grant();
    backend.putError = new StoreLeaseNotFoundError('etcd://fake:2379');
    await expect(lease.put('k', 'v')).rejects.toBeInstanceOf(LeaseLostError);
    expect(lease.state).toBe('lost');
    expect(lost).toHaveLength(1);
  });

  it('after a loss: put is refused, and grant() re-grants, re-puts every key and revokes the old lease', async () => {
    await lease.grant();
    await lease.put('a', '1');
    await lease.put('b', '2');
    backend.mode = 'silent';
    await vi.advanceTimersByTimeAsync(4000);
    expect(lease.state).toBe('lost');
    await expect(lease.put('c', '3')).rejects.toThrow(/no live lease to put "c" under/);

    backend.mode = 'answer';
    backend.grantFails = true;
    await expect(lease.grant()).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(lease.state).toBe('lost');
    backend.grantFails = false;
    const granted: string[] = [];
    lease.on('granted', (id) => granted.push(id));
    const id = await lease.grant();
    expect(id).toBe('2');
    expect(granted).toEqual(['2']);
    expect(backend.puts.at(-1)).toEqual({ id: '2', entries: [['a', '1'], ['b', '2'], ['c', '3']] });
    await vi.advanceTimersByTimeAsync(0);
    expect(backend.revoked).toEqual(['1']);
    expect(lease.state).toBe('alive');
  });

  it('release stops keep-alives without revoking; revoke revokes; remove forgets and deletes', async () => {
    await lease.grant();
    await lease.put('a', '1');
    await lease.remove('a');
    expect(backend.deleted).toEqual(['a']);
    expect(lease.keys.size).toBe(0);
    lease.release();
    const n = backend.keepAlives;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(backend.keepAlives).toBe(n);
    expect(lease.state).toBe('released');
    expect(lost).toEqual([]);
    expect(backend.revoked).toEqual([]);
    await lease.grant();
    await lease.revoke();
    expect(backend.revoked).toEqual(['2']);
  });

  it('refuses a TTL under 1 s', () => {
    expect(() => new Lease(backend, { ttlSeconds: 0.5 })).toThrow(RangeError);
  });
});
