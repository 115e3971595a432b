/**
 * Helpers for the daemon integration tests (65x-69x): the built daemon as a child process
 * (killed by PID), CNI executables run as a runtime runs them, container fixtures made with the
 * reference bridge + host-local plugins, and dig inside a container namespace.
 *
 * `SHOAL_DIST_DIR` points the tests at another build than `<repo>/dist` (its bundles resolve
 * shoal-sys through NODE_PATH then).
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ipQuiet } from '../helpers/kernel-objects.js';

const run = promisify(execFile);
export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const DIST = process.env['SHOAL_DIST_DIR'] ?? path.join(REPO, 'dist');
export const REF_CNI = '/usr/lib/cni';
const childEnv = (): NodeJS.ProcessEnv => ({ ...process.env, NODE_PATH: path.join(REPO, 'node_modules') });

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function waitFor<T>(what: string, fn: () => T | undefined | Promise<T | undefined>, ms = 5000, every = 20): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(every);
  }
}

/** A random free TCP port on 127.0.0.1. */
export async function freeTcpPort(): Promise<number> {
  const srv = http.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

export interface DaemonProc {
  pid: number;
  child: ChildProcess;
  dirs: { state: string; run: string };
  socket: string;
  pidFile: string;
  metricsPort: number;
  logs: Array<Record<string, unknown>>;
  stdout(): string;
  waitLog(pred: (l: Record<string, unknown>) => boolean, ms?: number): Promise<Record<string, unknown>>;
  exited: Promise<{ code: number | null; signal: string | null }>;
  /** SIGTERM, wait; SIGKILL if it does not exit in time. */
  stop(): Promise<{ code: number | null; signal: string | null }>;
}

export async function startDaemon(opts: { state: string; run: string; args?: string[]; netns?: string; waitReady?: boolean; env?: Record<string, string> }): Promise<DaemonProc> {
  const metricsPort = await freeTcpPort();
  const argv = [path.join(DIST, 'bin/shoal'), 'daemon', '--metrics-addr', `127.0.0.1:${metricsPort}`, '--log-level', process.env['SHOAL_TEST_DAEMON_LOG'] ?? 'debug', ...(opts.args ?? [])];
  const [cmd, args] = opts.netns ? ['ip', ['netns', 'exec', opts.netns, process.execPath, ...argv]] : [process.execPath, argv];
  const child = spawn(cmd, args as string[], {
    env: { ...childEnv(), ...opts.env, SHOAL_STATE_DIR: opts.state, SHOAL_RUN_DIR: opts.run },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid === undefined) throw new Error('daemon did not start');
  let out = '';
  let err = '';
  const logs: Array<Record<string, unknown>> = [];
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    for (;;) {
      const nl = out.indexOf('\n');
      if (nl < 0) break;
      const line = out.slice(0, nl);
      out = out.slice(nl + 1);
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        logs.push({ raw: line });
      }
    }
  });
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const pid = child.pid;
  const proc: DaemonProc = {
    pid,
    child,
    dirs: { state: opts.state, run: opts.run },
    socket: path.join(opts.run, 'shoald.sock'),
    pidFile: path.join(opts.run, 'shoald.pid'),
    metricsPort,
    logs,
    stdout: () => `${logs.map((l) => JSON.stringify(l)).join('\n')}\nSTDERR: ${err}`,
    waitLog: (pred, ms = 5000) => waitFor('daemon log line', () => logs.find(pred), ms),
    exited,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        process.kill(pid, 'SIGTERM');
        const r = await Promise.race([exited, sleep(8000).then(() => undefined)]);
        if (r) return r;
        process.kill(pid, 'SIGKILL');
      }
      return exited;
    },
  };
  if (opts.waitReady !== false) {
    await Promise.race([
      proc.waitLog((l) => l['event'] === 'daemon_started', 15_000),
      exited.then((e) => Promise.reject(new Error(`daemon exited (${JSON.stringify(e)}): ${proc.stdout()}`))),
    ]);
  }
  return proc;
}

/** HTTP over the daemon's unix socket. */
export function api(socketPath: string, p: string, method = 'GET'): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, path: p, method }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? (JSON.parse(text) as unknown) : undefined }));
    });
    req.on('error', reject);
    req.end();
  });
}

export async function metricsText(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  return res.text();
}

export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    if (Object.entries(labels).every(([k, v]) => (m[2] ?? '').includes(`${k}="${v}"`))) sum += Number(m[3]);
  }
  return sum;
}

/** Runs a CNI executable as a runtime does: env, config on stdin, JSON out. */
export async function execCni(
  binary: string,
  env: Record<string, string>,
  config: object,
  opts: { netns?: string } = {},
): Promise<{ code: number; json: Record<string, unknown> | undefined; stderr: string; endedAt: number }> {
  return new Promise((resolve, reject) => {
    const [cmd, args] = opts.netns ? ['ip', ['netns', 'exec', opts.netns, binary]] : [binary, []];
    const child = spawn(cmd, args as string[], { env: { ...childEnv(), ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const endedAt = Date.now();
      let json: Record<string, unknown> | undefined;
      try {
        json = out.trim() ? (JSON.parse(out) as Record<string, unknown>) : undefined;
      } catch {
        json = { unparsed: out };
      }
      resolve({ code: code ?? -1, json, stderr: err, endedAt });
    });
    child.stdin.end(JSON.stringify(config));
  });
}

export interface DigOut {
  status: string;
  answers: string[];
  raw: string;
}

/** `dig` run inside a netns (a container), against server:port. */
export async function digIn(netns: string, server: string, args: string[], port = 53): Promise<DigOut> {
  const { stdout } = await run('ip', ['netns', 'exec', netns, 'dig', `@${server}`, '-p', String(port), '+time=2', '+tries=1', '+nocookie', ...args], { timeout: 10_000 }).catch(
    (e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }),
  );
  const status = /status: (\w+)/.exec(stdout)?.[1] ?? 'NO_ANSWER';
  const section = /;; ANSWER SECTION:\n([\s\S]*?)(?:\n\n|$)/.exec(stdout)?.[1] ?? '';
  const answers = section
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((c) => c.length >= 5)
    .map((c) => c.slice(4).join(' '));
  return { status, answers, raw: stdout };
}

// A random start per run, then consecutive: two networks of one run never share a subnet (two
// bridges with one subnet send replies out of the wrong one).
let subnetSeq = Math.floor(Math.random() * 2500);

/** A subnet 10.24x.y.0/24 unique within the run: prefix "10.24x.y." and the gateway ".1". */
export function testSubnet(): { prefix: string; cidr: string; gateway: string } {
  subnetSeq = (subnetSeq + 1) % 2500;
  const x = Math.floor(subnetSeq / 250);
  const y = 1 + (subnetSeq % 250);
  const prefix = `10.24${x}.${y}.`;
  return { prefix, cidr: `${prefix}0/24`, gateway: `${prefix}1` };
}

/** A network made by the reference bridge + host-local (no ipMasq), with shoal-dns chained. */
export class RefNetwork {
  readonly subnet = testSubnet();
  readonly hostLocalDir: string;
  constructor(
    readonly name: string,
    readonly bridge: string,
    readonly stateDir: string,
    readonly dnsConf: Record<string, unknown> = {},
    /** Run the plugins inside this netns (it plays "the host"); default: the real host. */
    readonly hostNetns?: string,
  ) {
    this.hostLocalDir = path.join(stateDir, 'host-local');
  }

  /** A second interface (`network connect`) gets no default route: the first one has it. */
  private bridgeConf(ifname = 'eth0') {
    return {
      cniVersion: '0.4.0',
      name: this.name,
      type: 'bridge',
      bridge: this.bridge,
      isGateway: true,
      ipMasq: false,
      ipam: { type: 'host-local', subnet: this.subnet.cidr, dataDir: this.hostLocalDir, routes: ifname === 'eth0' ? [{ dst: '0.0.0.0/0' }] : [] },
    };
  }

  dnsConfig(prevResult: unknown, aliases: string[] = []) {
    return {
      cniVersion: '0.4.0',
      name: this.name,
      type: 'shoal-dns',
      stateDir: this.stateDir,
      runtimeConfig: { aliases: { [this.name]: aliases } },
      ...this.dnsConf,
      ...(prevResult === undefined ? {} : { prevResult }),
    };
  }

  env(command: string, containerId: string, netnsPath: string, podName?: string, ifname = 'eth0'): Record<string, string> {
    return {
      CNI_COMMAND: command,
      CNI_CONTAINERID: containerId,
      CNI_NETNS: netnsPath,
      CNI_IFNAME: ifname,
      CNI_PATH: REF_CNI,
      CNI_ARGS: `IgnoreUnknown=1${podName ? `;K8S_POD_NAME=${podName}` : ''}`,
    };
  }

  /** Runs bridge ADD; returns its result (the prevResult for shoal-dns) and the address. */
  async attach(containerId: string, netnsPath: string, ifname = 'eth0'): Promise<{ result: Record<string, unknown>; ip: string }> {
    const r = await execCni(path.join(REF_CNI, 'bridge'), this.env('ADD', containerId, netnsPath, undefined, ifname), this.bridgeConf(ifname), { netns: this.hostNetns });
    if (r.code !== 0) throw new Error(`bridge ADD failed: ${JSON.stringify(r.json)} ${r.stderr}`);
    const ips = r.json!['ips'] as Array<{ address: string }>;
    return { result: r.json!, ip: ips[0]!.address.split('/')[0]! };
  }

  async dnsAdd(containerId: string, netnsPath: string, prevResult: unknown, podName: string, aliases: string[] = [], ifname = 'eth0') {
    return execCni(path.join(DIST, 'cni/shoal-dns'), this.env('ADD', containerId, netnsPath, podName, ifname), this.dnsConfig(prevResult, aliases));
  }

  async dnsDel(containerId: string, netnsPath: string, ifname = 'eth0') {
    return execCni(path.join(DIST, 'cni/shoal-dns'), this.env('DEL', containerId, netnsPath, undefined, ifname), this.dnsConfig(undefined));
  }

  async detach(containerId: string, netnsPath: string, ifname = 'eth0'): Promise<void> {
    await execCni(path.join(REF_CNI, 'bridge'), this.env('DEL', containerId, netnsPath, undefined, ifname), this.bridgeConf(ifname), { netns: this.hostNetns });
  }

  /** The bridge plugin leaves its bridge behind on DEL; the test made it, the test removes it. */
  removeBridge(): void {
    ipQuiet(['link', 'del', 'dev', this.bridge], this.hostNetns);
  }
}

export function tempDirs(tag: string): { root: string; state: string; run: string; cleanup(): void } {
  const root = mkdtempSync(path.join(os.tmpdir(), `shoal-${tag}-`));
  return { root, state: path.join(root, 'state'), run: path.join(root, 'run'), cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

/**
 * A probe that runs inside a container netns and reports (on stdout, host clock ms) the first
 * moment `name` gets an A answer (`appear`) or stops getting one (`vanish`), querying every 2 ms.
 */
export function startProbe(dir: string, netns: string, server: string, name: string, mode: 'appear' | 'vanish') {
  const script = path.join(dir, 'probe.cjs');
  if (!existsSync(script)) {
    writeFileSync(
      script,
      `const dgram = require('node:dgram');
const [server, name, mode] = process.argv.slice(2);
const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
const sock = dgram.createSocket('udp4');
let id = 0;
sock.on('message', (m) => {
  const an = m.readUInt16BE(6);
  if ((mode === 'appear' && an > 0) || (mode === 'vanish' && an === 0)) { process.stdout.write('hit ' + Date.now() + '\\n'); process.exit(0); }
});
sock.bind(0, () => {
  process.stdout.write('ready\\n');
  setInterval(() => {
    id = (id + 1) & 0xffff;
    const h = Buffer.alloc(12); h.writeUInt16BE(id, 0); h.writeUInt16BE(0x0100, 2); h.writeUInt16BE(1, 4);
    sock.send(Buffer.concat([h, ...labels, Buffer.from([0, 0, 1, 0, 1])]), 53, server);
  }, 2);
});
setTimeout(() => { process.stdout.write('timeout\\n'); process.exit(1); }, 10000);
`,
    );
  }
  const child = spawn('ip', ['netns', 'exec', netns, process.execPath, script, server, name, mode], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const ready = waitFor('probe ready', () => (out.includes('ready') ? true : undefined), 5000, 5);
  const result = new Promise<number>((resolve, reject) =>
    child.once('exit', () => {
      const m = /hit (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
      else reject(new Error(`probe failed: ${out}`));
    }),
  );
  return { pid: child.pid!, ready, result, kill: () => child.exitCode === null && child.pid && process.kill(child.pid, 'SIGKILL') };
}

/** The daemon's rules in `inet shoal` dns_input with comment `owner` (read with nft -j): the accept rules, or (`kind: 'limit'`) the per-client rate limits. */
export function dnsRulesOf(owner: string, netns?: string, kind: 'accept' | 'limit' = 'accept'): number {
  const args = ['-j', 'list', 'table', 'inet', 'shoal'];
  const res = netns ? spawnSync('ip', ['netns', 'exec', netns, 'nft', ...args], { encoding: 'utf8' }) : spawnSync('nft', args, { encoding: 'utf8' });
  if (res.status !== 0) return 0;
  const doc = JSON.parse(res.stdout) as { nftables: Array<{ rule?: { chain: string; comment?: string; expr: Array<Record<string, unknown>> } }> };
  const verdict = kind === 'accept' ? 'accept' : 'drop';
  return doc.nftables.filter((i) => i.rule?.chain === 'dns_input' && i.rule.comment === owner && i.rule.expr.some((e) => verdict in e)).length;
}
