/**
 * How the daemon runs its DNS server: `workers` threads with batched UDP, the worker bundle
 * taken from next to the running bundle (dist/bin/dns-worker.js beside dist/bin/shoal, both
 * written by scripts/build.mjs). Run from the TypeScript sources there is no such bundle, and
 * the server answers on the calling thread (still with batched UDP).
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ShoalDnsOptions } from './index.js';

export function dnsWorkerOptions(workers: number): Pick<ShoalDnsOptions, 'udp' | 'workers' | 'workerScript'> {
  const script = new URL('./dns-worker.js', import.meta.url);
  if (workers === 0 || !existsSync(fileURLToPath(script))) return { udp: 'batch', workers: 0 };
  return { udp: 'batch', workers, workerScript: script };
}
