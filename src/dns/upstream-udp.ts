/**
 * UDP exchanges with upstream resolvers over a few long-lived connected sockets per upstream,
 * as dnsmasq (its pool of random-port sockets) and CoreDNS's `forward` (socket reuse) do, not one
 * socket per query.
 *
 * Why (torture dns, issue 19): under a flood of names that are not local, every query is a
 * forward. A socket per query cost socket, bind, connect and close, a libuv handle and a dozen
 * JS objects, alive while the answer travelled; those were what the worker's young-generation
 * GC had to copy: pauses of 10-38 ms, and behind them, with the socket's queue filling, another
 * client's p99 of 23-107 ms. With forwarding off, the same flood gave 7 ms.
 *
 * What a reply must match to be taken (against off-path spoofing): it comes from the upstream
 * (the socket is connected), carries a query's ID (random, unique among the socket's queries in
 * flight), has QR set, and repeats that query's question (case aside); an error answer without
 * a question section (FORMERR, REFUSED from some servers) is taken on the ID alone. Source ports
 * keep changing: a socket carries at most `maxUses` queries and takes new ones for at most
 * `maxAgeMs`, each query goes to a random one of up to `perUpstream` sockets, and a retired
 * socket closes once its last answer is in. What that gives up against a fresh port per query:
 * an attacker guessing blind needs one of a few ports instead of one of ~28,000.
 */
import dgram from 'node:dgram';
import { randomInt } from 'node:crypto';
import { isIPv6 } from '../addr.js';
import type { Upstream } from './ip.js';
import { skipName } from './wire.js';

export interface UdpPoolOptions {
  /** Sockets in use per upstream (default 4). */
  perUpstream?: number;
  /** Queries one socket carries before it is retired (default 256). */
  maxUses?: number;
  /** How long one socket takes new queries, milliseconds (default 10000). */
  maxAgeMs?: number;
}

/** How a pooled exchange fails: the caller words the error (it knows the upstream's label). */
export interface UdpFailures {
  timeout(upstream: Upstream, timeoutMs: number): Error;
  failed(upstream: Upstream, cause: unknown): Error;
}

interface Pending {
  query: Buffer;
  resolve: (reply: Buffer) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/** The reply's first question equals the query's, ASCII case aside (some servers re-case). */
function sameQuestion(query: Buffer, reply: Buffer): boolean {
  const nameEnd = skipName(query, 12);
  const end = nameEnd + 4; // type and class
  if (nameEnd < 0 || end > query.length || reply.length < end) return false;
  for (let i = 12; i < end; i += 1) {
    let a = query[i] as number;
    let b = reply[i] as number;
    if (a >= 0x41 && a <= 0x5a) a |= 0x20;
    if (b >= 0x41 && b <= 0x5a) b |= 0x20;
    if (a !== b) return false;
  }
  return true;
}

/** A reply this query can take: see the module comment. */
function answers(query: Buffer, reply: Buffer): boolean {
  if (reply.length < 12 || (reply[2] as number) < 0x80) return false; // short, or QR clear
  if (reply.readUInt16BE(4) === 0) return ((reply[3] as number) & 0x0f) !== 0;
  return sameQuestion(query, reply);
}

/** One connected socket to one upstream and the queries in flight on it, by ID. */
class Channel {
  private readonly sock: dgram.Socket;
  private readonly pending = new Map<number, Pending>();
  private readonly unsent: number[] = [];
  private readonly ageTimer: NodeJS.Timeout;
  private connected = false;
  private closed = false;
  uses = 0;
  retired = false;

  constructor(
    private readonly upstream: Upstream,
    private readonly failures: UdpFailures,
    private readonly onRetire: (c: Channel) => void,
    maxAgeMs: number,
  ) {
    this.sock = dgram.createSocket(isIPv6(upstream.host) ? 'udp6' : 'udp4');
    this.sock.unref(); // queries in flight keep the process alive through their timers, not this
    // An ICMP unreachable surfaces here as ECONNREFUSED: every query on the socket is doomed.
    this.sock.on('error', (err) => this.fail(err));
    this.sock.on('message', (msg: Buffer) => {
      if (msg.length < 12) return;
      const id = msg.readUInt16BE(0);
      const p = this.pending.get(id);
      if (p && answers(p.query, msg)) this.settle(id, undefined, msg); // else stray or spoofed: keep waiting
    });
    // A failed connect (no route: ENETUNREACH) calls back with the error.
    this.sock.connect(upstream.port, upstream.host, (err?: Error) => {
      if (err) return this.fail(err);
      this.connected = true;
      for (const id of this.unsent.splice(0)) this.send(id);
    });
    this.ageTimer = setTimeout(() => this.retire(), maxAgeMs);
    this.ageTimer.unref();
  }

  /** Sends `query` (its ID rewritten to one free on this socket); resolves with the reply. */
  exchange(query: Buffer, timeoutMs: number): Promise<Buffer> {
    let id = query.readUInt16BE(0);
    while (this.pending.has(id)) id = randomInt(0, 0x10000);
    query.writeUInt16BE(id, 0);
    this.uses += 1;
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => this.settle(id, this.failures.timeout(this.upstream, timeoutMs)), timeoutMs);
      this.pending.set(id, { query, resolve, reject, timer });
      if (this.connected) this.send(id);
      else this.unsent.push(id);
    });
  }

  /** Takes no new queries; closes once the last one in flight is settled. */
  retire(): void {
    if (this.retired) return;
    this.retired = true;
    clearTimeout(this.ageTimer);
    this.onRetire(this);
    if (this.pending.size === 0) this.close();
  }

  private send(id: number): void {
    const p = this.pending.get(id);
    if (!p || this.closed) return;
    this.sock.send(p.query, (err) => {
      if (err) this.settle(id, this.failures.failed(this.upstream, err));
    });
  }

  private settle(id: number, err: Error | undefined, reply?: Buffer): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    if (err) p.reject(err);
    else p.resolve(reply as Buffer);
    if (this.retired && this.pending.size === 0) this.close();
  }

  private fail(cause: unknown): void {
    const err = this.failures.failed(this.upstream, cause);
    for (const id of [...this.pending.keys()]) this.settle(id, err);
    this.retire();
    this.close();
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.ageTimer);
    try {
      this.sock.close();
    } catch {
      // already closed by Node after an error
    }
  }
}

export class UdpUpstreamPool {
  private readonly perUpstream: number;
  private readonly maxUses: number;
  private readonly maxAgeMs: number;
  /** Channels taking new queries, by upstream label. */
  private readonly open = new Map<string, Channel[]>();

  constructor(
    private readonly failures: UdpFailures,
    options: UdpPoolOptions = {},
  ) {
    this.perUpstream = options.perUpstream ?? 4;
    this.maxUses = options.maxUses ?? 256;
    this.maxAgeMs = options.maxAgeMs ?? 10_000;
  }

  /** Sockets taking new queries now, over all upstreams (tests and metrics). */
  get sockets(): number {
    let n = 0;
    for (const list of this.open.values()) n += list.length;
    return n;
  }

  /** One query to `upstream`; its ID may be rewritten (the buffer is the caller's, used as is). */
  exchange(upstream: Upstream, query: Buffer, timeoutMs: number): Promise<Buffer> {
    let list = this.open.get(upstream.label);
    if (!list) this.open.set(upstream.label, (list = []));
    let channel: Channel;
    if (list.length < this.perUpstream) {
      channel = new Channel(upstream, this.failures, (c) => this.forget(upstream.label, c), this.maxAgeMs);
      list.push(channel);
    } else {
      channel = list[randomInt(0, list.length)] as Channel;
    }
    const reply = channel.exchange(query, timeoutMs);
    if (channel.uses >= this.maxUses) channel.retire();
    return reply;
  }

  private forget(label: string, channel: Channel): void {
    const list = this.open.get(label);
    if (!list) return;
    const i = list.indexOf(channel);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.open.delete(label);
  }
}
