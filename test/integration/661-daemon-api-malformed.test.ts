// The control API server itself (no daemon) on a temp socket: integration, since its peer check
// (SO_PEERCRED, root only) needs the test to run as root.
import { mkdtempSync, rmSync } from 'node:fs';
import type http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApiServer, type ApiHandlers } from '../../src/daemon/api.js';

// Found by `npm run torture -- api`: a request target that is no URL ("//") threw inside the
// request handler, uncaught, and the daemon exited.

let dir: string;
let server: http.Server;
let socketPath: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'shoal-api-malformed-'));
  socketPath = path.join(dir, 'api.sock');
  const handlers = { status: () => ({ ok: true }) } as unknown as ApiHandlers;
  server = await startApiServer(socketPath, handlers);
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
  rmSync(dir, { recursive: true, force: true });
});

/** Sends raw bytes and returns what came back before the server closed (or 2 s). */
function raw(data: string): Promise<string> {
  return new Promise((resolve) => {
    const s = net.createConnection(socketPath);
    let got = '';
    const done = () => {
      clearTimeout(t);
      s.destroy();
      resolve(got);
    };
    const t = setTimeout(done, 2000);
    s.on('connect', () => s.end(data));
    s.on('data', (d) => (got += d.toString()));
    s.on('close', done);
    s.on('error', done);
  });
}

describe('control API: malformed requests', () => {
  it.each(['GET // HTTP/1.1', 'POST //x:99999/v1/networks HTTP/1.1', 'GET //[::1 HTTP/1.1'])('"%s" is answered 400 and the server keeps serving', async (line) => {
    const answer = await raw(`${line}\r\nHost: x\r\nContent-Length: 0\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer).toContain('malformed request target');
    expect(await raw('GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n')).toMatch(/^HTTP\/1\.1 200 /);
  });

  it('a client that goes away in the middle of a body does not take the server down', async () => {
    await new Promise<void>((resolve) => {
      const s = net.createConnection(socketPath);
      s.on('connect', () => {
        s.write('POST /v1/status HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"a');
        setTimeout(() => s.destroy(), 50);
      });
      s.on('close', () => resolve());
      s.on('error', () => {});
    });
    expect(await raw('GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n')).toMatch(/^HTTP\/1\.1 200 /);
  });
});
