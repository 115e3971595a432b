import { copyFileSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/store/sqlite.js';
import { closeStateStores, openStateStore, resolveStateDir } from '../../src/store/open.js';
import { StoreBusyError, StoreSchemaError } from '../../src/store/errors.js';
import { SCHEMA_VERSION } from '../../src/store/schema.js';
import { DatabaseSync } from 'node:sqlite';

let dir: string;
let store: SqliteStore;

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'shoal-store-'));
  store = new SqliteStore(path.join(dir, 'shoal.db'));
});

afterEach(() => {
  store.close();
  closeStateStores();
  rmSync(dir, { recursive: true, force: true });
});

describe('SqliteStore', () => {
  it('puts, gets and deletes, with revisions that grow per write', async () => {
    expect(await store.get('a')).toBeUndefined();
    await store.put('a', '1');
    const first = await store.get('a');
    expect(first).toMatchObject({ key: 'a', value: '1' });
    await store.put('a', '2');
    const second = await store.get('a');
    expect(second!.value).toBe('2');
    expect(second!.modRevision).toBeGreaterThan(first!.modRevision);
    expect(second!.createRevision).toBe(first!.createRevision);
    expect(await store.delete('a')).toBe(true);
    expect(await store.delete('a')).toBe(false);
    expect(await store.get('a')).toBeUndefined();
  });

  it('lists by prefix in key order, bounded by from/to/limit, and counts', async () => {
    for (const key of ['n/b', 'n/a', 'n/c', 'm/x', 'n0', 'n/d']) await store.put(key, key);
    expect((await store.list('n/')).map((kv) => kv.key)).toEqual(['n/a', 'n/b', 'n/c', 'n/d']);
    expect((await store.list('n/', { from: 'n/b', to: 'n/c' })).map((kv) => kv.key)).toEqual(['n/b', 'n/c']);
    expect((await store.list('n/', { from: 'n/b', limit: 1 })).map((kv) => kv.key)).toEqual(['n/b']);
    expect(await store.count('n/')).toBe(4);
    expect(await store.count('n/', { from: 'n/c' })).toBe(2);
  });

  it('lists only what was written since a revision, or the keys alone', async () => {
    await store.put('r/a', '1');
    await store.put('r/b', '2');
    const rev = await store.revision();
    await store.put('r/c', '3');
    await store.put('r/a', '4');
    expect((await store.list('r/', { minModRevision: rev + 1 })).map((kv) => `${kv.key}=${kv.value}`)).toEqual(['r/a=4', 'r/c=3']);
    expect((await store.list('r/', { minModRevision: 0 })).length).toBe(3);
    expect((await store.list('r/', { keysOnly: true })).map((kv) => [kv.key, kv.value])).toEqual([['r/a', ''], ['r/b', ''], ['r/c', '']]);
    expect(await store.transaction((txn) => txn.list('r/', { minModRevision: rev + 2 }))).toHaveLength(1);
  });

  it('compare-and-swap by absence, revision and value', async () => {
    expect(await store.compareAndSwap('k', { absent: true }, 'v1')).toBe(true);
    expect(await store.compareAndSwap('k', { absent: true }, 'v2')).toBe(false);
    const current = (await store.get('k'))!;
    expect(await store.compareAndSwap('k', { modRevision: current.modRevision + 1 }, 'v2')).toBe(false);
    expect(await store.compareAndSwap('k', { modRevision: current.modRevision }, 'v2')).toBe(true);
    expect(await store.compareAndSwap('k', { value: 'v1' }, 'v3')).toBe(false);
    expect(await store.compareAndSwap('k', { value: 'v2' }, 'v3')).toBe(true);
    expect((await store.get('k'))!.value).toBe('v3');
  });

  it('a transaction that throws leaves nothing behind and does not bump the revision', async () => {
    await store.put('keep', '1');
    const before = await store.revision();
    await expect(
      store.transaction(async (txn) => {
        await txn.put('keep', '2');
        await txn.put('new', 'x');
        expect((await txn.get('new'))!.value).toBe('x');
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect((await store.get('keep'))!.value).toBe('1');
    expect(await store.get('new')).toBeUndefined();
    expect(await store.revision()).toBe(before);
  });

  it('all writes of one transaction share one revision', async () => {
    await store.transaction(async (txn) => {
      await txn.put('a', '1');
      await txn.put('b', '1');
    });
    const [a, b] = await store.list('');
    expect(a!.modRevision).toBe(b!.modRevision);
    expect(await store.revision()).toBe(a!.modRevision);
  });

  it('serialises concurrent transactions of one process (no lost update)', async () => {
    await store.put('counter', '0');
    await Promise.all(
      Array.from({ length: 20 }, () =>
        store.transaction(async (txn) => {
          const value = Number((await txn.get('counter'))!.value);
          await new Promise((resolve) => setImmediate(resolve));
          await txn.put('counter', String(value + 1));
        }),
      ),
    );
    expect((await store.get('counter'))!.value).toBe('20');
  });

  it('sees another connection\'s writes and notifies watchers', async () => {
    const other = new SqliteStore(store.file);
    try {
      const seen: number[] = [];
      const stop = store.watch((revision) => seen.push(revision), { intervalMs: 10 });
      await other.put('x', '1');
      expect((await store.get('x'))!.value).toBe('1');
      await new Promise((resolve) => setTimeout(resolve, 60));
      stop();
      expect(seen).toEqual([await other.revision()]);
    } finally {
      other.close();
    }
  });

  it('gives up with a typed busy error when another connection holds the write lock', async () => {
    const impatient = new SqliteStore(store.file, { busyTimeoutMs: 50 });
    try {
      let release!: () => void;
      const held = store.transaction(async (txn) => {
        await txn.put('lock', '1');
        await new Promise<void>((resolve) => (release = resolve));
      });
      // node:sqlite waits synchronously, so the holder's callback is parked on a promise here.
      await new Promise((resolve) => setImmediate(resolve));
      await expect(impatient.put('y', '1')).rejects.toBeInstanceOf(StoreBusyError);
      release();
      await held;
    } finally {
      impatient.close();
    }
  });

  it('uses WAL, and a reopened database keeps data and schema', async () => {
    await store.put('persist', 'yes');
    store.close();
    store = new SqliteStore(path.join(dir, 'shoal.db'));
    expect((await store.get('persist'))!.value).toBe('yes');
    expect(store.integrityCheck()).toBe('ok');
  });

  it('keeps no commit only in the WAL: the database file alone holds every reported write', async () => {
    // Plugins exit without closing; a WAL cut short afterwards (torture store) must lose nothing.
    const file = path.join(dir, 'shoal.db');
    for (let i = 0; i < 20; i++) await store.put(`k${i}`, 'x'.repeat(200));
    expect(statSync(`${file}-wal`).size).toBe(0);
    // The main file on its own, without its WAL and shared-memory index, as after losing the WAL.
    const alone = path.join(dir, 'alone');
    mkdirSync(alone);
    copyFileSync(file, path.join(alone, 'shoal.db'));
    const copy = new SqliteStore(path.join(alone, 'shoal.db'));
    try {
      expect((await copy.list('k')).map((kv) => kv.key)).toHaveLength(20);
      expect(copy.integrityCheck()).toBe('ok');
    } finally {
      copy.close();
    }
  });

  it('does not wait for a reader to checkpoint: the next writer empties the WAL once it is gone', async () => {
    const file = path.join(dir, 'shoal.db');
    const reader = new DatabaseSync(file);
    try {
      reader.exec('BEGIN');
      reader.prepare('SELECT count(*) FROM kv').get();
      const started = performance.now();
      await store.put('during', '1');
      // A 10 s busy timeout would show here if the checkpoint waited for the reader.
      expect(performance.now() - started).toBeLessThan(1000);
      expect(statSync(`${file}-wal`).size).toBeGreaterThan(0);
      reader.exec('COMMIT');
    } finally {
      reader.close();
    }
    await store.put('after', '1');
    expect(statSync(`${file}-wal`).size).toBe(0);
    expect((await store.get('during'))!.value).toBe('1');
  });

  it('records the schema version and refuses a database from a newer Shoal', () => {
    const file = path.join(dir, 'shoal.db');
    store.close();
    const raw = new DatabaseSync(file);
    expect(raw.prepare('PRAGMA user_version').get()).toEqual({ user_version: SCHEMA_VERSION });
    expect(raw.prepare('PRAGMA journal_mode').get()).toEqual({ journal_mode: 'wal' });
    raw.exec(`PRAGMA user_version = ${SCHEMA_VERSION + 1}`);
    raw.close();
    expect(() => new SqliteStore(file)).toThrow(StoreSchemaError);
    store = new SqliteStore(path.join(dir, 'other.db'));
  });

  it('resolves the state dir: config, then SHOAL_STATE_DIR, then /var/lib/shoal', () => {
    expect(resolveStateDir('/c', { SHOAL_STATE_DIR: '/e' })).toBe('/c');
    expect(resolveStateDir(undefined, { SHOAL_STATE_DIR: '/e' })).toBe('/e');
    expect(resolveStateDir(undefined, {})).toBe('/var/lib/shoal');
  });

  it('openStateStore shares one connection per file and creates the directory', async () => {
    const nested = path.join(dir, 'a', 'b');
    const one = await openStateStore(nested);
    expect(await openStateStore(nested)).toBe(one);
    expect(one.file).toBe(path.join(nested, 'shoal.db'));
  });
});

describe('SqliteStore on a damaged file', () => {
  it('a missing revision row (a truncated database keeps tables, loses rows) is an error naming the file', async () => {
    // Found by `npm run torture -- store`: a TypeError "reading 'value'" (CNI code 999, no file).
    await store.put('a', '1');
    const file = path.join(dir, 'shoal.db');
    const raw = new DatabaseSync(file);
    raw.exec("DELETE FROM meta WHERE name = 'revision'");
    raw.close();
    await expect(store.put('b', '2')).rejects.toThrow(`failed to read "${file}"`);
    await expect(store.revision()).rejects.toThrow(/revision counter \(table meta\) is missing/);
  });
});
