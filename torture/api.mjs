#!/usr/bin/env node
// `npm run torture -- api`: malformed HTTP on the daemon's control socket (shoald.sock) and on
// its CNI fast-path socket (cni.sock): random bytes, broken request lines and headers, huge
// headers and bodies, lying Content-Length, bad chunking, bodies that are not JSON or JSON of
// the wrong shape, requests cut off mid-way and clients that never finish. After every batch the
// daemon must still be running and answer GET /v1/status; its RSS and fd count are printed.
// Knobs: API_COUNT (malformed requests, default 5000), API_SLOW (never-finishing clients held
// open at once, default 200), TORTURE_SEED.
import net from 'node:net';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Figures, knob, seeded, sleep } from './lib/common.mjs';
import { apiGet, startDaemon } from './lib/daemon.mjs';

const COUNT = knob('API_COUNT', 5000);
const SLOW = knob('API_SLOW', 200);
const random = seeded();
const figures = new Figures('api');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'shoal-torture-api-'));

const PATHS = ['/v1/status', '/v1/networks', '/v1/blocks', '/v1/reload', '/v1/endpoints?network=%00', '/v1/services?name=' + 'x'.repeat(5000), '/../../etc/passwd', '*', '/v1/networks?name=%ff%fe', '//', '/v1/status#x'];
const METHODS = ['GET', 'POST', 'DELETE', 'PUT', 'PATCH', 'OPTIONS', 'TRACE', 'CONNECT', 'G\0ET', 'X'.repeat(100)];
const BODIES = ['', '{', 'null', '[]', '1e999', '{"name":{"__proto__":{"x":1}}}', '{"network":123,"family":"x"}', '{"name":"' + 'a'.repeat(70000) + '"}', JSON.stringify({ name: 'tq', vni: -1, subnet: 'x' }), '\u0000\u0001\u0002', `${'['.repeat(50000)}${']'.repeat(50000)}`];

function malformed() {
  const method = random.pick(METHODS);
  const p = random.pick(PATHS);
  const body = random.pick(BODIES);
  switch (random.int(9)) {
    case 0: return random.bytes(1 + random.int(4000));
    case 1: return `${method} ${p} HTTP/1.1\r\nHost: x\r\n\r\n`;
    case 2: return `${method} ${p} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
    case 3: return `POST ${p} HTTP/1.1\r\nHost: x\r\nContent-Length: ${random.pick([-1, 1e20, 'abc', 99999999])}\r\n\r\n${body}`;
    case 4: return `POST ${p} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${random.pick(['zz\r\n', 'ffffffffff\r\nx', '5\r\nab\r\n0\r\n\r\n', '-1\r\n'])}`;
    case 5: return `GET ${p} HTTP/1.1\r\n${'X-A: ' + 'b'.repeat(100_000)}\r\n\r\n`;
    case 6: return `GET ${p} HTTP/1.1\r\n${Array.from({ length: 3000 }, (_, i) => `H${i}: v`).join('\r\n')}\r\n\r\n`;
    case 7: return `${method} ${p} HTTP/9.9\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef`;
    default: return `POST /v1/networks HTTP/1.1\r\nHost: x\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body.slice(0, random.int(body.length + 1))}`;
  }
}

/** Sends `data` and waits for the server to answer or close (or 3 s). */
function send(socketPath, data, { half = false } = {}) {
  return new Promise((resolve) => {
    const s = net.createConnection(socketPath);
    let got = 0;
    const done = () => {
      clearTimeout(t);
      s.destroy();
      resolve(got);
    };
    const t = setTimeout(done, 3000);
    s.on('connect', () => {
      s.write(data);
      if (!half) s.end();
    });
    s.on('data', (d) => (got += d.length));
    s.on('error', done);
    s.on('close', done);
  });
}

const rss = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
const fds = (pid) => readdirSync(`/proc/${pid}/fd`).length;

async function main() {
  console.log(`api: seed ${random.seed}, ${COUNT} malformed requests, ${SLOW} never-finishing clients`);
  const run = path.join(tmp, 'run');
  const d = await startDaemon({ run, state: path.join(tmp, 'state') });
  try {
    const before = { rss: rss(d.pid), fds: fds(d.pid) };
    const sockets = { 'shoald.sock': d.socket, 'cni.sock': path.join(run, 'cni.sock') };
    for (const [name, sock] of Object.entries(sockets)) {
      let deadAfter = 0;
      let unanswered = 0;
      const n = Math.ceil(COUNT / 2);
      for (let i = 0; i < n; i += 20) {
        const batch = Array.from({ length: Math.min(20, n - i) }, () => malformed());
        await Promise.all(batch.map((m) => send(sock, m)));
        await sleep(20);
        if (!d.alive()) {
          deadAfter = i + 20;
          figures.fail(`daemon ${JSON.stringify(await d.exited)} after a batch holding: ${batch.map((m) => JSON.stringify(String(m).slice(0, 70))).join(' | ')}`);
          break;
        }
        const st = await apiGet(d.socket, '/v1/status').catch((e) => ({ status: String(e.message) }));
        if (st.status !== 200) {
          unanswered += 1;
          figures.fail(`after ${i + 20} malformed requests on ${name}, /v1/status answered ${st.status}`);
        }
      }
      figures.row(`malformed HTTP on ${name}`, n, (deadAfter ? 1 : 0) + unanswered, deadAfter ? `daemon died after ${deadAfter}` : '');
      if (deadAfter) figures.fail(`daemon exited: ${d.log().slice(-1500)}`);
    }
    // Clients that send half a request and never finish: others must still be served.
    const held = [];
    for (let i = 0; i < SLOW && d.alive(); i++) {
      const s = net.createConnection(i % 2 ? d.socket : sockets['cni.sock']);
      s.on('error', () => {});
      s.write(i % 3 ? 'POST /v1/networks HTTP/1.1\r\nContent-Length: 100\r\n\r\n{"na' : 'GET /v1/sta');
      held.push(s);
    }
    await sleep(200);
    const t0 = performance.now();
    const st = await apiGet(d.socket, '/v1/status').catch((e) => ({ status: String(e.message) }));
    const took = performance.now() - t0;
    figures.row(`/v1/status while ${SLOW} clients hold half requests`, 1, st.status === 200 && took < 2000 ? 0 : 1, `${st.status} in ${took.toFixed(0)} ms`);
    for (const s of held) s.destroy();
    await sleep(500);
    const after = d.alive() ? { rss: rss(d.pid), fds: fds(d.pid) } : { rss: 0, fds: 0 };
    figures.row('daemon alive at the end', 1, d.alive() ? 0 : 1, `RSS ${(before.rss / 2 ** 20).toFixed(0)} -> ${(after.rss / 2 ** 20).toFixed(0)} MiB, fds ${before.fds} -> ${after.fds}`);
    // Every fd a client took must have been given back.
    figures.row('daemon fds returned after the clients left', 1, after.fds > before.fds + 5 ? 1 : 0);
  } finally {
    await d.stop();
    figures.print();
    rmSync(tmp, { recursive: true, force: true });
  }
  process.exit(figures.broke ? 1 : 0);
}

await main();
