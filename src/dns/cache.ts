/**
 * A bounded LRU of upstream responses honouring their TTLs (CoreDNS `cache`, reduced): positive
 * answers live for their smallest TTL, negative ones (NXDOMAIN, NODATA) for the SOA's negative
 * TTL, both capped. A hit returns a copy whose TTLs are aged by the time spent in the cache.
 * The clock is injected so tests can move time.
 */
import { cacheTtl, scanResponse } from './scan.js';

export interface CacheOptions {
  maxEntries?: number;
  /** Cap on positive TTLs, seconds (CoreDNS: 3600). */
  maxTtl?: number;
  /** Cap on negative TTLs, seconds (CoreDNS: 1800). */
  maxNegativeTtl?: number;
  /** Milliseconds clock. */
  now?: () => number;
}

export interface CachedResponse {
  message: Buffer;
  rcode: number;
  optStart: number | undefined;
}

interface Entry {
  message: Buffer;
  rcode: number;
  optStart: number | undefined;
  ttlOffsets: number[];
  storedAt: number;
  expiresAt: number;
}

export class ResponseCache {
  private readonly entries = new Map<string, Entry>();
  private readonly maxEntries: number;
  private readonly maxTtl: number;
  private readonly maxNegativeTtl: number;
  private readonly now: () => number;

  constructor(options: CacheOptions = {}) {
    this.maxEntries = options.maxEntries ?? 10_000;
    this.maxTtl = options.maxTtl ?? 3600;
    this.maxNegativeTtl = options.maxNegativeTtl ?? 1800;
    this.now = options.now ?? Date.now;
  }

  get size(): number {
    return this.entries.size;
  }

  get(key: string): CachedResponse | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    const now = this.now();
    if (now >= e.expiresAt) {
      this.entries.delete(key);
      return undefined;
    }
    // Refresh recency.
    this.entries.delete(key);
    this.entries.set(key, e);
    const age = Math.floor((now - e.storedAt) / 1000);
    const message = Buffer.from(e.message);
    if (age > 0) {
      for (const off of e.ttlOffsets) message.writeUInt32BE(Math.max(0, message.readUInt32BE(off) - age), off);
    }
    return { message, rcode: e.rcode, optStart: e.optStart };
  }

  /** Stores a response if it is cacheable; returns whether it was stored. */
  set(key: string, message: Buffer): boolean {
    const scan = scanResponse(message);
    if (!scan) return false;
    const ttl = cacheTtl(scan, this.maxTtl, this.maxNegativeTtl);
    if (ttl <= 0) return false;
    const now = this.now();
    this.entries.delete(key);
    this.entries.set(key, {
      message: Buffer.from(message),
      rcode: scan.rcode,
      optStart: scan.optStart,
      ttlOffsets: scan.ttlOffsets,
      storedAt: now,
      expiresAt: now + ttl * 1000,
    });
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
    return true;
  }

  /** Drops the entries whose key `drop` says; returns how many. */
  deleteWhere(drop: (key: string) => boolean): number {
    let n = 0;
    for (const k of [...this.entries.keys()]) {
      if (drop(k)) {
        this.entries.delete(k);
        n += 1;
      }
    }
    return n;
  }

  clear(): void {
    this.entries.clear();
  }
}
