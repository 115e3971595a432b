import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { StoreBusyError, StoreError, StoreSchemaError } from './errors.js';
import { migrate, pragmaValue, SCHEMA_VERSION } from './schema.js';
import { prefixEnd } from './store.js';
import type { CasExpectation, KeyValue, ListOptions, Store, Txn } from './store.js';

export interface SqliteStoreOptions {
  /** How long a writer waits for another process's write lock before giving up. */
  busyTimeoutMs?: number;
  /**
   * Leave the checkpoint after a write to `runDeferredCheckpoint()` instead of running it inside
   * the commit. Only for a process that stays up and calls it (the daemon's CNI workers, after
   * answering): a plugin process leaves through _exit and would never run it.
   */
  deferCheckpoint?: boolean;
}

const DEFAULT_BUSY_TIMEOUT_MS = 10_000;
export const WAL_AUTOCHECKPOINT_PAGES = 64;

// SQLite's primary result codes; node:sqlite reports the extended code in `errcode`.
const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;

interface Row {
  key: string;
  value: string;
  create_revision: number;
  mod_revision: number;
}

function toKeyValue(row: Row): KeyValue {
  return { key: row.key, value: row.value, createRevision: row.create_revision, modRevision: row.mod_revision };
}

function isBusy(err: unknown): boolean {
  const code = (err as { errcode?: unknown } | null)?.errcode;
  if (typeof code !== 'number') return false;
  // The low byte is the primary code: SQLITE_BUSY_SNAPSHOT (517) is a kind of SQLITE_BUSY.
  return (code & 0xff) === SQLITE_BUSY || (code & 0xff) === SQLITE_LOCKED;
}


/**
 * The embedded store: one SQLite file, WAL mode (readers never block the writer), and every
 * write inside `BEGIN IMMEDIATE`, which takes the database's single write lock up front. That
 * lock is what makes concurrent CNI processes safe: an allocation reads and writes under it, so
 * two processes can never both see an address as free. A process killed mid-transaction leaves
 * an uncommitted WAL tail that SQLite discards on the next open.
 */
export class SqliteStore implements Store {
  readonly file: string;
  private readonly db: DatabaseSync;
  private readonly busyTimeoutMs: number;
  /** Serialises this process's transactions: they share one connection. */
  private queue: Promise<unknown> = Promise.resolve();
  /** The revision the open transaction writes at, once it has written anything. */
  private txnRevision: number | undefined;
  private readonly statements = new Map<string, StatementSync>();
  private readonly deferCheckpoint: boolean;
  /** A write committed since the last checkpoint (deferCheckpoint only). */
  private checkpointPending = false;

  constructor(file: string, options: SqliteStoreOptions = {}) {
    this.file = file;
    this.busyTimeoutMs = options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
    this.deferCheckpoint = options.deferCheckpoint ?? false;
    try {
      mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
      // Node's built-in SQLite (node:sqlite): no addon to load or compile. Measured against
      // better-sqlite3 for a plugin's open + one allocation transaction (bench/sqlite.mjs).
      this.db = new DatabaseSync(file, { timeout: this.busyTimeoutMs });
    } catch (err) {
      throw new StoreError('open', file, err);
    }
    try {
      this.configure();
    } catch (err) {
      this.db.close();
      if (err instanceof StoreSchemaError) throw err;
      if (isBusy(err)) throw new StoreBusyError(file, this.busyTimeoutMs, err);
      throw new StoreError('open', file, err);
    }
  }

  private configure(): void {
    // journal_mode=WAL is persistent in the file, so only the first opener pays for switching;
    // everyone else just reads it. The switch itself can report BUSY without consulting the
    // busy handler when another process is creating the file at the same moment: retry it.
    const deadline = Date.now() + this.busyTimeoutMs;
    for (;;) {
      try {
        if (pragmaValue(this.db, 'journal_mode') !== 'wal') this.db.exec('PRAGMA journal_mode = WAL');
        break;
      } catch (err) {
        if (!isBusy(err) || Date.now() > deadline) throw err;
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
      }
    }
    // FULL: the WAL is fsynced at every commit, so an ADD that reported success is on disk
    // before the runtime hears of it; a power cut can only tear a commit nobody was told of,
    // which SQLite discards. Together with the checkpoint after each write (checkpointAfterCommit)
    // it costs about what NORMAL plus that checkpoint does (measured: ~0.9 ms a commit either way).
    this.db.exec('PRAGMA synchronous = FULL');
    // A CNI process is usually the only connection when it opens the database, and then SQLite
    // rebuilds the WAL index by reading the whole WAL (~7 us a frame here); plugins also leave
    // through _exit, so no close ever checkpoints. With the default autocheckpoint (1000 pages)
    // an ADD could read 4 MB of WAL before its first query (~7 ms); checkpointing every 64 pages
    // bounds that to ~0.5 ms, and about one commit in 30 pays a checkpoint (two fsyncs).
    this.db.exec(`PRAGMA wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`);
    const found = migrate(this.db);
    if (found > SCHEMA_VERSION) throw new StoreSchemaError(this.file, found, SCHEMA_VERSION);
  }

  private stmt(sql: string): StatementSync {
    let statement = this.statements.get(sql);
    if (!statement) {
      statement = this.db.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement;
  }

  // ---- synchronous primitives; callers hold the queue --------------------------------------

  private getSync(key: string): KeyValue | undefined {
    const row = this.stmt('SELECT key, value, create_revision, mod_revision FROM kv WHERE key = ?').get(key) as Row | undefined;
    return row && toKeyValue(row);
  }

  private bounds(prefix: string, options: ListOptions): [string, string, string] {
    const from = options.from !== undefined && options.from > prefix ? options.from : prefix;
    return [from, prefixEnd(prefix), options.to ?? prefixEnd(prefix)];
  }

  private listSync(prefix: string, options: ListOptions = {}): KeyValue[] {
    const value = options.keysOnly ? "'' AS value" : 'value';
    const rows = this.stmt(
      `SELECT key, ${value}, create_revision, mod_revision FROM kv WHERE key >= ? AND key < ? AND key <= ? AND mod_revision >= ? ORDER BY key LIMIT ?`,
    ).all(...this.bounds(prefix, options), options.minModRevision ?? 0, options.limit ?? -1) as unknown as Row[];
    return rows.map(toKeyValue);
  }

  private countSync(prefix: string, options: ListOptions = {}): number {
    const row = this.stmt('SELECT count(*) AS n FROM kv WHERE key >= ? AND key < ? AND key <= ?').get(
      ...this.bounds(prefix, options),
    ) as { n: number };
    return row.n;
  }

  /** The revision this transaction's writes carry: the stored one plus one, bumped once. */
  private writeRevision(): number {
    if (this.txnRevision === undefined) {
      const row = this.stmt("UPDATE meta SET value = value + 1 WHERE name = 'revision' RETURNING value").get() as { value: number } | undefined;
      this.txnRevision = row?.value ?? this.missingRevision();
    }
    return this.txnRevision;
  }

  private putSync(key: string, value: string): void {
    const revision = this.writeRevision();
    this.stmt(
      `INSERT INTO kv (key, value, create_revision, mod_revision) VALUES (?, ?, ?, ?)
       ON CONFLICT (key) DO UPDATE SET value = excluded.value, mod_revision = excluded.mod_revision`,
    ).run(key, value, revision, revision);
  }

  private deleteSync(key: string): boolean {
    const existed = this.stmt('SELECT 1 FROM kv WHERE key = ?').get(key) !== undefined;
    if (!existed) return false;
    this.writeRevision();
    this.stmt('DELETE FROM kv WHERE key = ?').run(key);
    return true;
  }

  private readonly txnView: Txn = {
    get: async (key) => this.getSync(key),
    list: async (prefix, options) => this.listSync(prefix, options),
    count: async (prefix, options) => this.countSync(prefix, options),
    put: async (key, value) => this.putSync(key, value),
    delete: async (key) => this.deleteSync(key),
  };

  // ---- public API ----------------------------------------------------------------------------

  /** Runs `fn` after every earlier operation of this process on this store has finished. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  transaction<T>(fn: (txn: Txn) => Promise<T>): Promise<T> {
    return this.exclusive(async () => {
      try {
        this.db.exec('BEGIN IMMEDIATE');
      } catch (err) {
        if (isBusy(err)) throw new StoreBusyError(this.file, this.busyTimeoutMs, err);
        throw new StoreError('begin a transaction on', this.file, err);
      }
      this.txnRevision = undefined;
      try {
        // Only this process's own awaits happen in here; SQLite calls are synchronous, so the
        // lock is held for the callback's CPU time, not for any I/O wait.
        const result = await fn(this.txnView);
        const wrote = this.txnRevision !== undefined;
        this.db.exec('COMMIT');
        if (wrote && this.deferCheckpoint) this.checkpointPending = true;
        else if (wrote) this.checkpointAfterCommit();
        return result;
      } catch (err) {
        if (this.db.isTransaction) this.db.exec('ROLLBACK');
        // SQLite's own failures (a read-only state dir, a full disk) said neither which file
        // nor what was being done ("attempt to write a readonly database"; torture store).
        if ((err as { code?: unknown }).code === 'ERR_SQLITE_ERROR' && !isBusy(err)) throw new StoreError('write to', this.file, err);
        throw err;
      } finally {
        this.txnRevision = undefined;
      }
    });
  }

  /**
   * Moves the WAL into the database file and empties it, after every transaction that wrote.
   * Plugins leave through _exit, so without this their commits would live only in the WAL until
   * some later checkpoint, and a WAL cut short (torture store) silently lost them: the next ADD
   * handed their addresses out again. SQLite cannot tell a WAL cut at a frame boundary from one
   * that simply held fewer commits, so the only defence is not to keep state there at rest.
   * The busy handler is off for it: when another process is reading or writing, the checkpoint
   * does what it can without waiting and that process's own commit (or close) finishes the job;
   * a commit never waits on a reader. Measured cost: ~0.9 ms a commit (ext4 on virtio).
   */
  private checkpointAfterCommit(): void {
    try {
      this.db.exec('PRAGMA busy_timeout = 0');
      this.stmt('PRAGMA wal_checkpoint(TRUNCATE)').get();
    } catch {
      // The commit is durable already (synchronous=FULL): a checkpoint that could not run (busy,
      // or a full disk that lets the WAL grow but not the file) is left to the next writer and
      // never turned into a failed write, which would have the runtime undo a committed ADD.
    } finally {
      this.db.exec(`PRAGMA busy_timeout = ${this.busyTimeoutMs}`);
    }
  }

  /**
   * Runs the checkpoint that commits left pending (deferCheckpoint), in this connection's queue.
   * The commits are durable already (synchronous=FULL); what waits is only moving them out of
   * the WAL, so a WAL cut in this window (~1 ms after the answer) is the same gap the README
   * names between a commit and its checkpoint. Done after the runtime has its answer, it takes
   * one checkpoint per request (not one per commit) off the ADD's and DEL's latency.
   */
  runDeferredCheckpoint(): Promise<void> {
    return this.exclusive(async () => {
      if (!this.checkpointPending || !this.db.isOpen) return;
      this.checkpointPending = false;
      this.checkpointAfterCommit();
    });
  }

  get(key: string): Promise<KeyValue | undefined> {
    return this.exclusive(async () => this.getSync(key));
  }

  list(prefix: string, options?: ListOptions): Promise<KeyValue[]> {
    return this.exclusive(async () => this.listSync(prefix, options));
  }

  count(prefix: string, options?: Omit<ListOptions, 'limit'>): Promise<number> {
    return this.exclusive(async () => this.countSync(prefix, options));
  }

  put(key: string, value: string): Promise<void> {
    return this.transaction((txn) => txn.put(key, value));
  }

  delete(key: string): Promise<boolean> {
    return this.transaction((txn) => txn.delete(key));
  }

  compareAndSwap(key: string, expect: CasExpectation, value: string): Promise<boolean> {
    return this.transaction(async (txn) => {
      const current = await txn.get(key);
      const matches =
        'absent' in expect
          ? current === undefined
          : 'modRevision' in expect
            ? current?.modRevision === expect.modRevision
            : current?.value === expect.value;
      if (!matches) return false;
      await txn.put(key, value);
      return true;
    });
  }

  revision(): Promise<number> {
    return this.exclusive(async () => this.revisionSync());
  }

  private revisionSync(): number {
    const row = this.stmt("SELECT value FROM meta WHERE name = 'revision'").get() as { value: number } | undefined;
    return row?.value ?? this.missingRevision();
  }

  /**
   * The revision row is written when the schema is made and never deleted: without it the file
   * was damaged (a truncated database keeps its tables but loses rows; torture store). Said so,
   * naming the file, rather than a TypeError about reading 'value' of undefined.
   */
  private missingRevision(): never {
    throw new StoreError('read', this.file, 'its revision counter (table meta) is missing: the database is damaged');
  }

  watch(onChange: (revision: number) => void, options: { intervalMs?: number } = {}): () => void {
    // The starting point is read now (unless this process is inside a transaction), so a write
    // right after watch() returns is reported.
    let last: number | undefined = this.db.isTransaction ? undefined : this.revisionSync();
    // Through the queue like every read: a transaction of this process that is awaiting
    // something must not have its uncommitted revision reported.
    const poll = (): void => {
      if (!this.db.isOpen) return;
      void this.exclusive(async () => this.revisionSync()).then((now) => {
        if (last !== undefined && now !== last) onChange(now);
        last = now;
      }, () => undefined);
    };
    if (last === undefined) poll();
    const timer = setInterval(poll, options.intervalMs ?? 500);
    // A watcher alone must not keep a CNI process (or a test) alive.
    timer.unref();
    return () => clearInterval(timer);
  }

  /** `PRAGMA integrity_check`: "ok" when the file is sound. For tests and `shoal doctor`. */
  integrityCheck(): string {
    return pragmaValue(this.db, 'integrity_check') as string;
  }

  get isOpen(): boolean {
    return this.db.isOpen;
  }

  close(): void {
    if (this.db.isOpen) this.db.close();
  }
}
