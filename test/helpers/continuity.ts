/**
 * Watching a running container while things change around it (issue 12: a test that only looks
 * at end states misses a container that loses its gateway for 20 s in between).
 *
 * From inside the container's netns: iputils `ping -O` to the gateway, which names every probe
 * that got no reply before the next was due, and dns-watch.cjs, which sends one A query per
 * interval and records each one unanswered within 1 s or answered wrongly. Both run through
 * `nsenter --net=<path>`, so any netns path works (a test's /run/netns name, podman's sandbox).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const DNS_WATCH = path.join(path.dirname(fileURLToPath(import.meta.url)), 'dns-watch.cjs');

export interface DnsWatchReport {
  sent: number;
  answered: number;
  lost: Array<{ name: string; at: number }>;
  wrong: Array<{ name: string; at: number; rcode: number; answers: string[] }>;
  maxLatencyMs: number;
}

export interface ContinuityReport {
  ping: { sent: number; replied: number; lost: number[] };
  dns: DnsWatchReport | undefined;
}

export interface WatchOptions {
  /** Pinged every interval. */
  gateway: string;
  /** DNS server (default: the gateway) and the names to ask it, cycled, with the expected A record. */
  dnsServer?: string;
  names?: Array<{ name: string; address: string }>;
  intervalMs?: number;
}

/** Fails clearly when the watcher's tools are missing (scripts/setup.sh installs them). */
function requireTools(): void {
  for (const [tool, pkg] of [['nsenter', 'util-linux'], ['ping', 'iputils-ping']] as const) {
    const found = spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status === 0;
    if (!found) throw new Error(`continuity watch needs "${tool}" (Debian package ${pkg}; scripts/setup.sh installs it)`);
  }
  const version = spawnSync('ping', ['-V'], { encoding: 'utf8' });
  if (!/iputils/.test(`${version.stdout}${version.stderr}`)) throw new Error('continuity watch needs iputils ping (for -O), not busybox ping');
}

function lines(child: ChildProcess, onLine: (line: string) => void): void {
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      onLine(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  });
}

function waitUntil(what: string, done: () => boolean, child: ChildProcess, ms = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const tick = setInterval(() => {
      if (done()) {
        clearInterval(tick);
        resolve();
      } else if (child.exitCode !== null || Date.now() - started > ms) {
        clearInterval(tick);
        reject(new Error(`continuity watch: ${what} did not happen within ${ms} ms`));
      }
    }, 10);
  });
}

export interface Watch {
  /** Stops both probes and returns what they saw. */
  stop(): Promise<ContinuityReport>;
  /** Kills the probes without a report (teardown after a failure). */
  kill(): void;
}

/** Starts watching; resolves once the gateway answered a ping and the DNS probe is sending. */
export async function watchContainer(netnsPath: string, o: WatchOptions): Promise<Watch> {
  requireTools();
  const interval = o.intervalMs ?? 100;
  const nsenter = ['nsenter', `--net=${netnsPath}`];
  const ping = spawn(nsenter[0]!, [...nsenter.slice(1), 'ping', '-n', '-O', '-i', String(interval / 1000), '-W', '1', o.gateway], { stdio: ['ignore', 'pipe', 'inherit'] });
  const replied = new Set<number>();
  const unanswered = new Set<number>();
  let highest = 0;
  lines(ping, (line) => {
    const reply = /icmp_seq=(\d+) ttl=/.exec(line);
    const missing = /no answer yet for icmp_seq=(\d+)/.exec(line);
    if (reply) replied.add(Number(reply[1]));
    if (missing) unanswered.add(Number(missing[1]));
    highest = Math.max(highest, Number(reply?.[1] ?? missing?.[1] ?? 0));
  });
  const children: ChildProcess[] = [ping];
  const kill = () => {
    for (const c of children) if (c.exitCode === null && c.pid) process.kill(c.pid, 'SIGKILL');
  };
  try {
    await waitUntil(`a first ping reply from ${o.gateway}`, () => replied.size > 0, ping);
    let dns: ChildProcess | undefined;
    let dnsOut = '';
    if (o.names?.length) {
      const pairs = o.names.map((n) => `${n.name}=${n.address}`);
      dns = spawn(nsenter[0]!, [...nsenter.slice(1), process.execPath, DNS_WATCH, o.dnsServer ?? o.gateway, String(interval), ...pairs], { stdio: ['pipe', 'pipe', 'inherit'] });
      children.push(dns);
      dns.stdout!.on('data', (d: Buffer) => (dnsOut += d.toString()));
      await waitUntil('the DNS probe start', () => dnsOut.includes('ready'), dns);
    }
    const exited = (c: ChildProcess) => new Promise<void>((resolve) => (c.exitCode !== null ? resolve() : c.once('exit', () => resolve())));
    return {
      kill,
      async stop() {
        dns?.stdin!.end('stop\n');
        // SIGINT after the last reply was due: ping prints its statistics and exits.
        await new Promise((r) => setTimeout(r, interval));
        ping.kill('SIGINT');
        await Promise.all(children.map(exited));
        const report = dns ? (JSON.parse(dnsOut.split('\n').find((l) => l.startsWith('{')) ?? 'null') as DnsWatchReport | null) : null;
        const lost = [...unanswered].filter((s) => !replied.has(s)).sort((a, b) => a - b);
        return { ping: { sent: highest, replied: replied.size, lost }, dns: report ?? undefined };
      },
    };
  } catch (err) {
    kill();
    throw err;
  }
}
