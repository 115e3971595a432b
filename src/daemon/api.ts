/**
 * The control API: HTTP over a unix socket (mode 0600, so only root talks to it), JSON in and
 * out. `curl --unix-socket /run/shoal/shoald.sock http://shoald/v1/status`.
 *
 *   GET  /v1/status     daemon, store, listeners, counts
 *   GET  /v1/networks   DNS-enabled networks with their listener state
 *   GET  /v1/endpoints  registered endpoints (?network=<name> filters)
 *   GET  /v1/nodes      the cluster's nodes (409 when the daemon has not joined a cluster)
 *   GET  /v1/services   services with their replicas and health (?name=<service> filters)
 *   POST /v1/reload     same as SIGHUP; answers with the status after the reload
 *   POST /v1/networks   create an overlay network in the cluster (body: OverlayCreateInput)
 *   DELETE /v1/networks?name=N  remove an overlay network from the cluster
 *   POST /v1/services  create or update a service of an overlay network in the cluster (body: {input, update})
 *   DELETE /v1/services?name=N  remove a service of an overlay network from the cluster
 *   POST /v1/blocks     a new address block of an overlay for this node (body: {network, family}; shoal-ipam)
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
  services?(name?: string): Promise<unknown> | unknown;
  reload(): Promise<unknown>;
  createNetwork(body: unknown): Promise<unknown>;
  removeNetwork(name: string): Promise<unknown>;
  claimBlock(body: unknown): Promise<unknown>;
  putService?(body: unknown): Promise<unknown>;
  removeService?(name: string): Promise<unknown>;
}

type Route = (url: URL, body: unknown) => Promise<unknown> | unknown;

/** Request bodies are small JSON documents; anything larger is refused. */
const MAX_BODY = 64 * 1024;

function readBody(req: http.IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => {
      text += d;
      if (text.length > MAX_BODY) {
        reject(new ApiError(413, `request body larger than ${MAX_BODY} bytes`));
        req.destroy();
      }
    });
    req.on('end', () => {
      if (text.trim() === '') return resolve(undefined);
      try {
        resolve(JSON.parse(text));
      } catch {
        reject(new ApiError(400, 'request body is not JSON'));
      }
    });
    req.on('error', reject);
  });
}

/** A handler a daemon may lack (tests build partial ones): 404 without it. */
function notFoundWithout<A>(fn: ((a: A) => Promise<unknown>) | undefined): (a: A) => Promise<unknown> {
  return fn ?? (() => Promise.reject(new ApiError(404, 'not served by this daemon')));
}

export function startApiServer(socketPath: string, h: ApiHandlers, logger?: Logger): Promise<http.Server> {
  const routes: Record<string, Record<string, Route>> = {
    '/v1/status': { GET: () => h.status() },
    '/v1/networks': {
      GET: () => h.networks(),
      POST: (_url, body) => h.createNetwork(body),
      DELETE: (url) => h.removeNetwork(url.searchParams.get('name') ?? ''),
    },
    '/v1/blocks': { POST: (_url, body) => h.claimBlock(body) },
    '/v1/endpoints': { GET: (url) => h.endpoints(url.searchParams.get('network') ?? undefined) },
    '/v1/nodes': { GET: () => h.nodes() },
    '/v1/services': {
      GET: (url) => h.services?.(url.searchParams.get('name') ?? undefined) ?? [],
      POST: (_url, body) => notFoundWithout(h.putService)(body),
      DELETE: (url) => notFoundWithout(h.removeService)(url.searchParams.get('name') ?? ''),
    },
    '/v1/reload': { POST: () => h.reload() },
  };
  const server = http.createServer((req, res) => {
    const send = (code: number, body: unknown, headers: Record<string, string> = {}) => {
      // The client may be gone (reset mid-body): nothing to answer, and nothing went wrong here.
      if (res.destroyed || res.headersSent) return;
      res.writeHead(code, { 'content-type': 'application/json', ...headers }).end(`${JSON.stringify(body)}\n`);
    };
    // A request target such as "//" is no URL: new URL threw here, uncaught, and the daemon
    // exited (torture api). Refused like any other malformed request.
    const url = URL.parse(req.url ?? '/', 'http://shoald');
    if (!url) return send(400, { error: 'malformed request target' });
    const methods = routes[url.pathname];
    if (!methods) return send(404, { error: `no such endpoint "${url.pathname}"` });
    const route = methods[req.method ?? 'GET'];
    if (!route) return send(405, { error: `method ${req.method} not allowed on "${url.pathname}"` }, { allow: Object.keys(methods).join(', ') });
    readBody(req)
      .then((body) => route(url, body))
      .then(
        (body) => send(200, body),
        (err: unknown) => {
          if (err instanceof ApiError) return send(err.status, { error: err.message });
          if (req.destroyed && (err as { code?: unknown }).code === 'ECONNRESET') return;
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
