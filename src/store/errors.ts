import { ShoalError, failedTo } from '../errors.js';

/** The store could not be opened, read or written (disk, permissions, corruption). */
export class StoreError extends ShoalError {
  constructor(verb: string, name: string, cause: unknown) {
    super('ESTOREIO', failedTo(verb, name, cause), { cause });
  }
}

/**
 * Another process held the write lock for longer than the busy timeout. Retrying later can
 * succeed, which is why this is its own class (the CNI layer maps it to "try again later").
 */
export class StoreBusyError extends ShoalError {
  constructor(name: string, timeoutMs: number, cause: unknown) {
    super('ESTOREBUSY', failedTo('lock', name, `still locked by another process after ${timeoutMs} ms`), { cause });
  }
}

/** The database was written by a newer Shoal whose schema this one does not know. */
export class StoreSchemaError extends ShoalError {
  constructor(name: string, found: number, known: number) {
    super('ESTORESCHEMA', failedTo('open', name, `schema version ${found} is newer than this Shoal understands (${known})`));
  }
}
