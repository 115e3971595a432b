import { join, resolve } from 'node:path';
import type { SqliteStore, SqliteStoreOptions } from './sqlite.js';

export const DEFAULT_STATE_DIR = '/var/lib/shoal';
export const STORE_FILE_NAME = 'shoal.db';

/**
 * Where durable state lives: a `stateDir` from the plugin config wins (it is the most specific
 * thing a user wrote), then `SHOAL_STATE_DIR` (how tests and operators isolate a whole run),
 * then `/var/lib/shoal` (DESIGN.md §2).
 */
export function resolveStateDir(configured?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (configured) return configured;
  const fromEnv = env['SHOAL_STATE_DIR'];
  if (fromEnv) return fromEnv;
  return DEFAULT_STATE_DIR;
}

export function storeFile(stateDir: string): string {
  return join(stateDir, STORE_FILE_NAME);
}

const open = new Map<string, SqliteStore>();
let defaultOptions: SqliteStoreOptions = {};

/** Options every store this process opens from now on gets (the daemon's CNI workers). */
export function setStoreDefaults(options: SqliteStoreOptions): void {
  defaultOptions = options;
}

/**
 * One store per database file per process, opened on first use. The bridge plugin calls IPAM
 * in-process and the daemon asks many modules for the store; they all share one connection
 * (a second connection to the same file from the same process would deadlock on its own lock).
 * node:sqlite is loaded only here, so verbs that never touch state never pay for it.
 */
export async function openStateStore(stateDir: string, options?: SqliteStoreOptions): Promise<SqliteStore> {
  const file = resolve(storeFile(stateDir));
  const existing = open.get(file);
  if (existing?.isOpen) return existing;
  const { SqliteStore } = await import('./sqlite.js');
  const store = new SqliteStore(file, { ...defaultOptions, ...options });
  open.set(file, store);
  return store;
}

/** Runs the checkpoints left pending by stores opened with deferCheckpoint. */
export async function runDeferredCheckpoints(): Promise<void> {
  await Promise.all([...open.values()].map((store) => store.runDeferredCheckpoint()));
}

/** Closes every store this process opened (tests, and the daemon on shutdown). */
export function closeStateStores(): void {
  for (const store of open.values()) store.close();
  open.clear();
}
