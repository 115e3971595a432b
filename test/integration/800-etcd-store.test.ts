/**
 * EtcdStore and the cluster lease against a real 3-member etcd cluster (helpers/cluster.ts):
 * four node namespaces on one underlay bridge, etcd members on nodes 0-2, and store clients
 * (helpers/store-agent.ts) as processes inside nodes 0 and 3. What the clients wrote is read
 * back with etcdctl, a path that does not go through the code under test.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster, until, type ClusterNode } from '../helpers/cluster.js';
import { AgentError, StoreAgent, type AgentEvent } from '../helpers/store-agent.js';

interface KV {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
}

const REQUEST_TIMEOUT_MS = 2000;
const LEASE_TTL_S = 2;

let cluster: TestCluster;
/** On node 0, next to etcd member 0. */
let a: StoreAgent;
/** On node 3, which runs no etcd member: cutting it leaves the cluster whole. */
let b: StoreAgent;
let nodeB: ClusterNode;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Keys (and values) under /shoal/v1/ as etcd has them, read with etcdctl. */
function etcdKeys(prefix = '/shoal/v1/'): Map<string, string> {
  const lines = cluster.etcdctl(['get', '--prefix', prefix]).split('\n');
  const out = new Map<string, string>();
  for (let i = 0; i + 1 < lines.length; i += 2) out.set(lines[i]!, lines[i + 1]!);
  return out;
}


async function metric(agent: StoreAgent, op: string, result: string): Promise<number> {
  const text = await agent.call<string>('metrics');
  const m = new RegExp(`^shoal_store_requests_total\\{op="${op}",result="${result}"\\} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

beforeAll(async () => {
  cluster = await TestCluster.create({ nodes: 4, etcdMembers: 3, prefix: 'etst' });
  nodeB = cluster.nodes[3]!;
  [a, b] = await Promise.all([
    StoreAgent.start(cluster, cluster.nodes[0]!, { requestTimeoutMs: REQUEST_TIMEOUT_MS }),
    StoreAgent.start(cluster, nodeB, { requestTimeoutMs: REQUEST_TIMEOUT_MS }),
  ]);
}, 40_000);

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await cluster?.destroy();
}, 30_000);

describe('EtcdStore on a 3-member cluster', () => {
  it('keeps the Store contract: get, put, list, count, delete, revisions, keys under /shoal/v1/', async () => {
    const r0 = await a.call<number>('revision');
    await a.call('put', { key: 'c/a', value: '1' });
    await a.call('put', { key: 'c/b', value: '2' });
    await a.call('put', { key: 'c/c', value: '3' });
    await a.call('put', { key: 'cc', value: 'outside c/' });
    const first = await b.call<KV>('get', { key: 'c/a' });
    expect(first).toMatchObject({ key: 'c/a', value: '1' });
    expect(first.modRevision).toBeGreaterThan(r0);
    expect(first.createRevision).toBe(first.modRevision);
    await a.call('put', { key: 'c/a', value: '1b' });
    const second = await b.call<KV>('get', { key: 'c/a' });
    expect(second.value).toBe('1b');
    expect(second.createRevision).toBe(first.createRevision);
    expect(second.modRevision).toBeGreaterThan(first.modRevision);
    expect(await b.call('get', { key: 'c/none' })).toBeNull();

    // Key order, from/to (inclusive) and limit, as SqliteStore does.
    expect((await b.call<KV[]>('list', { prefix: 'c/' })).map((kv) => kv.key)).toEqual(['c/a', 'c/b', 'c/c']);
    expect((await b.call<KV[]>('list', { prefix: 'c/', options: { from: 'c/b' } })).map((kv) => kv.key)).toEqual(['c/b', 'c/c']);
    expect((await b.call<KV[]>('list', { prefix: 'c/', options: { to: 'c/b' } })).map((kv) => kv.key)).toEqual(['c/a', 'c/b']);
    expect((await b.call<KV[]>('list', { prefix: 'c/', options: { limit: 2 } })).map((kv) => kv.key)).toEqual(['c/a', 'c/b']);
    expect(await b.call('count', { prefix: 'c/' })).toBe(3);
    expect(await b.call('count', { prefix: 'c' })).toBe(4);
    expect(await b.call('count', { prefix: 'c/', options: { from: 'c/b', to: 'c/b' } })).toBe(1);

    // Stored under the prefix, as etcd itself shows.
    const keys = etcdKeys();
    expect(keys.get('/shoal/v1/c/a')).toBe('1b');
    expect(keys.get('/shoal/v1/cc')).toBe('outside c/');

    expect(await b.call('delete', { key: 'c/c' })).toBe(true);
    expect(await b.call('delete', { key: 'c/c' })).toBe(false);
    expect(await a.call('get', { key: 'c/c' })).toBeNull();
    expect(await a.call<number>('revision')).toBeGreaterThan(second.modRevision);
  });

  it('compareAndSwap: absent, mod revision and value expectations', async () => {
    expect(await a.call('cas', { key: 'cas/x', expect: { absent: true }, value: 'v1' })).toBe(true);
    expect(await b.call('cas', { key: 'cas/x', expect: { absent: true }, value: 'lost' })).toBe(false);
    const kv = await b.call<KV>('get', { key: 'cas/x' });
    expect(await b.call('cas', { key: 'cas/x', expect: { modRevision: kv.modRevision - 1 }, value: 'stale' })).toBe(false);
    expect(await b.call('cas', { key: 'cas/x', expect: { modRevision: kv.modRevision }, value: 'v2' })).toBe(true);
    expect(await a.call('cas', { key: 'cas/x', expect: { modRevision: kv.modRevision }, value: 'again' })).toBe(false);
    expect(await a.call('cas', { key: 'cas/x', expect: { value: 'v1' }, value: 'no' })).toBe(false);
    expect(await a.call('cas', { key: 'cas/x', expect: { value: 'v2' }, value: 'v3' })).toBe(true);
    expect(await a.call('cas', { key: 'cas/none', expect: { value: '' }, value: 'no' })).toBe(false);
    expect(await a.call('cas', { key: 'cas/none', expect: { modRevision: 0 }, value: 'no' })).toBe(false);
    expect(etcdKeys('/shoal/v1/cas/')).toEqual(new Map([['/shoal/v1/cas/x', 'v3']]));
  });

  it('transactions are isolated across nodes: 2 clients x 50 concurrent increments give exactly 100', async () => {
    const before = (await metric(a, 'txn', 'conflict')) + (await metric(b, 'txn', 'conflict'));
    await Promise.all([a.call('incr', { key: 'counter', n: 50 }), b.call('incr', { key: 'counter', n: 50 })]);
    expect((await a.call<KV>('get', { key: 'counter' })).value).toBe('100');
    expect(etcdKeys('/shoal/v1/counter').get('/shoal/v1/counter')).toBe('100');
    // The two processes did collide (else this would prove nothing), and every collision retried.
    const conflicts = (await metric(a, 'txn', 'conflict')) + (await metric(b, 'txn', 'conflict')) - before;
    expect(conflicts).toBeGreaterThan(0);
  });

  it('etcd\'s --max-txn-ops (128) bounds one commit: 128 writes commit, 129 are refused clearly; 300 listed keys still commit', async () => {
    await a.call('fill', { prefix: 'big/a', n: 128 });
    await a.call('fill', { prefix: 'big/b', n: 128 });
    await a.call('fill', { prefix: 'big/c', n: 44 });
    expect(etcdKeys('/shoal/v1/big/').size).toBe(300);
    const err = await a.call('fill', { prefix: 'big/x', n: 129 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AgentError);
    expect((err as AgentError).errorName).toBe('StoreError');
    expect((err as AgentError).message).toMatch(/it writes 129 keys; etcd takes at most 128 in one transaction/);
    expect(await a.call('count', { prefix: 'big/x' })).toBe(0);
    // Lists 300 keys (a range compare plus per-key compares as far as they fit), writes one.
    expect(await b.call('countInto', { prefix: 'big/', into: 'big-count' })).toBe(300);
    expect((await a.call<KV>('get', { key: 'big-count' })).value).toBe('300');
  });

  it('a transaction that throws commits nothing, though it read its own write', async () => {
    expect(await a.call('txnThrow', { key: 'txn/thrown' })).toBe('thrown on purpose after reading back written before the throw');
    expect(await b.call('get', { key: 'txn/thrown' })).toBeNull();
  });

  it('watch delivers writes made by another client, with their revisions', async () => {
    const since = b.seen.length;
    await b.call('watch', { id: 'w1' });
    await a.call('put', { key: 'w/one', value: '1' });
    const put = await a.call<KV>('get', { key: 'w/one' });
    const seenPut = await b.waitFor((e) => e.event === 'watch' && e['revision'] === put.modRevision, 3000, since);
    expect(seenPut['watch']).toBe('w1');
    await a.call('delete', { key: 'w/one' });
    const revision = await a.call<number>('revision');
    await b.waitFor((e) => e.event === 'watch' && e['revision'] === revision, 3000, since);
    await b.call('unwatch', { id: 'w1' });
    const lag = await a.call<string>('metrics');
    expect(lag).toMatch(/^shoal_store_watch_lag_seconds_bucket/m);
  });

  it('one member stopped (the one on the client\'s own node): reads, writes and transactions still work', async () => {
    await cluster.stopMember(0);
    try {
      for (const agent of [a, b]) {
        await agent.call('put', { key: `degraded/${agent.node.name}`, value: 'ok' });
        expect((await agent.call<KV>('get', { key: `degraded/${agent.node.name}` })).value).toBe('ok');
        await agent.call('incr', { key: 'degraded/counter', n: 5 });
      }
      expect((await b.call<KV>('get', { key: 'degraded/counter' })).value).toBe('10');
      expect(await a.call('count', { prefix: 'degraded/' })).toBe(3);
    } finally {
      await cluster.startMember(0);
    }
  });

  it('lease: keys go once keep-alive stops and the TTL runs out, not before', async () => {
    const id = await b.call<string>('leaseGrant', { ttl: LEASE_TTL_S });
    await b.call('leasePut', { key: 'nodes/b', value: 'here' });
    expect(etcdKeys('/shoal/v1/nodes/').get('/shoal/v1/nodes/b')).toBe('here');
    // Kept alive past several TTLs.
    await sleep(LEASE_TTL_S * 1000 * 1.5);
    expect(etcdKeys('/shoal/v1/nodes/').has('/shoal/v1/nodes/b')).toBe(true);
    expect(await b.call('leaseTtl', { id })).toBeGreaterThan(0);
    await b.call('leaseRelease');
    const released = Date.now();
    expect(etcdKeys('/shoal/v1/nodes/').has('/shoal/v1/nodes/b')).toBe(true);
    await until('the leased key to expire', () => (etcdKeys('/shoal/v1/nodes/').has('/shoal/v1/nodes/b') ? undefined : true), LEASE_TTL_S * 1000 + 3000);
    expect(Date.now() - released).toBeGreaterThan(LEASE_TTL_S * 1000 - 1000);
    expect(await b.call('leaseTtl', { id })).toBe(-1);
  });

  it('lease: a client cut off the underlay (streams look open) notices the loss, and re-grants and re-puts after healing', async () => {
    const oldId = await b.call<string>('leaseGrant', { ttl: LEASE_TTL_S });
    await b.call('leasePut', { key: 'nodes/b', value: 'back' });
    expect(etcdKeys('/shoal/v1/nodes/').get('/shoal/v1/nodes/b')).toBe('back');
    const since = b.seen.length;
    const cutAt = Date.now();
    cluster.cut(nodeB);
    let lost: AgentEvent;
    try {
      lost = await b.waitFor((e) => e.event === 'lease' && e['type'] === 'lost', LEASE_TTL_S * 1000 + 2000, since);
      // Within the TTL of the cut (the last answered keep-alive was at most TTL/3 before it).
      expect((lost['at'] as number) - cutAt).toBeLessThanOrEqual(LEASE_TTL_S * 1000 + 500);
      expect(lost['reason']).toBe('expired');
      expect(lost['leaseId']).toBe(oldId);
      expect(await b.call('leaseState')).toMatchObject({ state: 'lost' });
      // etcd, on the other side of the cut, expires the lease and its key too.
      await until('etcd to expire the cut client\'s key', () => (etcdKeys('/shoal/v1/nodes/').has('/shoal/v1/nodes/b') ? undefined : true), LEASE_TTL_S * 1000 + 3000);
      // While cut, a grant fails with a clear, bounded error.
      const started = Date.now();
      const err = await b.call('leaseGrant', { ttl: LEASE_TTL_S }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AgentError);
      expect((err as AgentError).code).toBe('ESTOREUNAVAILABLE');
      expect(Date.now() - started).toBeLessThan(REQUEST_TIMEOUT_MS + 1500);
    } finally {
      cluster.heal(nodeB);
    }
    const newId = await until('a new lease after healing', () => b.call<string>('leaseGrant', { ttl: LEASE_TTL_S }), 10_000, 200);
    expect(newId).not.toBe(oldId);
    expect(etcdKeys('/shoal/v1/nodes/').get('/shoal/v1/nodes/b')).toBe('back');
    await b.waitFor((e) => e.event === 'lease' && e['type'] === 'granted' && e['leaseId'] === newId, 1000, since);
    // Kept alive again.
    await sleep(LEASE_TTL_S * 1000);
    expect(await b.call('leaseState')).toMatchObject({ state: 'alive', id: newId });
    expect(etcdKeys('/shoal/v1/nodes/').has('/shoal/v1/nodes/b')).toBe(true);
    await b.call('leaseRevoke');
    expect(etcdKeys('/shoal/v1/nodes/').has('/shoal/v1/nodes/b')).toBe(false);
  });

  it('quorum lost: requests fail with StoreUnavailableError naming the endpoints, within the timeout; they work again once it is back', async () => {
    await cluster.stopMember(1);
    await cluster.stopMember(2);
    try {
      for (const call of [() => a.call('get', { key: 'counter' }), () => a.call('put', { key: 'q', value: 'x' }), () => b.call('incr', { key: 'counter', n: 1 })]) {
        const started = Date.now();
        const err = await call().catch((e: unknown) => e);
        const took = Date.now() - started;
        expect(err).toBeInstanceOf(AgentError);
        expect((err as AgentError).errorName).toBe('StoreUnavailableError');
        expect((err as AgentError).message).toContain(cluster.endpoints.join(','));
        expect(took).toBeLessThan(REQUEST_TIMEOUT_MS + 1000);
      }
    } finally {
      await cluster.startMember(1, false);
      await cluster.startMember(2);
    }
    await until('a write after quorum is back', () => a.call('put', { key: 'q', value: 'back' }).then(() => true), 10_000, 200);
    expect((await b.call<KV>('get', { key: 'q' })).value).toBe('back');
    expect((await b.call<KV>('get', { key: 'counter' })).value).toBe('100');
  });
});
