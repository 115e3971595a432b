/**
 * Network namespaces against the real kernel. The second path for every check is iproute2
 * (`ip netns list`, `ip netns exec ... ss`) or /proc of another process, never our own module.
 * The main property under test: only what runs synchronously inside a withNetns window sees the
 * container namespace; timers, servers and the threadpool of the rest of the process never do.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as dgram from 'node:dgram';
import * as dns from 'node:dns';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as pathMod from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildSync } from 'esbuild';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { NetnsError, NetnsNotFoundError } from '../../src/kernel/errors.js';
import * as ffi from '../../src/kernel/ffi.js';
import {
  createNetns,
  currentNetnsInode,
  deleteNetns,
  listNetns,
  netnsExists,
  netnsInode,
  netnsPath,
  openNetnsFd,
  warmThreadpool,
  withNetns,
} from '../../src/kernel/netns.js';
import { testRunId, uniqueName } from '../helpers/names.js';

const created: string[] = [];
const children: ChildProcess[] = [];
let hostInode = 0;

function make(): { name: string; path: string } {
  const name = uniqueName('ns');
  created.push(name);
  return { name, path: createNetns(name) };
}

function ipNetnsNames(): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter(Boolean);
}

/** Listening UDP/TCP ports in a namespace, read by `ss` (in the host when name is undefined). */
function listeningPorts(proto: 'u' | 't', name?: string): number[] {
  const ss = ['ss', '-Hn', `-${proto}l`];
  const out = name
    ? execFileSync('ip', ['netns', 'exec', name, ...ss], { encoding: 'utf8' })
    : execFileSync(ss[0]!, ss.slice(1), { encoding: 'utf8' });
  return out
    .split('\n')
    .filter(Boolean)
    .map((l) => Number(l.trim().split(/\s+/)[3]?.split(':').pop()));
}

/** A raw libc UDP socket bound to an ephemeral port: socket() and bind() run right now. */
function libcUdpSocket(): { fd: number; port: number } {
  const fd = ffi.socket(ffi.AF_INET, ffi.SOCK_DGRAM, 0);
  const sa = Buffer.alloc(16);
  sa.writeUInt16LE(ffi.AF_INET, 0);
  ffi.bind(fd, sa); // 0.0.0.0:0 — lo is down in a fresh namespace, so no 127.0.0.1 yet
  return { fd, port: ffi.getsockname(fd, 16).readUInt16BE(2) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  await warmThreadpool();
  hostInode = currentNetnsInode();
});

afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
  for (const name of created.splice(0)) deleteNetns(name);
});

afterAll(() => {
  const leftovers = fs.existsSync('/run/netns') ? fs.readdirSync('/run/netns').filter((n) => n.includes(testRunId())) : [];
  expect(leftovers).toEqual([]);
  expect(currentNetnsInode()).toBe(hostInode);
});

describe('createNetns / deleteNetns', () => {
  it('creates a namespace iproute2 sees, on a shared /run/netns, and deletes it idempotently', () => {
    const { name, path } = make();
    expect(path).toBe(`/run/netns/${name}`);
    expect(netnsExists(path)).toBe(true);
    expect(listNetns()).toContain(name);
    expect(ipNetnsNames()).toContain(name);
    // Same namespace as iproute2 enters, and not the host's.
    const viaIp = Number(execFileSync('ip', ['netns', 'exec', name, 'stat', '-L', '-c', '%i', '/proc/self/ns/net'], { encoding: 'utf8' }).trim());
    expect(viaIp).toBe(netnsInode(path));
    expect(viaIp).not.toBe(hostInode);
    expect(currentNetnsInode()).toBe(hostInode);
    const prop = execFileSync('findmnt', ['-n', '-o', 'PROPAGATION', '/run/netns'], { encoding: 'utf8' }).trim();
    expect(prop.split(',')[0]).toBe('shared');

    deleteNetns(name);
    expect(fs.existsSync(path)).toBe(false);
    expect(ipNetnsNames()).not.toContain(name);
    expect(() => deleteNetns(name)).not.toThrow();
    expect(() => deleteNetns(path)).not.toThrow();
  });

  it('refuses an existing name, leaving that namespace intact and the process in the host', () => {
    const { name, path } = make();
    const inode = netnsInode(path);
    expect(() => createNetns(name)).toThrow(NetnsError);
    expect(() => createNetns(name)).toThrow(/already exists/);
    expect(netnsInode(path)).toBe(inode);
    expect(currentNetnsInode()).toBe(hostInode);
  });

  it('leaves nothing behind when creation fails', () => {
    const name = `${uniqueName('ns')}${'x'.repeat(300)}`; // ENAMETOOLONG when creating the file
    expect(() => createNetns(name)).toThrow(/failed to create network namespace/);
    expect(fs.readdirSync('/run/netns').filter((n) => n.startsWith(name.slice(0, 12)))).toEqual([]);
    expect(currentNetnsInode()).toBe(hostInode);
  });

  it('rejects names that escape /run/netns and never deletes a runtime-owned path', () => {
    expect(() => netnsPath('../etc')).toThrow(NetnsError);
    expect(() => createNetns('..')).toThrow(NetnsError);
    expect(() => deleteNetns('/proc/self/ns/net')).toThrow(/only namespaces under/);
  });
});

describe('withNetns', () => {
  it('runs inside the namespace and returns to the host, also when fn throws', () => {
    const { path } = make();
    const inside = withNetns(path, () => currentNetnsInode());
    expect(inside).toBe(netnsInode(path));
    expect(currentNetnsInode()).toBe(hostInode);
    expect(() => withNetns(path, () => { throw new Error('boom'); })).toThrow('boom');
    expect(currentNetnsInode()).toBe(hostInode);
  });

  it('nests: the inner window returns to the outer namespace', () => {
    const a = make();
    const b = make();
    const seen = withNetns(a.path, () => [currentNetnsInode(), withNetns(b.path, () => currentNetnsInode()), currentNetnsInode()]);
    expect(seen).toEqual([netnsInode(a.path), netnsInode(b.path), netnsInode(a.path)]);
    expect(currentNetnsInode()).toBe(hostInode);
  });

  it('refuses a Promise-returning fn after switching back', async () => {
    const { path } = make();
    expect(() => withNetns(path, async () => 1)).toThrow(/returned a Promise/);
    expect(() => withNetns(path, () => Promise.reject(new Error('x')))).toThrow(NetnsError);
    expect(currentNetnsInode()).toBe(hostInode);
    await sleep(10); // a refused rejection must not surface as unhandled
  });

  it('reports a missing path, a plain file and a non-network namespace as NetnsNotFoundError', () => {
    const plain = `/tmp/${uniqueName('ns')}`;
    fs.writeFileSync(plain, '');
    try {
      expect(() => withNetns(`/run/netns/${uniqueName('ns')}`, () => 0)).toThrow(NetnsNotFoundError);
      expect(() => withNetns(plain, () => 0)).toThrow(NetnsNotFoundError);
      expect(() => openNetnsFd(plain)).toThrow(NetnsNotFoundError);
      expect(() => withNetns('/proc/self/ns/mnt', () => 0)).toThrow(NetnsNotFoundError);
      expect(currentNetnsInode()).toBe(hostInode);
    } finally {
      fs.rmSync(plain, { force: true });
    }
  });

  it('accepts a /proc/<pid>/ns/net path (CNI_NETNS of a runtime)', async () => {
    const { name, path } = make();
    const child = spawn('ip', ['netns', 'exec', name, 'sleep', '30'], { stdio: 'ignore' });
    children.push(child);
    const procPath = `/proc/${child.pid}/ns/net`;
    for (let i = 0; i < 100 && fs.statSync(procPath).ino !== netnsInode(path); i++) await sleep(10);
    expect(withNetns(procPath, () => currentNetnsInode())).toBe(netnsInode(path));
    const fd = openNetnsFd(procPath);
    expect(fs.fstatSync(fd).ino).toBe(netnsInode(path));
    fs.closeSync(fd);
  });
});

describe('the rest of the process never runs inside the container namespace', () => {
  it('timers, a host server, deferred sockets and the threadpool stay in the host', async () => {
    const { name, path } = make();
    const nsInode = netnsInode(path);

    // A host TCP server and a timer that samples the namespace on every tick.
    const server = net.createServer((s) => s.end('host'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const tickInodes = new Set<number>();
    const timer = setInterval(() => tickInodes.add(currentNetnsInode()), 1);

    const insideInodes = new Set<number>();
    for (let i = 0; i < 200; i++) {
      insideInodes.add(withNetns(path, () => currentNetnsInode()));
      if (i % 10 === 0) await sleep(2); // let the timer and I/O run between windows
    }

    // A socket made synchronously inside the window lands in the namespace...
    const sock = withNetns(path, () => libcUdpSocket());
    // ...while APIs that defer socket() (address lookup first) land in the host.
    const udp = dgram.createSocket('udp4');
    const bound = new Promise<void>((r) => udp.once('listening', r));
    withNetns(path, () => udp.bind(0, '0.0.0.0'));
    await bound;
    const udpPort = udp.address().port;
    const lateServer = net.createServer((s) => s.end('late'));
    const lateListening = new Promise<void>((r) => lateServer.once('listening', r));
    withNetns(path, () => lateServer.listen(0, '127.0.0.1'));
    await lateListening;
    const latePort = (lateServer.address() as net.AddressInfo).port;

    try {
      expect([...insideInodes]).toEqual([nsInode]);
      expect(tickInodes.size).toBeGreaterThan(0);
      expect([...tickInodes]).toEqual([hostInode]);

      const nsUdp = listeningPorts('u', name);
      const hostUdp = listeningPorts('u');
      expect(nsUdp).toContain(sock.port);
      expect(hostUdp).not.toContain(sock.port);
      expect(hostUdp).toContain(udpPort);
      expect(nsUdp).not.toContain(udpPort);
      expect(listeningPorts('t')).toContain(latePort);
      expect(listeningPorts('t', name)).not.toContain(latePort);

      // The host server is still reachable from the host, and so is the deferred one.
      const fetch = (p: number) =>
        new Promise<string>((resolve, reject) => {
          const c = net.connect(p, '127.0.0.1');
          let data = '';
          c.on('data', (d) => (data += d.toString()));
          c.on('end', () => resolve(data));
          c.on('error', reject);
        });
      expect(await fetch(port)).toBe('host');
      expect(await fetch(latePort)).toBe('late');

      // Threadpool work after all those windows runs in the host namespace.
      const poolLinks = await Promise.all(Array.from({ length: 8 }, () => fs.promises.readlink('/proc/thread-self/ns/net')));
      expect(new Set(poolLinks)).toEqual(new Set([`net:[${hostInode}]`]));
      const addr = await dns.promises.lookup('localhost', { family: 4 });
      expect(addr.address).toBe('127.0.0.1');
      expect(currentNetnsInode()).toBe(hostInode);
    } finally {
      clearInterval(timer);
      ffi.close(sock.fd);
      udp.close();
      await new Promise((r) => lateServer.close(r));
      await new Promise((r) => server.close(r));
    }
  });
});

describe('the libuv threadpool in a CommonJS bundle (what a CNI executable is)', () => {
  /**
   * A bundled CJS process has done no async work when it first enters a namespace, so its
   * threadpool is not started yet. Queue async fs work inside a window (here: a callback, which
   * withNetns cannot see), then ask where the pool threads live.
   */
  function runChild(nsPath: string, warm: boolean): { host: string; pool: string[] } {
    const dir = fs.mkdtempSync(pathMod.join(os.tmpdir(), 'shoal-ns-'));
    try {
      const entry = pathMod.join(dir, 'entry.ts');
      const netnsTs = pathMod.resolve(pathMod.dirname(fileURLToPath(import.meta.url)), '../../src/kernel/netns.ts');
      fs.writeFileSync(
        entry,
        `import * as fs from 'node:fs';
import { warmThreadpool, withNetns } from ${JSON.stringify(netnsTs)};
const link = () => fs.promises.readlink('/proc/thread-self/ns/net');
async function main(): Promise<void> {
  if (${warm}) await warmThreadpool();
  await new Promise<void>((resolve) => withNetns(${JSON.stringify(nsPath)}, () => { fs.readlink('/proc/thread-self/ns/net', () => resolve()); }));
  const pool = await Promise.all(Array.from({ length: 8 }, link));
  process.stdout.write(JSON.stringify({ host: fs.readlinkSync('/proc/thread-self/ns/net'), pool: [...new Set(pool)] }));
}
void main();
`,
      );
      const out = pathMod.join(dir, 'child.cjs');
      // The options of scripts/build.mjs that matter here: CJS, addons external, import.meta.url shim.
      buildSync({
        entryPoints: [entry], bundle: true, platform: 'node', format: 'cjs', outfile: out, external: ['*.node'], logLevel: 'silent',
        define: { 'import.meta.url': 'importMetaUrl' }, inject: [pathMod.resolve(pathMod.dirname(fileURLToPath(import.meta.url)), '../../scripts/import-meta-url.js')],
      });
      const json = execFileSync(process.execPath, [out], {
        encoding: 'utf8',
        env: { ...process.env, NODE_PATH: pathMod.resolve(pathMod.dirname(fileURLToPath(import.meta.url)), '../../node_modules') },
      });
      return JSON.parse(json) as { host: string; pool: string[] };
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  it('without warmThreadpool, async work queued inside a window traps the pool in the namespace', () => {
    const { path } = make();
    const cold = runChild(path, false);
    expect(cold.host).toBe(`net:[${hostInode}]`);
    expect(cold.pool).toEqual([`net:[${netnsInode(path)}]`]);
  });

  it('after warmThreadpool the pool stays in the host, whatever runs inside a window', () => {
    const { path } = make();
    const warm = runChild(path, true);
    expect(warm.host).toBe(`net:[${hostInode}]`);
    expect(warm.pool).toEqual([`net:[${hostInode}]`]);
  });
});
