/**
 * The child side of helpers/store-agent.ts: a process inside a cluster node's namespace that
 * opens an EtcdStore (and a Lease) and runs the commands its parent sends, one JSON object per
 * line on stdin; answers and events go back the same way on stdout. Bundled by esbuild at test
 * time (packages stay external, found through NODE_PATH).
 */
import { createInterface } from 'node:readline';
import { Registry } from 'prom-client';
import { Lease } from '../../src/cluster/lease.js';
import { EtcdStore, type WatchHandle } from '../../src/store/etcd.js';
import type { CasExpectation, ListOptions } from '../../src/store/store.js';

type Args = Record<string, unknown>;

const registry = new Registry();
let store: EtcdStore | undefined;
let lease: Lease | undefined;
const watches = new Map<string, WatchHandle>();

function send(message: object): void {
  process.stdout.write(JSON.stringify(message) + '\n');
}

function open(): EtcdStore {
  if (!store) throw new Error('agent: open first');
  return store;
}

const handlers: Record<string, (a: Args) => Promise<unknown> | unknown> = {
  open: (a) => {
    store = new EtcdStore({
      endpoints: a['endpoints'] as string[],
      requestTimeoutMs: a['requestTimeoutMs'] as number | undefined,
      prefix: a['prefix'] as string | undefined,
      registry,
    });
    return { name: store.name };
  },
  get: (a) => open().get(a['key'] as string),
  put: (a) => open().put(a['key'] as string, a['value'] as string),
  delete: (a) => open().delete(a['key'] as string),
  list: (a) => open().list(a['prefix'] as string, a['options'] as ListOptions | undefined),
  count: (a) => open().count(a['prefix'] as string, a['options'] as ListOptions | undefined),
  cas: (a) => open().compareAndSwap(a['key'] as string, a['expect'] as CasExpectation, a['value'] as string),
  revision: () => open().revision(),
  /** `n` concurrent read-increment-write transactions on one key. */
  incr: async (a) => {
    const key = a['key'] as string;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: a['n'] as number }, () =>
        open().transaction(async (txn) => {
          const seen = await txn.get(key);
          await txn.put(key, String(Number(seen?.value ?? 0) + 1));
        }),
      ),
    );
    return { ms: performance.now() - started };
  },
  /** A transaction that lists a prefix and writes its count under `into` (write skew check). */
  countInto: (a) =>
    open().transaction(async (txn) => {
      const n = await txn.count(a['prefix'] as string);
      await txn.put(a['into'] as string, String(n));
      return n;
    }),
  /** One transaction putting `n` keys `<prefix><i>`. */
  fill: (a) =>
    open().transaction(async (txn) => {
      for (let i = 0; i < (a['n'] as number); i++) await txn.put(`${a['prefix'] as string}${String(i).padStart(4, '0')}`, String(i));
    }),
  /** A transaction that writes `key` and then throws: nothing may be committed. */
  txnThrow: async (a) => {
    try {
      await open().transaction(async (txn) => {
        await txn.put(a['key'] as string, 'written before the throw');
        const seen = await txn.get(a['key'] as string);
        throw new Error(`thrown on purpose after reading back ${seen?.value}`);
      });
    } catch (err) {
      return (err as Error).message;
    }
    return 'no throw';
  },
  watch: async (a) => {
    const id = a['id'] as string;
    const handle = open().watch((revision) => send({ event: 'watch', watch: id, revision }), {
      onError: (err) => send({ event: 'watchError', watch: id, message: err.message }),
    });
    watches.set(id, handle);
    return handle.ready;
  },
  unwatch: (a) => {
    watches.get(a['id'] as string)?.();
    watches.delete(a['id'] as string);
  },
  leaseGrant: (a) => {
    if (!lease) {
      lease = new Lease(open(), { ttlSeconds: a['ttl'] as number });
      const l = lease;
      l.on('granted', (id) => send({ event: 'lease', type: 'granted', leaseId: id, at: Date.now() }));
      l.on('lost', (err) => send({ event: 'lease', type: 'lost', reason: err.reason, message: err.message, leaseId: err.leaseId, at: Date.now() }));
      l.on('keepalive', (ttl) => send({ event: 'lease', type: 'keepalive', ttl, at: Date.now() }));
      l.on('keepaliveFailed', (err) => send({ event: 'lease', type: 'keepaliveFailed', message: err.message, at: Date.now() }));
    }
    return lease.grant();
  },
  leasePut: (a) => lease!.put(a['key'] as string, a['value'] as string),
  leaseRelease: () => lease!.release(),
  leaseRevoke: () => lease!.revoke(),
  leaseState: () => ({ state: lease?.state, id: lease?.id, expiresAt: lease?.expiresAt, now: Date.now() }),
  leaseTtl: (a) => open().leaseTimeToLive(a['id'] as string, 2000),
  metrics: () => registry.metrics(),
  close: () => {
    lease?.release();
    store?.close();
    setImmediate(() => process.exit(0));
  },
};

createInterface({ input: process.stdin }).on('line', (line) => {
  const { id, op, args } = JSON.parse(line) as { id: number; op: string; args?: Args };
  void (async () => {
    try {
      const handler = handlers[op];
      if (!handler) throw new Error(`agent: unknown op ${op}`);
      const result = await handler(args ?? {});
      send({ id, ok: true, result: result ?? null });
    } catch (err) {
      const e = err as Error & { code?: string };
      send({ id, ok: false, error: { name: e.name, code: e.code, message: e.message } });
    }
  })();
});
process.stdin.on('end', () => process.exit(0));
send({ event: 'ready', pid: process.pid });
