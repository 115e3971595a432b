/**
 * The daemon's cluster session (`shoal daemon --store etcd://...`, DESIGN.md §7): the etcd
 * store, the node lease with `nodes/<name>` under it, and a watch that keeps the count of
 * registered nodes for `shoal_cluster_nodes{state}`. Daemon only (DESIGN.md §4.12).
 *
 * A lost lease (a cut longer than the TTL, etcd expired or revoked it) is logged
 * (`cluster_lease_lost`) and granted again with a growing backoff (250 ms doubling, capped at the
 * TTL), which writes `nodes/<name>` again (`cluster_lease_regranted`). `close()` stops keeping
 * the lease alive and keeps its id in `leaseFile`: a daemon restarted within the TTL takes the
 * lease over, so nothing the node published disappears; otherwise etcd expires it and the node
 * goes within the TTL, as a node that dies does. `close({ leave: true })` revokes it at once.
 */
import dgram from 'node:dgram';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { Gauge, type Registry } from 'prom-client';
import { EtcdStore, type EtcdStoreOptions, type EtcdWatchOptions, type LeaseBackend, type WatchHandle } from '../store/etcd.js';
import type { KeyValue } from '../store/store.js';
import { Lease, type LeaseLostError } from './lease.js';

export const NODES_PREFIX = 'nodes/';

/** The value of `nodes/<name>`. */
export interface NodeRecord {
  name: string;
  /** Underlay address other nodes reach this one at (`--advertise-addr`). */
  address: string;
  /** When the daemon started (ISO 8601). */
  started: string;
  /** When the current lease was granted and the record written (ISO 8601). */
  registered?: string;
  version: string;
}

/** One row of `GET /v1/nodes` / `shoal node ls`. */
export interface NodeInfo extends NodeRecord {
  /** `ready`: the node's lease holds its key. (A node whose lease ran out has no key at all.) */
  state: 'ready';
  /** Seconds since the current lease was granted (`registered`, else `started`). */
  leaseAgeSeconds: number;
  /** Whether this is the answering daemon's own node. */
  self: boolean;
}

export interface ClusterSessionOptions {
  endpoints: string[];
  node: string;
  advertiseAddr: string;
  nodeTtlSeconds: number;
  version: string;
  registry: Registry;
  logger: Logger;
  /**
   * Where the node lease's id is kept between daemon runs. A restart within the TTL takes the
   * lease over (Lease.adopt): the node's keys, its endpoints among them, never disappear, so
   * other nodes keep their paths to its containers through the restart.
   */
  leaseFile?: string;
}

export function nodeKey(name: string): string {
  return `${NODES_PREFIX}${encodeURIComponent(name)}`;
}

/**
 * The source address of the default route: the address the kernel picks for a destination only
 * the default route covers (a UDP connect sends nothing). Undefined without a default route.
 */
export async function defaultRouteSource(): Promise<string | undefined> {
  // TEST-NET addresses (RFC 5737 / RFC 3849): never on a real link, so only a default route leads there.
  for (const [type, dest] of [['udp4', '192.0.2.1'], ['udp6', '2001:db8::1']] as const) {
    const sock = dgram.createSocket(type);
    try {
      const address = await new Promise<string | undefined>((resolve) => {
        sock.once('error', () => resolve(undefined));
        sock.connect(9, dest, () => resolve(sock.address().address));
      });
      if (address && address !== '0.0.0.0' && address !== '::') return address;
    } catch {
      // no route
    } finally {
      sock.close();
    }
  }
  return undefined;
}

/** What the session needs of the cluster store (EtcdStore; unit tests fake it). */
export interface ClusterStore extends LeaseBackend {
  watch(onChange: (revision: number) => void, options?: EtcdWatchOptions): WatchHandle;
  list(prefix: string): Promise<KeyValue[]>;
  count(prefix: string): Promise<number>;
  close(): void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class ClusterSession {
  readonly store: ClusterStore;
  readonly lease: Lease;
  private readonly opts: ClusterSessionOptions;
  private readonly started = new Date().toISOString();
  private stopWatch: (() => void) | undefined;
  private closed = false;
  private regranting: Promise<void> | undefined;
  private counting: Promise<void> | undefined;
  private countAgain = false;
  private readyCount = 0;
  private readonly changeListeners = new Set<() => void>();

  private constructor(store: ClusterStore, opts: ClusterSessionOptions) {
    this.store = store;
    this.opts = opts;
    this.lease = new Lease(store, { ttlSeconds: opts.nodeTtlSeconds });
    const gauge: Gauge<'state'> = new Gauge({
      name: 'shoal_cluster_nodes',
      help: 'Nodes registered in the cluster (nodes/ keys under live leases), by state',
      labelNames: ['state'],
      registers: [opts.registry],
      collect: (): void => gauge.set({ state: 'ready' }, this.readyCount),
    });
    this.lease.on('lost', (err) => this.onLost(err));
    this.lease.on('keepalive', (ttl) => opts.logger.trace({ event: 'cluster_keepalive', ttl }, 'keepalive'));
    this.lease.on('keepaliveFailed', (err) => opts.logger.debug({ event: 'cluster_keepalive_failed', err: err.message }, 'a node lease keep-alive failed'));
  }

  /** Connects, grants the node lease and registers `nodes/<name>`, starts the nodes watch. */
  static async join(opts: ClusterSessionOptions, connect: (o: EtcdStoreOptions) => Promise<ClusterStore> = (o) => EtcdStore.connect(o)): Promise<ClusterSession> {
    // Requests are bounded by the TTL too (1-5 s): a grant that hangs through a cut is tried
    // again soon after the network is back, not a 5 s timeout later.
    const store = await connect({
      endpoints: opts.endpoints,
      registry: opts.registry,
      requestTimeoutMs: Math.min(5000, Math.max(1000, opts.nodeTtlSeconds * 1000)),
    });
    const session = new ClusterSession(store, opts);
    try {
      session.setRecord();
      const kept = session.readLeaseFile();
      const adopted = kept !== undefined && (await session.lease.adopt(kept));
      const id = adopted ? kept : await session.lease.grant();
      session.lease.on('granted', (granted) => session.writeLeaseFile(granted));
      session.writeLeaseFile(id);
      const watch = store.watch(() => session.changed(), {
        onError: (err) => opts.logger.warn({ event: 'cluster_watch_error', err: err.message }, 'the cluster watch failed; retrying'),
      });
      session.stopWatch = watch;
      await watch.ready;
      await session.recount();
      opts.logger.info(
        { event: 'cluster_joined', node: opts.node, address: opts.advertiseAddr, lease: id, adopted, ttlSeconds: opts.nodeTtlSeconds, store: store.name },
        `joined the cluster as "${opts.node}"`,
      );
      return session;
    } catch (err) {
      session.closed = true;
      session.lease.release();
      store.close();
      throw err;
    }
  }

  get node(): string {
    return this.opts.node;
  }

  /** Calls `listener` after every change etcd reports under the cluster's prefix. */
  onChange(listener: () => void): void {
    this.changeListeners.add(listener);
  }

  private changed(): void {
    void this.recount();
    for (const l of this.changeListeners) l();
  }

  /** The lease id a previous run of this node's daemon left, if any. */
  private readLeaseFile(): string | undefined {
    if (!this.opts.leaseFile) return undefined;
    try {
      const doc = JSON.parse(readFileSync(this.opts.leaseFile, 'utf8')) as { node?: unknown; lease?: unknown };
      return doc.node === this.opts.node && typeof doc.lease === 'string' ? doc.lease : undefined;
    } catch {
      return undefined;
    }
  }

  private writeLeaseFile(id: string): void {
    if (!this.opts.leaseFile) return;
    try {
      const tmp = `${this.opts.leaseFile}.tmp-${process.pid}`;
      writeFileSync(tmp, JSON.stringify({ node: this.opts.node, lease: id }) + '\n', { mode: 0o600 });
      renameSync(tmp, this.opts.leaseFile);
    } catch (err) {
      this.opts.logger.warn({ event: 'cluster_lease_file_failed', err: (err as Error).message }, `could not keep the node lease id (a restart will register under a new lease): ${(err as Error).message}`);
    }
  }

  /** Puts the node's record into the lease's keys (written by the next grant; now, if alive). */
  private setRecord(): void {
    const record: NodeRecord = {
      name: this.opts.node,
      address: this.opts.advertiseAddr,
      started: this.started,
      registered: new Date().toISOString(),
      version: this.opts.version,
    };
    // Without a live lease, put rejects but remembers the value for the next grant.
    this.lease.put(nodeKey(this.opts.node), JSON.stringify(record)).catch(() => undefined);
  }

  private onLost(err: LeaseLostError): void {
    if (this.closed) return;
    this.opts.logger.warn(
      { event: 'cluster_lease_lost', node: this.opts.node, lease: err.leaseId, reason: err.reason, err: err.message },
      `lost the node lease: ${err.message}`,
    );
    this.regranting ??= this.regrant().finally(() => (this.regranting = undefined));
  }

  private async regrant(): Promise<void> {
    const cap = Math.max(1000, this.opts.nodeTtlSeconds * 1000);
    for (let delay = 250, attempt = 1; !this.closed; delay = Math.min(delay * 2, cap), attempt++) {
      await sleep(delay);
      if (this.closed) return;
      try {
        this.setRecord();
        const id = await this.lease.grant();
        if (this.closed) {
          await this.lease.revoke().catch(() => undefined);
          return;
        }
        this.opts.logger.info({ event: 'cluster_lease_regranted', node: this.opts.node, lease: id, attempt }, `registered "${this.opts.node}" again under a new lease`);
        void this.recount();
        return;
      } catch (err) {
        this.opts.logger.debug({ event: 'cluster_lease_grant_failed', attempt, err: (err as Error).message }, 'granting the node lease failed; retrying');
      }
    }
  }

  /** Re-reads `nodes/` for the gauge; runs coalesced (one more after the one in progress). */
  private recount(): Promise<void> {
    if (this.counting) {
      this.countAgain = true;
      return this.counting;
    }
    const run = async (): Promise<void> => {
      do {
        this.countAgain = false;
        try {
          this.readyCount = await this.store.count(NODES_PREFIX);
        } catch (err) {
          this.opts.logger.debug({ event: 'cluster_nodes_count_failed', err: (err as Error).message }, 'could not count the cluster nodes');
        }
      } while (this.countAgain && !this.closed);
    };
    this.counting = run().finally(() => (this.counting = undefined));
    return this.counting;
  }

  /** The cluster's nodes as etcd has them now (a key present under its lease = ready). */
  async nodes(): Promise<NodeInfo[]> {
    const now = Date.now();
    const kvs = await this.store.list(NODES_PREFIX);
    const out: NodeInfo[] = [];
    for (const kv of kvs) {
      let rec: Partial<NodeRecord>;
      try {
        rec = JSON.parse(kv.value) as Partial<NodeRecord>;
      } catch {
        rec = {};
      }
      const name = rec.name ?? decodeURIComponent(kv.key.slice(NODES_PREFIX.length));
      const since = Date.parse(rec.registered ?? rec.started ?? '');
      out.push({
        name,
        address: rec.address ?? '',
        started: rec.started ?? '',
        ...(rec.registered ? { registered: rec.registered } : {}),
        version: rec.version ?? '',
        state: 'ready',
        leaseAgeSeconds: Number.isFinite(since) ? Math.max(0, Math.round((now - since) / 1000)) : 0,
        self: name === this.opts.node,
      });
    }
    this.readyCount = kvs.length;
    return out;
  }

  status(): Record<string, unknown> {
    return { node: this.opts.node, address: this.opts.advertiseAddr, store: this.store.name, lease: { id: this.lease.id ?? null, state: this.lease.state, ttlSeconds: this.opts.nodeTtlSeconds } };
  }

  /**
   * Stops the session. By default the lease is left to run out (within the TTL): a daemon
   * restarted before then takes it over and nothing it published disappears. `leave` revokes it,
   * so the node and its endpoints go at once.
   */
  async close(options: { leave?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopWatch?.();
    try {
      if (options.leave && this.lease.state === 'alive') {
        await this.lease.revoke();
        this.opts.logger.info({ event: 'cluster_left', node: this.opts.node }, `left the cluster: revoked the lease of "${this.opts.node}"`);
      } else {
        this.lease.release();
        this.opts.logger.info({ event: 'cluster_paused', node: this.opts.node, lease: this.lease.id ?? null, ttlSeconds: this.opts.nodeTtlSeconds }, `stopped keeping the node lease: a restart within ${this.opts.nodeTtlSeconds} s takes it over, else the node leaves`);
      }
    } catch (err) {
      this.opts.logger.warn({ event: 'cluster_leave_failed', err: (err as Error).message }, `could not revoke the node lease (etcd drops it within its TTL): ${(err as Error).message}`);
    } finally {
      // A grant in flight gives up with the store closing; wait for it only briefly.
      if (this.regranting) await Promise.race([this.regranting.catch(() => undefined), sleep(1000)]);
      this.store.close();
    }
  }
}
