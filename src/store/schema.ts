import type { DatabaseSync } from 'node:sqlite';

/**
 * Versioned schema migrations, tracked in SQLite's `user_version`. Append only: entry i moves
 * the schema from version i to i+1. Never edit a released entry — databases in the field have
 * already run it.
 */
const MIGRATIONS: ReadonlyArray<(db: DatabaseSync) => void> = [
  (db) => {
    // WITHOUT ROWID: the key is the only access path, so store rows in the key's B-tree and
    // range scans by prefix walk it directly.
    db.exec(`
      CREATE TABLE kv (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        create_revision INTEGER NOT NULL,
        mod_revision INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE meta (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
      ) WITHOUT ROWID;
      INSERT INTO meta (name, value) VALUES ('revision', 0);
    `);
  },
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/**
 * Brings the schema up to date. Runs inside BEGIN IMMEDIATE and re-reads the version there, so
 * when many CNI processes open a fresh database at once exactly one of them migrates.
 * Returns the version found, for the caller's error message when it is too new.
 */
/** `PRAGMA name` read as a single value. */
export function pragmaValue(db: DatabaseSync, name: string): unknown {
  const row = db.prepare(`PRAGMA ${name}`).get() as Record<string, unknown> | undefined;
  return row === undefined ? undefined : Object.values(row)[0];
}

function userVersion(db: DatabaseSync): number {
  return pragmaValue(db, 'user_version') as number;
}

export function migrate(db: DatabaseSync): number {
  const current = userVersion(db);
  if (current >= SCHEMA_VERSION) return current;
  db.exec('BEGIN IMMEDIATE');
  try {
    const locked = userVersion(db);
    for (let version = locked; version < SCHEMA_VERSION; version++) MIGRATIONS[version]!(db);
    if (locked < SCHEMA_VERSION) db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
    db.exec('COMMIT');
    return locked;
  } catch (err) {
    if (db.isTransaction) db.exec('ROLLBACK');
    throw err;
  }
}
