// A Shoal daemon for the campaigns: dist/bin/shoal from temp dirs, started and killed by PID,
// its log in a file (a pipe nobody drains would stall it).
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import http from 'node:http';
import { root, sleep } from './common.mjs';

// firewall: the daemon's DNS rules in `inet shoal` (its accept rules and per-client rate limit);
// off by default, as the campaigns' networks need no accept rule on this host.
export async function startDaemon({ run, state, args = [], dnsPort = 18580, env = {}, waitMs = 20_000, firewall = false }) {
  mkdirSync(run, { recursive: true });
  const logFile = path.join(run, 'torture-daemon.log');
  const log = openSync(logFile, 'a');
  const child = spawn(process.execPath, [path.join(root, 'dist/bin/shoal'), 'daemon', '--metrics-addr', 'off', ...(firewall ? [] : ['--no-firewall']), '--dns-port', String(dnsPort), '--log-level', 'info', ...args], {
    env: { PATH: process.env.PATH, ...env, SHOAL_RUN_DIR: run, SHOAL_STATE_DIR: state },
    stdio: ['ignore', log, log],
  });
  closeSync(log);
  const exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
  const d = {
    pid: child.pid,
    child,
    socket: path.join(run, 'shoald.sock'),
    log: () => readFileSync(logFile, 'utf8'),
    exited,
    alive: () => child.exitCode === null && child.signalCode === null,
    kill9: async () => {
      if (d.alive()) process.kill(child.pid, 'SIGKILL');
      await exited;
    },
    stop: async () => {
      if (!d.alive()) return exited;
      process.kill(child.pid, 'SIGTERM');
      const r = await Promise.race([exited, sleep(8000)]);
      if (!r) process.kill(child.pid, 'SIGKILL');
      return exited;
    },
  };
  const deadline = Date.now() + waitMs;
  while (!(existsSync(d.socket) && (await apiGet(d.socket, '/v1/status').catch(() => undefined))?.status === 200)) {
    if (!d.alive() || Date.now() > deadline) {
      await d.kill9();
      throw new Error(`the daemon did not start: ${d.log().slice(-2000)}`);
    }
    await sleep(50);
  }
  return d;
}

/** GET on the control API's unix socket: { status, body }. */
export function apiGet(socketPath, urlPath, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath, path: urlPath, timeout: timeoutMs }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${urlPath}: no answer in ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}
