/**
 * The control API: HTTP over a unix socket (mode 0600, so only root talks to it), JSON in and
 * out. `curl --unix-socket /run/shoal/shoald.sock http://shoald/v1/status`.
 *
 *   GET  /v1/status     daemon, store, listeners, counts
 *   GET  /v1/networks   DNS-enabled networks with their listener state
 *   GET  /v1/endpoints  registered endpoints (?network=<name> filters)
 *   GET  /v1/nodes      the cluster's nodes (409 when the daemon has not joined a cluster)
 *   POST /v1/reload     same as SIGHUP; answers with the status after the reload
 */
import { chmodSync, unlinkSync } from 'node:fs';
import http from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { peerCredentials } from '../kernel/ffi.js';

/** An error a handler throws to answer with its own status (4xx) instead of 500. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface ApiHandlers {
  status(): Promise<unknown> | unknown;
  networks(): Promise<unknown> | unknown;
  endpoints(network?: string): Promise<unknown> | unknown;
  nodes(): Promise<unknown> | unknown;
  reload(): Promise<unknown>;
}

type Route = (url: URL) => Promise<unknown> | unknown;

export function startApiServer(socketPath: string, h: ApiHandlers, logger?: Logger): Promise<http.Server> {
  const routes: Record<string, Record<string, Route>> = {
    '/v1/status': { GET: () => h.status() },
    '/v1/networks': { GET: () => h.networks() },
    '/v1/endpoints': { GET: (url) => h.endpoints(url.searchParams.get('network') ?? undefined) },
    '/v1/nodes': { GET: () => h.nodes() },
    '/v1/reload': { POST: () => h.reload() },
  };
  const server = http.createServer((req, res) => {
    const send = (code: number, body: unknown, headers: Record<string, string> = {}) =>
      res.writeHead(code, { 'content-type': 'application/json', ...headers }).end(`${JSON.stringify(body)}\n`);
    const url = new URL(req.url ?? '/', 'http://shoald');
    const methods = routes[url.pathname];
    if (!methods) return send(404, { error: `no such endpoint "${url.pathname}"` });
    const route = methods[req.method ?? 'GET'];
    if (!route) return send(405, { error: `method ${req.method} not allowed on "${url.pathname}"` }, { allow: Object.keys(methods).join(', ') });
    // The body of POST /v1/reload is ignored; drain it so the connection can be reused.
    req.resume();
    Promise.resolve()
      .then(() => route(url))
      .then(
        (body) => send(200, body),
        (err: unknown) => {
          if (err instanceof ApiError) return send(err.status, { error: err.message });
          logger?.error({ event: 'api_error', path: url.pathname, err }, `failed to serve "${url.pathname}"`);
          send(500, { error: (err as Error).message ?? String(err) });
        },
      );
  });
  // Mode 0600 keeps others from connecting; the peer's credentials are checked as well, so a
  // socket made accessible by mistake (a chmod, a bind mount into a container) still serves
  // root only. A peer whose credentials cannot be read is refused too.
  server.on('connection', (socket: Socket) => {
    const uid = peerUid(socket);
    if (uid === 0) return;
    logger?.warn({ event: 'api_peer_refused', uid }, `refused a control API client running as uid ${uid ?? 'unknown'}`);
    socket.destroy();
  });
  // A socket left by a daemon that died without cleanup (the pid file lock is ours now).
  try {
    unlinkSync(socketPath);
  } catch {
    // not there
  }
  return new Promise((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`failed to listen on "${socketPath}": ${err.message}`, { cause: err })));
    // The umask covers the window between bind() and the chmod below: the socket is never
    // connectable by others, not even for a moment.
    const old = process.umask(0o177);
    try {
      server.listen(socketPath, () => {
        try {
          chmodSync(socketPath, 0o600);
          resolve(server);
        } catch (err) {
          server.close();
          reject(new Error(`failed to set the mode of "${socketPath}": ${(err as Error).message}`, { cause: err }));
        }
      });
    } finally {
      process.umask(old);
    }
  });
}

/** The uid of the process at the other end (SO_PEERCRED), undefined when it cannot be read. */
export function peerUid(socket: Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return undefined;
  try {
    return peerCredentials(fd).uid;
  } catch {
    return undefined;
  }
}
