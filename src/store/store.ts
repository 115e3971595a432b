/**
 * The state store every part of Shoal uses for durable state (DESIGN.md §4.5).
 *
 * The interface is asynchronous and revision-based on purpose: the embedded SQLite store answers
 * synchronously under the hood, but the etcd store (etcd.ts, the daemon's) fits the same shape, so
 * everything here maps one to one onto etcd's KV API — keys are strings sorted bytewise, every
 * committed write bumps one global revision, each key remembers the revision it was last
 * modified at, and a transaction is a callback that may be re-run (etcd STM retries on conflict),
 * so it must not have side effects outside the `Txn` it is given.
 */

export interface KeyValue {
  key: string;
  value: string;
  /** Global revision of the write that created the key (etcd `create_revision`). */
  createRevision: number;
  /** Global revision of the write that last modified the key (etcd `mod_revision`). */
  modRevision: number;
}

export interface ListOptions {
  /** Inclusive lower bound inside the prefix (a full key). Defaults to the prefix itself. */
  from?: string;
  /** Inclusive upper bound inside the prefix (a full key). Defaults to the end of the prefix. */
  to?: string;
  /** At most this many entries, in key order. */
  limit?: number;
  /**
   * Only keys written at or after this revision (etcd `min_mod_revision`): a reader that keeps
   * what it read fetches only what changed since (the daemon's registry at 100,000 records).
   */
  minModRevision?: number;
  /** The values may be left empty (etcd `keys_only`): for a reader that needs the keys alone. */
  keysOnly?: boolean;
}

/** What a compare-and-swap expects the current state of the key to be. */
export type CasExpectation =
  /** The key must not exist. */
  | { absent: true }
  /** The key must exist with exactly this mod revision. */
  | { modRevision: number }
  /** The key must exist with exactly this value. */
  | { value: string };

/** Operations available inside a transaction; reads see the transaction's own writes. */
export interface Txn {
  get(key: string): Promise<KeyValue | undefined>;
  list(prefix: string, options?: ListOptions): Promise<KeyValue[]>;
  count(prefix: string, options?: Omit<ListOptions, 'limit'>): Promise<number>;
  put(key: string, value: string): Promise<void>;
  /** Resolves to whether the key existed. */
  delete(key: string): Promise<boolean>;
}

export interface Store extends Txn {
  /** Writes `value` only when the key matches `expect`; resolves to whether it did. */
  compareAndSwap(key: string, expect: CasExpectation, value: string): Promise<boolean>;
  /**
   * Runs `fn` atomically and in isolation from every other writer (other processes included).
   * `fn` may run more than once on stores with optimistic concurrency; keep it free of outside
   * side effects. A throw rolls everything back and rejects with the thrown error.
   */
  transaction<T>(fn: (txn: Txn) => Promise<T>): Promise<T>;
  /** The global revision: it grows with every committed write, so a changed value means "reload". */
  revision(): Promise<number>;
  /**
   * Calls `onChange` (with the new revision) after writes by anyone, this process or another.
   * Local stores poll the revision, the etcd store watches; returns a function that stops watching.
   */
  watch(onChange: (revision: number) => void, options?: { intervalMs?: number }): () => void;
  close(): void;
}

/** The smallest string greater than every key starting with `prefix` (etcd's "range end"). */
export function prefixEnd(prefix: string): string {
  // Keys are compared as UTF-8 bytes by SQLite (BINARY collation) and etcd alike. U+FFFF sorts
  // after every character our keys use (ASCII after encoding), so it closes the range safely.
  return prefix + '\uffff';
}
