/**
 * Messages between the DNS worker pool (main thread, worker-pool.ts) and its workers
 * (worker-main.ts). Requests carry an id; the worker answers each with a `reply` of that id.
 */
import type { CountsDelta } from './metrics-sink.js';
import type { RecordsDelta } from './snapshot.js';

/** What a worker's ShoalDns is built with: the serializable part of ShoalDnsOptions (which extends it). */
export interface WorkerDnsOptions {
  /** TTL of local answers, seconds (default 5); a network's `ttl` overrides it. */
  localTtl?: number;
  /** Host resolver config, the upstreams of networks without their own (default /etc/resolv.conf). */
  resolvConfPath?: string;
  /** How often a query may trigger a resolv.conf change check, ms (default 2000). */
  resolvConfCheckMs?: number;
  /** Per-upstream attempt timeout, ms (default 2000). */
  forwardTimeoutMs?: number;
  /** Concurrent upstream queries at most; past it, REFUSED (default 150). */
  maxConcurrentForwards?: number;
  /** Forward cache: entries (default 10000), TTL caps in seconds (3600 / 1800). */
  cacheSize?: number;
  cacheMaxTtl?: number;
  cacheMaxNegativeTtl?: number;
  /** Largest UDP answer sent whatever the client advertises (default 4096). */
  maxUdpSize?: number;
  tcpIdleMs?: number;
  maxTcpConnections?: number;
  maxTcpPipeline?: number;
  /** UDP sockets: Node's dgram, or batched recvmmsg/sendmmsg through the addon (default dgram). */
  udp?: 'dgram' | 'batch';
}

export interface WorkerData {
  index: number;
  options: WorkerDnsOptions;
}

export type ToWorker =
  /** The full record set, v8-serialized into shared memory once for all workers. */
  | { type: 'records'; version: number; records: SharedArrayBuffer; length: number }
  /** The endpoints that changed since version - 1 (structured clone: a few objects). */
  | { type: 'delta'; version: number; delta: RecordsDelta }
  | { type: 'listen'; id: number; address: string; port: number }
  | { type: 'unlisten'; id: number; address: string; port: number }
  | { type: 'counts'; id: number }
  /** Close every listener, let forwards in flight finish (up to graceMs), answer with the last counts. */
  | { type: 'close'; id: number; graceMs: number }
  /** Test seam: throw from the worker's event loop, as a bug would. */
  | { type: 'crash' };

export type FromWorker =
  | { type: 'applied'; version: number; recordCounts: [network: string, n: number][]; ms: number }
  | { type: 'reply'; id: number; ok: true; port?: number; counts?: CountsDelta }
  /** `errno`: the first E... code in the error's cause chain (EADDRNOTAVAIL, EADDRINUSE). */
  | { type: 'reply'; id: number; ok: false; code?: string; errno?: string; message: string }
  | { type: 'log'; level: 'debug' | 'info' | 'warn' | 'error'; fields: Record<string, unknown>; msg: string };
