/**
 * One attempt of EtcdStore's optimistic transaction, and the key/range arithmetic it needs
 * (pure; exported for the unit tests). See etcd.ts for how attempts are run and retried.
 */
import type { IKeyValue, IRangeRequest, IRangeResponse, IRequestOp, ITxnRequest, ICompare } from 'etcd3';
import { CompareResult, CompareTarget } from 'etcd3';
import { StoreError } from './errors.js';
import type { KeyValue, ListOptions, Txn } from './store.js';

// ---- keys and ranges (pure; exported for the unit tests) ----------------------------------------

/** The smallest key greater than every key starting with `prefix` (etcd's prefix range end). */
export function prefixRangeEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1;
      return end.subarray(0, i + 1);
    }
  }
  // All 0xff (or empty): every key from `prefix` on.
  return Buffer.from([0]);
}

/**
 * The etcd range `[start, end)` that `list(prefix, {from, to})` covers, under `namespace`:
 * keys starting with `prefix`, at or after `from`, at or before `to` (both full keys), or
 * undefined when that is empty.
 */
export function listRange(namespace: string, prefix: string, options: Pick<ListOptions, 'from' | 'to'> = {}): { start: Buffer; end: Buffer } | undefined {
  const p = Buffer.from(namespace + prefix);
  let start = p;
  if (options.from !== undefined) {
    const from = Buffer.from(namespace + options.from);
    if (Buffer.compare(from, start) > 0) start = from;
  }
  let end = prefixRangeEnd(p);
  if (options.to !== undefined) {
    // `to` is inclusive: the first key after it is `to` + NUL.
    const after = Buffer.concat([Buffer.from(namespace + options.to), Buffer.from([0])]);
    if (Buffer.compare(after, end) < 0) end = after;
  }
  return Buffer.compare(start, end) < 0 ? { start, end } : undefined;
}

export function inRange(key: Buffer, r: { start: Buffer; end: Buffer }): boolean {
  return Buffer.compare(key, r.start) >= 0 && Buffer.compare(key, r.end) < 0;
}

export function toKeyValue(kv: IKeyValue, namespace: string): KeyValue {
  return {
    key: kv.key.toString('utf8').slice(namespace.length),
    value: kv.value.toString('utf8'),
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
  };
}

export function tooManyWrites(name: string, writes: number, max: number): StoreError {
  return new StoreError('commit a transaction on', name, `it writes ${writes} keys; etcd takes at most ${max} in one transaction (--max-txn-ops)`);
}

// ---- one transaction attempt --------------------------------------------------------------------

/**
 * The `Txn` one attempt of `transaction` hands to `fn`: snapshot reads at the revision of the
 * attempt's first read, buffered writes, and the read set the commit compares.
 */
export class TxnAttempt implements Txn {
  /** The snapshot revision, once the first read has answered. */
  private snapshot: Promise<number> | undefined;
  /** Keys read by `get` (full key, latin1 of its bytes) and the mod revision seen (0: absent). */
  private readonly reads = new Map<string, number>();
  /** Keys seen by `list`/`count`, and their mod revisions. */
  private readonly rangeReads = new Map<string, number>();
  private readonly ranges: { start: Buffer; end: Buffer }[] = [];
  /** Buffered writes in order: a value, or null for a delete. */
  private readonly writes = new Map<string, string | null>();
  private snapshotRevision = 0;

  constructor(
    private readonly namespace: string,
    private readonly rangeCall: (req: IRangeRequest) => Promise<IRangeResponse>,
  ) {}

  private async read(req: IRangeRequest): Promise<IRangeResponse> {
    if (!this.snapshot) {
      const first = this.rangeCall(req);
      this.snapshot = first.then((res) => (this.snapshotRevision = Number(res.header.revision)));
      // The caller hears of a failed first read from `first`; later reads, if any, from this.
      this.snapshot.catch(() => undefined);
      return first;
    }
    const revision = await this.snapshot;
    return this.rangeCall({ ...req, revision });
  }

  private id(key: Buffer): string {
    return key.toString('latin1');
  }

  private full(key: string): Buffer {
    return Buffer.from(this.namespace + key);
  }

  async get(key: string): Promise<KeyValue | undefined> {
    const k = this.full(key);
    const id = this.id(k);
    if (this.writes.has(id)) {
      const value = this.writes.get(id);
      // Not committed yet: its revisions are not known (0).
      return value === null || value === undefined ? undefined : { key, value, createRevision: 0, modRevision: 0 };
    }
    const res = await this.read({ key: k });
    const kv = res.kvs[0];
    this.reads.set(id, kv ? Number(kv.mod_revision) : 0);
    return kv && toKeyValue(kv, this.namespace);
  }

  /** Snapshot keys of the range merged with this attempt's own writes, in key order. */
  private async merged(r: { start: Buffer; end: Buffer }, limit: number | undefined, keysOnly: boolean): Promise<KeyValue[]> {
    const buffered = [...this.writes].filter(([id]) => inRange(Buffer.from(id, 'latin1'), r));
    const deletes = buffered.filter(([, v]) => v === null).length;
    const res = await this.read({ key: r.start, range_end: r.end, limit: limit === undefined ? 0 : limit + deletes, keys_only: keysOnly });
    const byId = new Map<string, KeyValue>();
    for (const kv of res.kvs) {
      const id = this.id(kv.key);
      this.rangeReads.set(id, Number(kv.mod_revision));
      byId.set(id, toKeyValue(kv, this.namespace));
    }
    // What was not fetched (past a limit) is not compared: only the part of the range read.
    const last = res.kvs.at(-1)?.key;
    this.ranges.push(res.more && last ? { start: r.start, end: Buffer.concat([last, Buffer.from([0])]) } : r);
    for (const [id, value] of buffered) {
      if (value === null) byId.delete(id);
      else {
        const existing = byId.get(id);
        byId.set(id, { key: Buffer.from(id, 'latin1').toString('utf8').slice(this.namespace.length), value, createRevision: existing?.createRevision ?? 0, modRevision: 0 });
      }
    }
    const out = [...byId.entries()].sort(([a], [b]) => Buffer.compare(Buffer.from(a, 'latin1'), Buffer.from(b, 'latin1'))).map(([, kv]) => kv);
    return limit === undefined || limit <= 0 ? out : out.slice(0, limit);
  }

  async list(prefix: string, options: ListOptions = {}): Promise<KeyValue[]> {
    const r = listRange(this.namespace, prefix, options);
    if (!r) return [];
    const all = await this.merged(r, options.limit, false);
    // Filtered here, not by etcd: the attempt compares every key of the range it read.
    const min = options.minModRevision;
    return min === undefined ? all : all.filter((kv) => kv.modRevision === 0 || kv.modRevision >= min);
  }

  async count(prefix: string, options: Omit<ListOptions, 'limit'> = {}): Promise<number> {
    const r = listRange(this.namespace, prefix, options);
    if (!r) return 0;
    return (await this.merged(r, undefined, true)).length;
  }

  async put(key: string, value: string): Promise<void> {
    const id = this.id(this.full(key));
    this.writes.delete(id); // keep the latest write last
    this.writes.set(id, value);
  }

  async delete(key: string): Promise<boolean> {
    const existed = (await this.get(key)) !== undefined;
    const id = this.id(this.full(key));
    this.writes.delete(id);
    this.writes.set(id, null);
    return existed;
  }

  /**
   * The commit as one etcd Txn, or undefined for an attempt that wrote nothing. etcd takes at
   * most `--max-txn-ops` compares and as many operations in one Txn (nested Txns share that
   * budget), so: more writes than that is an error; the compares for keys read by `get` and for
   * listed ranges always go in; the per-key compares for keys seen in listed ranges (which catch
   * deletions there) go in as far as they fit. A transaction that listed more keys than fit
   * still sees keys created or modified in its ranges, but not every key deleted from them.
   */
  commitRequest(maxTxnOps: number, name = 'etcd'): ITxnRequest | undefined {
    if (this.writes.size === 0) return undefined;
    if (this.writes.size > maxTxnOps) throw tooManyWrites(name, this.writes.size, maxTxnOps);
    const compares: ICompare[] = [];
    const mod = (id: string, revision: number): ICompare => ({ key: Buffer.from(id, 'latin1'), target: CompareTarget.Mod, result: CompareResult.Equal, mod_revision: revision });
    for (const [id, revision] of this.reads) compares.push(mod(id, revision));
    // Nothing in a listed range created or modified after the snapshot.
    for (const r of this.ranges) {
      compares.push({ key: r.start, range_end: r.end, target: CompareTarget.Mod, result: CompareResult.Less, mod_revision: this.snapshotRevision + 1 });
    }
    if (compares.length > maxTxnOps) {
      throw new StoreError('commit a transaction on', name, `it read ${compares.length} keys and ranges; etcd compares at most ${maxTxnOps} in one transaction (--max-txn-ops)`);
    }
    // Keys seen in ranges: a deleted one compares as mod revision 0 and fails.
    for (const [id, revision] of this.rangeReads) {
      if (compares.length >= maxTxnOps) break;
      if (!this.reads.has(id)) compares.push(mod(id, revision));
    }
    const success: IRequestOp[] = [...this.writes].map(([id, value]) =>
      value === null ? { request_delete_range: { key: Buffer.from(id, 'latin1') } } : { request_put: { key: Buffer.from(id, 'latin1'), value: Buffer.from(value) } },
    );
    return { compare: compares, success, failure: [] };
  }
}
