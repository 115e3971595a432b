/**
 * Messages between the DNS worker pool (main thread, worker-pool.ts) and its workers
 * (worker-main.ts). Requests carry an id; the worker answers each with a `reply` of that id.
 */
import type { CountsDelta } from './metrics-sink.js';

/** What a worker's ShoalDns is built with: the serializable part of ShoalDnsOptions. */
export interface WorkerDnsOptions {
  localTtl?: number;
  resolvConfPath?: string;
  resolvConfCheckMs?: number;
  forwardTimeoutMs?: number;
  maxConcurrentForwards?: number;
  cacheSize?: number;
  cacheMaxTtl?: number;
  cacheMaxNegativeTtl?: number;
  maxUdpSize?: number;
  tcpIdleMs?: number;
  maxTcpConnections?: number;
  maxTcpPipeline?: number;
  udp?: 'dgram' | 'batch';
}

export interface WorkerData {
  index: number;
  options: WorkerDnsOptions;
}

export type ToWorker =
  /** The full record set, v8-serialized into shared memory once for all workers. */
  | { type: 'records'; version: number; records: SharedArrayBuffer; length: number }
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
