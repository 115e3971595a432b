/**
 * The CNI fast path's socket, `<run dir>/cni.sock` (DESIGN §2): the executables in dist/cni hand
 * their request here (protocol: cni-protocol.ts) and the daemon runs it warm on a worker thread
 * (cni-pool.ts, cni-worker.ts). Root only: the socket is mode 0600 and a peer whose
 * SO_PEERCRED uid is not 0 is refused, as on the control API.
 *
 * The build id is a hash of the worker bundle this daemon loaded, computed the way
 * scripts/build.mjs computes the one compiled into the forwarders: after a rebuild, the new
 * forwarders stop talking to a daemon still running the old code and run their own Node plugin.
 * Workers load the bundle from disk; one that must be replaced after a rebuild would load the
 * new code under the old id, so then the daemon stops serving the socket instead.
 */
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from 'pino';
import { peerUid } from './api.js';
import { CniWorkerPool } from './cni-pool.js';
import { encodeResponse, greeting, ProtocolError, RequestReader, type Namespaces } from './cni-protocol.js';

export const CNI_SOCKET_NAME = 'cni.sock';
export const WORKER_BUNDLE = 'shoal-cni-worker.js';
/** How long a client may take to send its request once connected. */
const REQUEST_READ_TIMEOUT_MS = 10_000;

export interface CniServerOptions {
  socketPath: string;
  workerFile: string;
  workers: number;
  timeoutMs: number;
  logger: Logger;
}

export interface CniServer {
  buildId: string;
  /** Stops accepting, lets requests finish for up to graceMs, answers the rest with code 11. */
  close(graceMs?: number): Promise<void>;
}

/** The worker bundle beside the running CLI bundle (dist/bin/shoal -> dist/cni/lib/). */
export function defaultWorkerFile(): string | undefined {
  const file = path.resolve(path.dirname(process.argv[1] ?? '.'), '..', 'cni', 'lib', WORKER_BUNDLE);
  return existsSync(file) ? file : undefined;
}

export function buildIdOf(bundle: Buffer): string {
  return createHash('sha256').update(bundle).digest('hex').slice(0, 16);
}

/** The daemon's namespaces, which its workers inherit; forwarders elsewhere do not use it. */
function ownNamespaces(): Namespaces {
  const ino = (kind: string) => statSync(`/proc/self/ns/${kind}`).ino;
  return { net: ino('net'), mnt: ino('mnt'), pid: ino('pid') };
}

export async function startCniServer(opts: CniServerOptions): Promise<CniServer> {
  const buildId = buildIdOf(readFileSync(opts.workerFile));
  const sameCode = () => {
    try {
      return buildIdOf(readFileSync(opts.workerFile)) === buildId;
    } catch {
      return false;
    }
  };
  // A stale daemon stops listening: the forwarders then run the (new) Node plugins.
  const onStale = () => server.close();
  const pool = new CniWorkerPool({ file: opts.workerFile, size: opts.workers, timeoutMs: opts.timeoutMs, logger: opts.logger, sameCode, onStale });
  const hello = greeting(buildId, opts.timeoutMs, ownNamespaces());
  const server = net.createServer((socket) => {
    const uid = peerUid(socket);
    if (uid !== 0) {
      opts.logger.warn({ event: 'cni_peer_refused', uid }, `refused a CNI client running as uid ${uid ?? 'unknown'}`);
      socket.destroy();
      return;
    }
    serve(socket, hello, pool, opts.logger);
  });
  try {
    unlinkSync(opts.socketPath); // left by a daemon that died; the pid file lock is ours now
  } catch {
    // not there
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`failed to listen on "${opts.socketPath}": ${err.message}`, { cause: err })));
    // The umask covers the window between bind() and chmod: never connectable by others.
    const old = process.umask(0o177);
    try {
      server.listen(opts.socketPath, () => {
        try {
          chmodSync(opts.socketPath, 0o600);
          resolve();
        } catch (err) {
          server.close();
          reject(new Error(`failed to set the mode of "${opts.socketPath}": ${(err as Error).message}`, { cause: err }));
        }
      });
    } finally {
      process.umask(old);
    }
  });
  return {
    buildId,
    close: async (graceMs = 0) => {
      // Stop accepting first (new forwarders run their Node plugins), let what runs finish,
      // then answer what is left with code 11 and stop the workers.
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      const deadline = Date.now() + graceMs;
      while (pool.pending > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      await pool.close();
      await closed;
      try {
        unlinkSync(opts.socketPath);
      } catch {
        // already gone
      }
    },
  };
}

function serve(socket: net.Socket, hello: string, pool: CniWorkerPool, logger: Logger): void {
  const reader = new RequestReader();
  let received = false;
  socket.setTimeout(REQUEST_READ_TIMEOUT_MS, () => {
    if (!received) socket.destroy();
  });
  socket.on('error', () => undefined); // a client that went away: nothing to tell it
  socket.write(hello);
  socket.on('data', (chunk: Buffer) => {
    if (received) return;
    let req;
    try {
      req = reader.push(chunk);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      logger.warn({ event: 'cni_bad_request', error: err.message }, `refused a CNI request: ${err.message}`);
      socket.destroy();
      return;
    }
    if (!req) return;
    received = true;
    socket.setTimeout(0);
    const t0 = performance.now();
    void pool.run(req).then((res) => {
      logger.debug(
        { event: 'cni_request', type: req.type, command: req.env['CNI_COMMAND'], containerId: req.env['CNI_CONTAINERID'], exitCode: res.exitCode, durationMs: Math.round((performance.now() - t0) * 10) / 10 },
        'served a CNI request',
      );
      if (!socket.destroyed) socket.end(encodeResponse(res));
    });
  });
}

/** Default worker count and request timeout; SHOAL_CNI_WORKERS / SHOAL_CNI_TIMEOUT_MS override. */
const DEFAULT_WORKERS = 4;
const DEFAULT_TIMEOUT_MS = 60_000;

function envInt(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const n = Number(env[name]);
  return env[name] !== undefined && Number.isInteger(n) && n >= min && n <= max ? n : fallback;
}

/**
 * The daemon's one call: serves `<run dir>/cni.sock` with the worker bundle of this build, or
 * returns undefined (logged) when there is none (a daemon run from the sources): the
 * executables then run their Node plugins, as without a daemon.
 */
export async function startCniFastPath(runDir: string, logger: Logger, env: NodeJS.ProcessEnv = process.env): Promise<CniServer | undefined> {
  const workerFile = defaultWorkerFile();
  if (!workerFile) {
    logger.warn({ event: 'cni_fast_path_off', reason: `no ${WORKER_BUNDLE} beside this build` }, 'CNI requests will not be served by the daemon');
    return undefined;
  }
  const socketPath = path.join(runDir, CNI_SOCKET_NAME);
  const workers = envInt(env, 'SHOAL_CNI_WORKERS', DEFAULT_WORKERS, 1, 64);
  const timeoutMs = envInt(env, 'SHOAL_CNI_TIMEOUT_MS', DEFAULT_TIMEOUT_MS, 100, 3_600_000);
  const server = await startCniServer({ socketPath, workerFile, workers, timeoutMs, logger });
  logger.info({ event: 'cni_fast_path_started', socket: socketPath, buildId: server.buildId, workers, timeoutMs }, 'serving CNI requests');
  return server;
}
