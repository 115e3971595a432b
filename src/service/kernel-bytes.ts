/**
 * shoal_lb_bytes_total for the kernel data path: the table's per-service counters (nft-rules.ts,
 * `bytes-<service>-in|out`, counted by the kernel on every packet of a DNATed connection) are
 * read at scrape time and their growth since the last read is added to the metric, as the proxy
 * path folds in the bytes it counted. A counter that went down was made anew (the table is
 * rebuilt when a daemon starts or after a failed apply): all of it is new.
 */
import type { Counter } from 'prom-client';
import { readCounters } from '../kernel/nftables-reader.js';
import { bytesCounterOf, lbTable, type Family } from './nft-rules.js';

export class KernelByteCounters {
  /** "family|counter" -> bytes at the last read. */
  private readonly last = new Map<string, number>();

  constructor(private readonly bytes: Counter<'service' | 'direction'>) {}

  /** Reads the counters of `families` (those whose table holds services) into the metric. */
  flush(families: readonly Family[]): void {
    const seen = new Set<string>();
    for (const family of families) {
      for (const [name, { bytes }] of readCounters(lbTable(family))) {
        const labels = bytesCounterOf(name);
        if (!labels) continue;
        const key = `${family}|${name}`;
        seen.add(key);
        const before = this.last.get(key) ?? 0;
        const grown = bytes >= before ? bytes - before : bytes;
        this.last.set(key, bytes);
        if (grown > 0) this.bytes.inc(labels, grown);
      }
    }
    // A counter gone (service removed, family emptied) starts from 0 should it come back.
    for (const key of this.last.keys()) if (!seen.has(key)) this.last.delete(key);
  }
}
