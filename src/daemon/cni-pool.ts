/**
 * The daemon's CNI worker threads (cni-worker.ts): a fixed number of them, one request each at a
 * time, the rest queued in arrival order. Concurrent requests meet in the store, whose locking
 * serialises what must be (as between plugin processes).
 *
 * A request that runs past `timeoutMs` is answered with CNI error 11 (try again) and its worker
 * is terminated and replaced: whatever it was stuck on (a delegate that never exits, a lock
 * never released) cannot hold up the requests behind it. The runtime answers an ADD error with
 * a DEL, which is idempotent, so whatever the stopped ADD had done is removed then. A worker
 * that dies on its own is replaced the same way, its request answered with code 11.
 */
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { LATEST_VERSION, SUPPORTED_VERSIONS } from '../../cni/version.js';
import type { CniWireRequest, CniWireResponse } from './cni-protocol.js';
import type { WorkerRequest, WorkerResponse } from './cni-worker.js';

export interface CniPoolOptions {
  /** The worker bundle (dist/cni/lib/shoal-cni-worker.js). */
  file: string;
  size: number;
  timeoutMs: number;
  logger: Logger;
  /**
   * Asked before a replacement worker loads `file` again: false when the file is no longer the
   * code this daemon announced (a rebuild since it started). The pool then stops, answering
   * what waits with code 11, and calls `onStale`.
   */
  sameCode?: () => boolean;
  onStale?: () => void;
}

interface Job {
  id: number;
  req: CniWireRequest;
  resolve(res: CniWireResponse): void;
}

interface Slot {
  worker: Worker;
  /** Running JavaScript: a request's timeout starts when a live worker has it, not at boot. */
  online: boolean;
  job: Job | undefined;
  timer: NodeJS.Timeout | undefined;
}

export class CniWorkerPool {
  private readonly slots = new Set<Slot>();
  private readonly queue: Job[] = [];
  private nextId = 1;
  private closed = false;

  constructor(private readonly opts: CniPoolOptions) {
    for (let i = 0; i < opts.size; i++) this.spawn();
  }

  /** Runs a request on the next free worker; never rejects. */
  run(req: CniWireRequest): Promise<CniWireResponse> {
    if (this.closed) return Promise.resolve(tryAgain(req, 'the Shoal daemon is stopping'));
    return new Promise((resolve) => {
      this.queue.push({ id: this.nextId++, req, resolve });
      this.dispatch();
    });
  }

  /** Requests running or waiting. */
  get pending(): number {
    return [...this.slots].filter((s) => s.job).length + this.queue.length;
  }

  /** Stops every worker; requests still running or queued are answered with code 11. */
  async close(): Promise<void> {
    this.closed = true;
    for (const job of this.queue.splice(0)) job.resolve(tryAgain(job.req, 'the Shoal daemon is stopping'));
    await Promise.all([...this.slots].map((slot) => this.retire(slot, 'the Shoal daemon is stopping')));
  }

  private spawn(): void {
    const worker = new Worker(this.opts.file, { stdout: false, stderr: false });
    const slot: Slot = { worker, online: false, job: undefined, timer: undefined };
    this.slots.add(slot);
    worker.once('online', () => {
      slot.online = true;
      this.dispatch();
    });
    worker.on('message', (msg: WorkerResponse | { ready: boolean; error?: string }) => {
      if ('ready' in msg) {
        if (!msg.ready) this.opts.logger.warn({ event: 'cni_worker_preload_failed', error: msg.error }, 'a CNI worker could not preload the plugins');
        return;
      }
      const job = slot.job;
      if (!job || job.id !== msg.id) return;
      this.finish(slot, { exitCode: msg.exitCode, stdout: msg.stdout, stderr: msg.stderr });
    });
    worker.on('error', (err) => this.opts.logger.error({ event: 'cni_worker_error', err }, `a CNI worker failed: ${err.message}`));
    worker.on('exit', (code) => {
      if (!this.slots.has(slot)) return; // retired on purpose
      this.slots.delete(slot);
      if (slot.timer) clearTimeout(slot.timer);
      slot.job?.resolve(tryAgain(slot.job.req, `the CNI worker running it exited (code ${code})`));
      if (this.closed) return;
      this.opts.logger.error({ event: 'cni_worker_exited', code }, 'a CNI worker exited; starting another');
      // A worker that cannot even start would loop here: give it a moment.
      setTimeout(() => this.replace(), 200).unref();
    });
  }

  private dispatch(): void {
    for (const slot of this.slots) {
      if (slot.job || !slot.online) continue;
      const job = this.queue.shift();
      if (!job) return;
      slot.job = job;
      slot.timer = setTimeout(() => void this.timeOut(slot, job), this.opts.timeoutMs);
      slot.worker.postMessage({ ...job.req, id: job.id } satisfies WorkerRequest);
    }
  }

  private finish(slot: Slot, res: CniWireResponse): void {
    const job = slot.job;
    if (slot.timer) clearTimeout(slot.timer);
    slot.job = undefined;
    slot.timer = undefined;
    job?.resolve(res);
    this.dispatch();
  }

  private async timeOut(slot: Slot, job: Job): Promise<void> {
    if (slot.job !== job) return;
    const { type, env } = job.req;
    this.opts.logger.error(
      { event: 'cni_request_timeout', type, command: env['CNI_COMMAND'], containerId: env['CNI_CONTAINERID'], timeoutMs: this.opts.timeoutMs },
      `a CNI ${env['CNI_COMMAND'] ?? ''} request of ${type} ran past ${this.opts.timeoutMs} ms; its worker is replaced`,
    );
    await this.retire(slot, `it did not finish within ${this.opts.timeoutMs} ms`);
    this.replace();
  }

  /** A new worker for one that is gone, if the code on disk is still this daemon's. */
  private replace(): void {
    if (this.closed) return;
    if (this.opts.sameCode && !this.opts.sameCode()) {
      this.opts.logger.warn({ event: 'cni_fast_path_stale' }, 'the CNI worker code on disk is another build now; CNI requests go to the Node plugins until the daemon restarts');
      void this.close();
      this.opts.onStale?.();
      return;
    }
    this.spawn();
    this.dispatch();
  }

  /** Takes a worker out of service, answering its request (if any) with code 11. */
  private async retire(slot: Slot, why: string): Promise<void> {
    this.slots.delete(slot);
    if (slot.timer) clearTimeout(slot.timer);
    const job = slot.job;
    slot.job = undefined;
    job?.resolve(tryAgain(job.req, why));
    await slot.worker.terminate();
  }
}

/** CNI error 11 in the version the request's config asked for, as the skel would print it. */
export function tryAgain(req: CniWireRequest, why: string): CniWireResponse {
  const command = req.env['CNI_COMMAND'] ?? 'request';
  const msg = `the Shoal daemon could not complete the ${command} of ${req.type}: ${why}; try again`;
  return { exitCode: 1, stdout: `${JSON.stringify({ cniVersion: versionOf(req.stdin), code: 11, msg })}\n`, stderr: `${msg}\n` };
}

function versionOf(stdin: string): string {
  try {
    const v = (JSON.parse(stdin) as { cniVersion?: unknown } | null)?.cniVersion;
    if ((SUPPORTED_VERSIONS as readonly unknown[]).includes(v)) return v as string;
  } catch {
    // not JSON: the latest version, as the skel does
  }
  return LATEST_VERSION;
}
