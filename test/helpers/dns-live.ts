/**
 * Helpers for the live DNS integration tests: unique loopback addresses, a free port, `dig`,
 * and a dnsmasq upstream started (and later killed by PID) by the test.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A /24 on loopback no other test file uses: 127.<a>.<b>.0, b random. */
export function loopbackNet(a: number): (host: number) => string {
  const b = 1 + Math.floor(Math.random() * 250);
  return (host: number) => `127.${a}.${b}.${host}`;
}

/** A port free for UDP and TCP on `address` (bind, read, release). */
export async function freePort(address: string): Promise<number> {
  for (;;) {
    const udp = dgram.createSocket('udp4');
    const port = await new Promise<number>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(0, address, () => resolve(udp.address().port));
    });
    udp.close();
    const ok = await new Promise<boolean>((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, address, () => srv.close(() => resolve(true)));
    });
    if (ok) return port;
  }
}

export interface DigResult {
  status: string;
  flags: string[];
  answers: string[];
  raw: string;
}

/** Runs dig against server:port; answers are the RDATA column of the answer section. */
export async function dig(server: string, port: number, args: string[]): Promise<DigResult> {
  const { stdout } = await run('dig', [`@${server}`, '-p', String(port), '+time=2', '+tries=1', '+nocookie', ...args], { timeout: 10_000 }).catch(
    (err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }),
  );
  const status = /status: (\w+)/.exec(stdout)?.[1] ?? 'NO_ANSWER';
  const flags = (/;; flags: ([^;]*);/.exec(stdout)?.[1] ?? '').trim().split(/\s+/).filter(Boolean);
  const answers: string[] = [];
  const section = /;; ANSWER SECTION:\n([\s\S]*?)(?:\n\n|$)/.exec(stdout)?.[1] ?? '';
  for (const line of section.split('\n')) {
    const cols = line.trim().split(/\s+/);
    if (cols.length >= 5) answers.push(cols.slice(4).join(' '));
  }
  return { status, flags, answers, raw: stdout };
}

export interface Dnsmasq {
  pid: number;
  address: string;
  port: number;
  stop(): Promise<void>;
}

/** Starts dnsmasq in the foreground on address:port with the given extra options. */
export async function startDnsmasq(address: string, extra: string[], fixedPort?: number): Promise<Dnsmasq> {
  const port = fixedPort ?? (await freePort(address));
  const child: ChildProcess = spawn(
    'dnsmasq',
    ['--no-daemon', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--bind-interfaces', `--listen-address=${address}`, `--port=${port}`, '--pid-file=', '--user=root', ...extra],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const pid = child.pid;
  if (pid === undefined) throw new Error('dnsmasq did not start');
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      process.kill(pid, 'SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 2000))]);
      if (child.exitCode === null && child.signalCode === null) process.kill(pid, 'SIGKILL');
    }
  };
  // Ready when it answers over UDP.
  const deadline = Date.now() + 5000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`dnsmasq exited: ${stderr}`);
    const r = await dig(address, port, ['+time=1', 'version.bind', 'CH', 'TXT']);
    if (r.status !== 'NO_ANSWER') break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`dnsmasq not answering: ${stderr}`);
    }
    await new Promise((r2) => setTimeout(r2, 50));
  }
  return { pid, address, port, stop };
}
