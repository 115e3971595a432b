export type { CasExpectation, KeyValue, ListOptions, Store, Txn } from './store.js';
export { prefixEnd } from './store.js';
export { StoreBusyError, StoreError, StoreSchemaError } from './errors.js';
export { DEFAULT_STATE_DIR, STORE_FILE_NAME, closeStateStores, openStateStore, resolveStateDir, storeFile } from './open.js';
