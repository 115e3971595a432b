/**
 * Helpers for the service tests (5xx): a network made by the built CLI (the real shoal-bridge
 * plugin), replicas that are network namespaces attached with `shoal network connect --alias`,
 * each running a small identity server (TCP: first line is its id, then echo; UDP: answers its
 * id), and readers for the kernel's `ip shoal-lb` table and the daemon's service API.
 * Only 10.183.0.0/16 and host ports 18300-18399 are used.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { readTable } from '../../src/kernel/nftables-reader.js';
import { api, DIST, waitFor } from './daemon-helpers.js';

export const SHOAL = path.join(DIST, 'bin/shoal');

export function shoalCli(env: NodeJS.ProcessEnv, ...args: string[]) {
  const r = spawnSync(process.execPath, [SHOAL, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A /24 inside 10.183.0.0/16 for this run (random third octet). */
export function serviceSubnet(): { cidr: string; prefix: string; gateway: string } {
  const third = 1 + Math.floor(Math.random() * 250);
  return { cidr: `10.183.${third}.0/24`, prefix: `10.183.${third}.`, gateway: `10.183.${third}.1` };
}

const SERVER = `
const net = require('node:net');
const dgram = require('node:dgram');
const [id, tcpPort, udpPort, countConns] = process.argv.slice(2);
let tcp, udp, up = false, retry, open = 0;
// With "count": every TCP connection's accept and end prints "conns N" (open now), so a test can
// check a connection limit on the replica's side. A connection ends at its peer's FIN (or its
// close): the proxy's FIN reaches us before its next connection does, 'close' only after our own
// shutdown, which could let the next accept be counted first.
const count = (d) => { open += d; if (countConns === 'count') process.stdout.write('conns ' + open + '\\n'); };
function start(cb) {
  up = true;
  // Echoes, except that the line "peer?" is answered with the client address the replica sees.
  tcp = net.createServer((c) => { count(1); let gone = false; const left = () => { if (!gone) { gone = true; count(-1); } }; c.once('end', left); c.once('close', left); c.on('error', () => {}); c.write(id + '\\n'); c.on('data', (d) => c.write(String(d) === 'peer?\\n' ? c.remoteAddress + '\\n' : d)); });
  udp = dgram.createSocket('udp4');
  udp.on('message', (m, r) => udp.send(id, r.port, r.address));
  // A port closed a moment ago may still be in use: try again shortly (unless stopped meanwhile).
  const listen = () => {
    retry = undefined;
    if (!up) return;
    tcp.listen(Number(tcpPort), '0.0.0.0', () => {
      if (!up) return void tcp.close();
      udp.bind(Number(udpPort), '0.0.0.0', cb);
    });
  };
  tcp.on('error', () => (retry = setTimeout(listen, 20)));
  listen();
}
start(() => process.stdout.write('ready\\n'));
// USR1: stop accepting (health fails), keep open connections (draining). USR2: accept again.
process.on('SIGUSR1', () => {
  if (!up) return;
  up = false;
  clearTimeout(retry);
  tcp.close(() => {});
  try { udp.close(); } catch {}
  process.stdout.write('down\\n');
});
process.on('SIGUSR2', () => { if (!up) start(() => process.stdout.write('up\\n')); });
// Stays alive with no socket open (between USR1 and USR2); killed by the test.
setInterval(() => {}, 1 << 30);
`;

export interface IdentityServer {
  id: string;
  pid: number;
  child: ChildProcess;
  output(): string;
  /** Stops (false) or resumes (true) accepting, and waits for the server to say it did. */
  setAccepting(on: boolean): Promise<void>;
  kill(): void;
}

/** `countConns`: the server prints `conns N` at every accept and close (see maxConns()). */
export async function startServer(dir: string, netns: string, id: string, tcpPort = 80, udpPort = 5353, countConns = false): Promise<IdentityServer> {
  const script = path.join(dir, 'identity-server.cjs');
  if (!fs.existsSync(script)) fs.writeFileSync(script, SERVER);
  const child = spawn('ip', ['netns', 'exec', netns, process.execPath, script, id, String(tcpPort), String(udpPort), countConns ? 'count' : ''], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  await waitFor(`server ${id} ready`, () => (out.includes('ready') ? true : undefined), 10_000);
  return {
    id,
    pid: child.pid!,
    child,
    output: () => out,
    // One signal at a time, each acknowledged: pending standard signals are delivered lowest
    // number first, so USR2 then USR1 sent back to back could arrive the other way round.
    setAccepting: async (on) => {
      const word = on ? 'up' : 'down';
      const before = out.split('\n').filter((l) => l === word).length;
      child.kill(on ? 'SIGUSR2' : 'SIGUSR1');
      await waitFor(`server ${id} ${word}`, () => (out.split('\n').filter((l) => l === word).length > before ? true : undefined), 5000, 5);
    },
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

/** The most TCP connections a server started with `countConns` had open at once, in `output` from `from` on. */
export function maxConns(output: string, from = 0): number {
  return Math.max(0, ...[...output.slice(from).matchAll(/^conns (\d+)$/gm)].map((m) => Number(m[1])));
}

/** Connects, reads the first line (the replica's id), closes. 'ERR:<code>' on failure. */
export function tcpHello(host: string, port: number, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    let buf = '';
    const t = setTimeout(() => done('ERR:timeout'), timeoutMs);
    const done = (v: string) => {
      clearTimeout(t);
      s.destroy();
      resolve(v);
    };
    s.on('data', (d) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) done(buf.slice(0, nl));
    });
    s.on('error', (e: NodeJS.ErrnoException) => done(`ERR:${e.code ?? e.message}`));
  });
}

/** One datagram from `socket` (or a fresh one), the answer's text; 'ERR:timeout' without one. */
export function udpHello(host: string, port: number, socket?: dgram.Socket, timeoutMs = 1500): Promise<string> {
  return new Promise((resolve) => {
    const s = socket ?? dgram.createSocket('udp4');
    const t = setTimeout(() => finish('ERR:timeout'), timeoutMs);
    const onMsg = (m: Buffer) => finish(m.toString());
    function finish(v: string) {
      clearTimeout(t);
      s.off('message', onMsg);
      if (!socket) s.close();
      resolve(v);
    }
    s.on('message', onMsg);
    s.send('hi', port, host);
  });
}

const CLIENT = `
const net = require('node:net');
const dgram = require('node:dgram');
const [host, port, count, proto] = process.argv.slice(2);
function tcp() { return new Promise((res) => { const s = net.connect({ host, port: Number(port) }); let b = ''; const t = setTimeout(() => { s.destroy(); res('ERR:timeout'); }, 2000); s.on('data', (d) => { b += d; const i = b.indexOf('\\n'); if (i >= 0) { clearTimeout(t); s.destroy(); res(b.slice(0, i)); } }); s.on('error', (e) => { clearTimeout(t); res('ERR:' + e.code); }); }); }
function udp() { return new Promise((res) => { const s = dgram.createSocket('udp4'); const t = setTimeout(() => { s.close(); res('ERR:timeout'); }, 1500); s.on('message', (m) => { clearTimeout(t); s.close(); res(m.toString()); }); s.send('hi', Number(port), host); }); }
(async () => { const out = []; for (let i = 0; i < Number(count); i++) out.push(await (proto === 'udp' ? udp() : tcp())); process.stdout.write(JSON.stringify(out)); })();
`;

/** `count` sequential connections (or datagrams, each from a new port) from inside `netns`. */
export function helloFrom(dir: string, netns: string, host: string, port: number, count: number, proto: 'tcp' | 'udp' = 'tcp'): string[] {
  const script = path.join(dir, 'hello-client.cjs');
  if (!fs.existsSync(script)) fs.writeFileSync(script, CLIENT);
  const r = spawnSync('ip', ['netns', 'exec', netns, process.execPath, script, host, String(port), String(count), proto], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`client failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as string[];
}

export function tally(ids: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const id of ids) out[id] = (out[id] ?? 0) + 1;
  return out;
}

/** DNAT targets of `service` in the kernel's `ip shoal-lb` table, as "addr:port" (sorted). */
export function kernelBackends(service: string): string[] {
  const table = readTable({ family: 'ip', name: 'shoal-lb' });
  const out = new Set<string>();
  for (const r of table?.rules ?? []) {
    if (r.comment !== `service:${service}`) continue;
    for (const stmt of r.expr as Array<Record<string, unknown>>) {
      const d = stmt['dnat'] as { addr?: unknown; port?: unknown } | undefined;
      if (d && typeof d.addr === 'string') out.add(`${d.addr}:${String(d.port)}`);
    }
  }
  return [...out].sort();
}

/** Whether `ip shoal-lb` exists at all. */
export function lbTableExists(): boolean {
  return readTable({ family: 'ip', name: 'shoal-lb' }) !== undefined;
}

export interface ApiReplica {
  name: string;
  ipv4?: string;
  health: string;
}

export async function serviceReplicas(socket: string, name: string): Promise<ApiReplica[]> {
  const res = await api(socket, `/v1/services?name=${name}`);
  const list = res.body as Array<{ replicas: ApiReplica[] }>;
  return list[0]?.replicas ?? [];
}
