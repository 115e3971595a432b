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

/**
 * The cluster store (etcd) did not answer in time, or no endpoint could be reached. `name` lists
 * the endpoints, so the message says where Shoal looked. Retrying later can succeed.
 */
export class StoreUnavailableError extends ShoalError {
  /** What went wrong, without the "failed to <verb> <endpoints>" around it. */
  readonly detail: string;
  constructor(verb: string, endpoints: readonly string[], detail: string, cause?: unknown) {
    super('ESTOREUNAVAILABLE', failedTo(verb, endpoints.join(','), detail), { cause });
    this.detail = detail;
  }
}

/**
 * An optimistic transaction kept losing to concurrent writers: every attempt found a key it had
 * read changed at commit time. Bounded on purpose (a livelock must surface, not spin).
 */
export class StoreConflictError extends ShoalError {
  constructor(name: string, attempts: number) {
    super('ESTORECONFLICT', failedTo('commit a transaction on', name, `still conflicting with concurrent writers after ${attempts} attempts`));
  }
}

/** etcd does not know the lease a write was attached to: it expired or was revoked. */
export class StoreLeaseNotFoundError extends ShoalError {
  constructor(name: string, cause?: unknown) {
    super('ESTORELEASE', failedTo('write under a lease to', name, 'the lease has expired or was revoked'), { cause });
  }
}
