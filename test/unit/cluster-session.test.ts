import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ClusterSession, nodeKey, type ClusterStore } from '../../src/cluster/session.js';
import { StoreUnavailableError } from '../../src/store/errors.js';
import type { KeyValue } from '../../src/store/store.js';

/**
 * An in-memory cluster store: leased keys vanish when their lease is revoked or `expire`d, the
 * watch fires on every change, and `down` makes every request fail as through a cut.
 */
function fakeStore() {
  let next = 1;
  const keys = new Map<string, { value: string; lease: string }>();
  const watchers = new Set<(rev: number) => void>();
  let rev = 1;
  const changed = () => {
    rev++;
    for (const w of watchers) w(rev);
  };
  const check = () => {
    if (s.down) throw new StoreUnavailableError('reach', ['fake:2379'], 'no answer within 1000 ms');
  };
  const s = {
    name: 'etcd://fake:2379',
    down: false,
    keepAliveTtl: 2,
    granted: [] as string[],
    revoked: [] as string[],
    dead: new Set<string>(),
    closed: false,
    keys,
    async leaseGrant(ttlSeconds: number) {
      check();
      const id = String(next++);
      s.granted.push(id);
      return { id, ttlSeconds };
    },
    async leaseKeepAlive(id: string) {
      check();
      return s.dead.has(id) || !s.granted.includes(id) ? 0 : s.keepAliveTtl;
    },
    async leaseTimeToLive(id: string) {
      check();
      return [...keys.values()].some((k) => k.lease === id) || s.granted.at(-1) === id ? 2 : -1;
    },
    async leaseRevoke(id: string) {
      check();
      s.revoked.push(id);
      s.expire(id);
    },
    async putLeased(entries: ReadonlyArray<readonly [string, string]>, id: string) {
      check();
      for (const [k, v] of entries) keys.set(k, { value: v, lease: id });
      changed();
    },
    async delete(key: string) {
      check();
      const had = keys.delete(key);
      if (had) changed();
      return had;
    },
    /** etcd expiring (or revoking) a lease: its keys go. */
    expire(id: string) {
      s.dead.add(id);
      for (const [k, v] of keys) if (v.lease === id) keys.delete(k);
      changed();
    },
    watch(onChange: (revision: number) => void) {
      watchers.add(onChange);
      return Object.assign(() => void watchers.delete(onChange), { ready: Promise.resolve(rev) });
    },
    async list(prefix: string): Promise<KeyValue[]> {
      check();
      return [...keys].filter(([k]) => k.startsWith(prefix)).sort().map(([key, v]) => ({ key, value: v.value, createRevision: 1, modRevision: 1 }));
    },
    async count(prefix: string) {
      return (await s.list(prefix)).length;
    },
    close() {
      s.closed = true;
    },
  };
  return s satisfies ClusterStore;
}

function captureLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'debug' }, { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) });
  return { logger, events: () => lines.map((l) => l['event']) };
}

let store: ReturnType<typeof fakeStore>;
let registry: Registry;
let log: ReturnType<typeof captureLogger>;

const join = (node = 'n1', leaseFile?: string) =>
  ClusterSession.join({ endpoints: ['fake:2379'], node, advertiseAddr: '10.0.0.1', nodeTtlSeconds: 2, version: '9.9.9', registry, logger: log.logger, leaseFile }, async () => store);

async function gauge(): Promise<number> {
  const m = await registry.getSingleMetric('shoal_cluster_nodes')!.get();
  return m.values.find((v) => v.labels['state'] === 'ready')?.value ?? 0;
}

beforeEach(() => {
  vi.useFakeTimers({ now: Date.parse('2026-01-01T00:00:00Z') });
  store = fakeStore();
  registry = new Registry();
  log = captureLogger();
});

afterEach(() => {
  vi.useRealTimers();
});

describe('ClusterSession', () => {
  it('registers nodes/<name> under a lease, lists nodes with their lease age, counts them for the gauge', async () => {
    const s = await join();
    expect(JSON.parse(store.keys.get(nodeKey('n1'))!.value)).toEqual({
      name: 'n1',
      address: '10.0.0.1',
      started: '2026-01-01T00:00:00.000Z',
      registered: '2026-01-01T00:00:00.000Z',
      version: '9.9.9',
    });
    expect(store.keys.get(nodeKey('n1'))!.lease).toBe(s.lease.id);
    expect(log.events()).toContain('cluster_joined');
    await store.putLeased([[nodeKey('n2'), JSON.stringify({ name: 'n2', address: '10.0.0.2', started: '2026-01-01T00:00:00.000Z', version: '9.9.9' })]], '99');
    await vi.advanceTimersByTimeAsync(65_000);
    expect(await gauge()).toBe(2);
    expect(await s.nodes()).toEqual([
      { name: 'n1', address: '10.0.0.1', started: '2026-01-01T00:00:00.000Z', registered: '2026-01-01T00:00:00.000Z', version: '9.9.9', state: 'ready', leaseAgeSeconds: 65, self: true },
      { name: 'n2', address: '10.0.0.2', started: '2026-01-01T00:00:00.000Z', version: '9.9.9', state: 'ready', leaseAgeSeconds: 65, self: false },
    ]);
    store.expire('99');
    await vi.advanceTimersByTimeAsync(0);
    expect(await gauge()).toBe(1);
    await s.close();
  });

  it('on a lost lease logs cluster_lease_lost, re-grants with a backoff once etcd answers again, and writes the record anew', async () => {
    const s = await join();
    const first = s.lease.id!;
    store.down = true; // a cut: keep-alives go unanswered
    await vi.advanceTimersByTimeAsync(2500);
    expect(log.events()).toContain('cluster_lease_lost');
    store.expire(first); // etcd expired it meanwhile
    await vi.advanceTimersByTimeAsync(5000); // grants keep failing while down
    expect(log.events()).not.toContain('cluster_lease_regranted');
    expect(log.events()).toContain('cluster_lease_grant_failed');
    store.down = false;
    await vi.advanceTimersByTimeAsync(2100); // within the backoff's cap (the TTL)
    expect(log.events()).toContain('cluster_lease_regranted');
    const second = s.lease.id!;
    expect(second).not.toBe(first);
    const rec = store.keys.get(nodeKey('n1'))!;
    expect(rec.lease).toBe(second);
    expect(JSON.parse(rec.value)).toMatchObject({ started: '2026-01-01T00:00:00.000Z', registered: expect.not.stringMatching(/^2026-01-01T00:00:00/) });
    expect(await gauge()).toBe(1);
    await s.close();
  });

  it('close() leaves the lease to run out (the key stays for a restart); close({ leave: true }) revokes it at once', async () => {
    const s = await join();
    await s.close();
    expect(store.revoked).toEqual([]);
    expect(store.keys.has(nodeKey('n1'))).toBe(true);
    expect(store.closed).toBe(true);
    expect(log.events()).toContain('cluster_paused');
    store.closed = false;
    registry = new Registry();
    const again = await join();
    const id = again.lease.id!;
    await again.close({ leave: true });
    expect(store.revoked).toEqual([id]);
    expect(store.keys.has(nodeKey('n1'))).toBe(false);
    expect(log.events()).toContain('cluster_left');
  });

  it('a restart within the TTL takes the lease over from the lease file; after the lease expired it grants a new one', async () => {
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'shoal-session-')), 'lease.json');
    const first = await join('n1', file);
    const id = first.lease.id!;
    await first.lease.put('endpoints/net/n1/c1/eth0', '{}');
    await first.close();
    registry = new Registry();
    const second = await join('n1', file);
    expect(second.lease.id).toBe(id);
    expect(store.granted).toEqual([id]);
    expect(store.keys.get(nodeKey('n1'))!.lease).toBe(id);
    expect(log.events()).toContain('cluster_joined');
    await second.close();
    // Gone meanwhile (a restart slower than the TTL): a new lease, the record written under it.
    store.expire(id);
    registry = new Registry();
    const third = await join('n1', file);
    expect(third.lease.id).not.toBe(id);
    expect(store.keys.get(nodeKey('n1'))!.lease).toBe(third.lease.id);
    // Another node's file is not taken over.
    await third.close();
    registry = new Registry();
    const other = await join('n2', file);
    expect(other.lease.id).not.toBe(third.lease.id);
    await other.close({ leave: true });
  });

  it('a failed join closes the store and rejects', async () => {
    store.down = true;
    await expect(join()).rejects.toThrow(/no answer within 1000 ms/);
    expect(store.closed).toBe(true);
  });
});
