/**
 * A UDP socket read and written in batches (recvmmsg/sendmmsg through the addon), for the DNS
 * server's hot path (issue 18). Node's dgram pays one system call, one JS callback, one address
 * lookup and one request object per datagram; here a readable socket is drained up to 64
 * datagrams at a time, the caller answers them synchronously, and the answers leave in one
 * sendmmsg. Idle, it is a plain libuv poll watcher: nothing spins.
 *
 * With `reusePort`, several sockets (one per worker thread) share one address; the kernel
 * spreads clients over them by a hash of the 4-tuple (SO_REUSEPORT).
 */
import { isIPv6 } from 'node:net';
import { ShoalError } from '../errors.js';
import { SyscallError } from './errors.js';
import { AF_INET, AF_INET6, bind, close, getsockname, SO_RCVBUF, SO_SNDBUF, SOCK_DGRAM, SOL_SOCKET, setsockoptInt, socket } from './ffi.js';
import { sys } from './sys.js';

const SOCK_NONBLOCK = 0o4000;
const SO_REUSEPORT = 15;
const SO_RCVBUFFORCE = 33;
const SO_SNDBUFFORCE = 32;
const BATCH = 64;
/** Bytes kept per received datagram; a longer query is dropped (DNS queries are far smaller). */
const SLOT = 4096;
const ADDR_SLOT = 28;

interface BatchSys {
  recvBatch(fd: number, packets: Buffer, slot: number, addrs: Buffer, lengths: Buffer): number;
  sendBatch(fd: number, arena: Buffer, meta: Buffer, addrs: Buffer, count: number): number;
  pollReadable(fd: number, callback: () => void): unknown;
  pollClose(handle: unknown): void;
}

/** One received datagram; `data` and `from` are valid only until the handler returns. */
export interface Datagram {
  data: Buffer;
  /** Source address as text (`10.0.0.5`, `fd00::5`). */
  source: string;
  /** Source address slot, for replyLater. */
  slot: number;
}

/** Answers one datagram: a Buffer now, undefined for none, or reply later via `later`. */
export type DatagramHandler = (d: Datagram, later: (slot: number) => (answer: Buffer) => void) => Buffer | undefined;

export interface BatchUdpOptions {
  reusePort?: boolean;
  /** SO_RCVBUF / SO_SNDBUF (forced as root; the kernel doubles it). */
  bufferBytes?: number;
}

function sockaddr(address: string, port: number): Buffer {
  const v6 = isIPv6(address);
  const b = Buffer.alloc(v6 ? 28 : 16);
  b.writeUInt16LE(v6 ? AF_INET6 : AF_INET, 0);
  b.writeUInt16BE(port, 2);
  if (v6) {
    const parts = expandV6(address);
    parts.forEach((p, i) => b.writeUInt16BE(p, 8 + i * 2));
  } else {
    address.split('.').forEach((o, i) => b.writeUInt8(Number(o), 4 + i));
  }
  return b;
}

function expandV6(address: string): number[] {
  const [head = '', tail] = address.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.map((g) => parseInt(g, 16));
}

/** Text of the address in an address slot (IPv4, or IPv6 compressed the way Node prints it). */
function sourceText(addrs: Buffer, at: number): string {
  if (addrs.readUInt16LE(at) === AF_INET) return `${addrs[at + 4]}.${addrs[at + 5]}.${addrs[at + 6]}.${addrs[at + 7]}`;
  const groups: string[] = [];
  for (let i = 0; i < 8; i += 1) groups.push(addrs.readUInt16BE(at + 8 + i * 2).toString(16));
  // Longest run of zero groups (of two or more) becomes "::".
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i += 1;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j += 1;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

export class BatchUdpSocket {
  readonly fd: number;
  readonly port: number;
  private readonly api = sys() as unknown as BatchSys;
  private readonly packets = Buffer.alloc(BATCH * SLOT);
  private readonly addrs = Buffer.alloc(BATCH * ADDR_SLOT);
  private readonly lengths = Buffer.alloc(BATCH * 4);
  private readonly arena = Buffer.alloc(BATCH * 4096);
  private readonly meta = Buffer.alloc(BATCH * 12);
  private watcher: unknown;
  private handler: DatagramHandler | undefined;
  private closed = false;

  private constructor(fd: number, port: number) {
    this.fd = fd;
    this.port = port;
  }

  /** Binds `address:port` (port 0: the kernel picks one; see `port`). */
  static bind(address: string, port: number, opts: BatchUdpOptions = {}): BatchUdpSocket {
    const family = isIPv6(address) ? AF_INET6 : AF_INET;
    const fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    try {
      if (opts.reusePort) setsockoptInt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
      const size = opts.bufferBytes ?? 4 * 1024 * 1024;
      setBuffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, size);
      setBuffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, size);
      bind(fd, sockaddr(address, port));
      const bound = getsockname(fd, 28).readUInt16BE(2);
      return new BatchUdpSocket(fd, bound);
    } catch (err) {
      close(fd);
      // Coded like Node's own socket errors (err.code 'EADDRNOTAVAIL'), which callers match on.
      if (err instanceof SyscallError) throw new ShoalError(err.errnoName, `${err.syscall} ${err.errnoName} ${address}:${port}`, { cause: err });
      throw err;
    }
  }

  /** Starts answering: `handler` runs for every datagram, in batches, on this thread. */
  start(handler: DatagramHandler): void {
    this.handler = handler;
    if (this.watcher !== undefined) return;
    const w = this.api.pollReadable(this.fd, () => this.drain());
    if (typeof w === 'number') throw new SyscallError('uv_poll_init', -w, 'poll');
    this.watcher = w;
  }

  /** Reads and answers until the socket is empty, at most `rounds` batches per wake-up (fairness). */
  private drain(rounds = 8): void {
    const handler = this.handler;
    if (!handler || this.watcher === undefined) return;
    for (let r = 0; r < rounds; r += 1) {
      const n = this.api.recvBatch(this.fd, this.packets, SLOT, this.addrs, this.lengths);
      if (n <= 0) return; // EAGAIN (or an error the next wake-up sees again)
      let count = 0;
      let off = 0;
      for (let i = 0; i < n; i += 1) {
        const len = this.lengths.readInt32LE(i * 4);
        if (len < 0) continue;
        const at = i * ADDR_SLOT;
        const d: Datagram = { data: this.packets.subarray(i * SLOT, i * SLOT + len), source: sourceText(this.addrs, at), slot: i };
        const answer = handler(d, this.later);
        if (!answer) continue;
        if (off + answer.length > this.arena.length) {
          this.sendOne(answer, this.addrs.subarray(at, at + ADDR_SLOT));
          continue;
        }
        answer.copy(this.arena, off);
        this.meta.writeInt32LE(off, count * 12);
        this.meta.writeInt32LE(answer.length, count * 12 + 4);
        this.meta.writeInt32LE(i, count * 12 + 8);
        off += answer.length;
        count += 1;
      }
      if (count > 0) this.api.sendBatch(this.fd, this.arena, this.meta, this.addrs, count);
      if (n < BATCH) return;
    }
  }

  /** For an answer that comes after the batch (a forwarded query): keeps a copy of its address. */
  private readonly later = (slot: number): ((answer: Buffer) => void) => {
    const addr = Buffer.from(this.addrs.subarray(slot * ADDR_SLOT, (slot + 1) * ADDR_SLOT));
    return (answer: Buffer) => this.sendOne(answer, addr);
  };

  private sendOne(answer: Buffer, addr: Buffer): void {
    if (this.watcher === undefined) return; // closed meanwhile: nothing to send on
    const meta = Buffer.alloc(12);
    meta.writeInt32LE(answer.length, 4);
    this.api.sendBatch(this.fd, answer, meta, addr, 1);
  }

  /** Stops watching and closes the socket; idempotent (the fd number may be reused after). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.watcher !== undefined) this.api.pollClose(this.watcher);
    this.watcher = undefined;
    close(this.fd);
  }
}

/** Forced size as root (above net.core.rmem_max), the ordinary option otherwise. */
function setBuffer(fd: number, forced: number, plain: number, size: number): void {
  try {
    setsockoptInt(fd, SOL_SOCKET, forced, size);
  } catch {
    setsockoptInt(fd, SOL_SOCKET, plain, size);
  }
}
