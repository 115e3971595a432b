/**
 * A synchronous NETLINK_ROUTE socket. A CNI process does a handful of requests and exits, so
 * blocking `writeSync`/`readSync` on the fd is the simplest correct design; SO_RCVTIMEO bounds
 * every wait so a lost reply becomes an error instead of a hang. The socket belongs to the netns
 * it was created in (see `openRtnl` in ../rtnl.ts for opening one inside a container netns).
 */
import { readSync, writeSync } from 'node:fs';
import { ShoalError } from '../../errors.js';
import { NetlinkError } from '../errors.js';
import * as ffi from '../ffi.js';
import { decodeError, encodeMessage, parseMessages, type IncomingMessage, type OutgoingMessage } from './codec.js';
import {
  NETLINK_ROUTE,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_NOOP,
  NLMSG_OVERRUN,
  NLM_F_ACK,
  NLM_F_DUMP,
  NLM_F_DUMP_INTR,
  NLM_F_REQUEST,
  isGetType,
} from './constants.js';

export const RECEIVE_TIMEOUT_MS = 5000;
/** Kernel dump datagrams are capped near 32 KiB; single replies are far smaller. */
const RECEIVE_BUFFER_BYTES = 128 * 1024;
/** A dump that raced with a change (NLM_F_DUMP_INTR) is retried this many times. */
const DUMP_ATTEMPTS = 3;

/** No reply from the kernel within RECEIVE_TIMEOUT_MS. */
export class NetlinkTimeoutError extends ShoalError {
  constructor(request: string, ms: number, options?: { cause?: unknown }) {
    super('ENETLINKTIMEOUT', `${request}: no reply from the kernel within ${ms} ms`, options);
  }
}

export class NetlinkSocket {
  readonly fd: number;
  /** The port id the kernel assigned at bind; replies addressed elsewhere are not ours. */
  readonly portId: number;
  private seq: number;
  private readonly rx = Buffer.alloc(RECEIVE_BUFFER_BYTES);
  private closed = false;
  private readonly timeoutMs: number;
  /** NETLINK_ROUTE, or NETLINK_NETFILTER for conntrack (../conntrack.ts). */
  readonly protocol: number;
  /** Datagrams read so far (tests use it to prove a dump really came in several parts). */
  datagramsReceived = 0;

  private constructor(fd: number, portId: number, timeoutMs: number, protocol: number) {
    this.fd = fd;
    this.protocol = protocol;
    this.portId = portId;
    this.timeoutMs = timeoutMs;
    this.seq = Math.floor(Math.random() * 0x7fffffff);
  }

  /**
   * Opens a netlink socket in the calling thread's current netns: NETLINK_ROUTE by default, or
   * another netlink protocol (NETLINK_NETFILTER for conntrack) with the same request/dump rules.
   */
  static open(timeoutMs = RECEIVE_TIMEOUT_MS, protocol = NETLINK_ROUTE): NetlinkSocket {
    const fd = ffi.socket(ffi.AF_NETLINK, ffi.SOCK_RAW, protocol);
    try {
      // Extended acks carry the kernel's reason text; strict checking makes the kernel reject
      // malformed requests instead of silently ignoring parts of them.
      ffi.setsockoptInt(fd, ffi.SOL_NETLINK, ffi.NETLINK_EXT_ACK, 1);
      ffi.setsockoptInt(fd, ffi.SOL_NETLINK, ffi.NETLINK_GET_STRICT_CHK, 1);
      ffi.setReceiveTimeout(fd, timeoutMs);
      const addr = Buffer.alloc(12); // struct sockaddr_nl { u16 family; u16 pad; u32 pid; u32 groups }
      addr.writeUInt16LE(ffi.AF_NETLINK, 0);
      ffi.bind(fd, addr);
      const bound = ffi.getsockname(fd, 12);
      return new NetlinkSocket(fd, bound.readUInt32LE(4), timeoutMs, protocol);
    } catch (err) {
      ffi.close(fd);
      throw err;
    }
  }

  /**
   * Sends a request that changes state (or a GET for one object) with NLM_F_ACK and returns the
   * reply messages that came before the ACK. `what` names the operation for errors, e.g.
   * `failed to create link "br0"`.
   */
  request(msg: OutgoingMessage, what: string): IncomingMessage[] {
    if ((this.protocol !== NETLINK_ROUTE || isGetType(msg.type)) && (msg.flags & NLM_F_DUMP) === NLM_F_DUMP) {
      throw new TypeError(`${what}: dump requests go through dump()`);
    }
    const seq = this.send({ ...msg, flags: msg.flags | NLM_F_REQUEST | NLM_F_ACK }, what);
    return this.receive(seq, what, false).messages;
  }

  /**
   * Sends an RTM_GET* dump and collects every part until NLMSG_DONE. Other protocols number
   * their GET messages differently (nfnetlink: subsystem << 8 | msg), so the type check is
   * rtnetlink's only.
   */
  dump(msg: OutgoingMessage, what: string): IncomingMessage[] {
    if (this.protocol === NETLINK_ROUTE && !isGetType(msg.type)) throw new TypeError(`${what}: only RTM_GET* messages can be dumped (type ${msg.type})`);
    for (let attempt = 1; ; attempt += 1) {
      const seq = this.send({ ...msg, flags: msg.flags | NLM_F_REQUEST | NLM_F_DUMP }, what);
      const { messages, interrupted } = this.receive(seq, what, true);
      // An interrupted dump may miss or duplicate entries; a fresh one is consistent.
      if (!interrupted || attempt >= DUMP_ATTEMPTS) return messages;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    ffi.close(this.fd);
  }

  private send(msg: OutgoingMessage, what: string): number {
    if (this.closed) throw new Error(`${what}: netlink socket is closed`);
    this.seq = (this.seq + 1) >>> 0;
    const buf = encodeMessage(msg, this.seq, 0);
    const n = writeSync(this.fd, buf);
    if (n !== buf.length) throw new Error(`${what}: short netlink write (${n} of ${buf.length} bytes)`);
    return this.seq;
  }

  private receive(seq: number, what: string, isDump: boolean): { messages: IncomingMessage[]; interrupted: boolean } {
    const messages: IncomingMessage[] = [];
    let interrupted = false;
    for (;;) {
      const datagram = this.readDatagram(what);
      for (const m of parseMessages(datagram)) {
        // Anything with another sequence number is a late reply to an earlier request that
        // timed out (or a notification): not ours to interpret.
        if (m.seq !== seq || (m.pid !== 0 && m.pid !== this.portId)) continue;
        if (m.flags & NLM_F_DUMP_INTR) interrupted = true;
        if (m.type === NLMSG_NOOP) continue;
        if (m.type === NLMSG_OVERRUN) throw new Error(`${what}: netlink receive overrun`);
        if (m.type === NLMSG_ERROR) {
          const err = decodeError(m);
          if (err.errno !== 0) throw new NetlinkError(what, err.errno, ffi.errnoName(err.errno), err.message);
          if (!isDump) return { messages, interrupted };
          continue;
        }
        if (m.type === NLMSG_DONE) {
          if (isDump) return { messages, interrupted };
          continue;
        }
        messages.push(m);
      }
    }
  }

  /** One datagram, copied out of the shared receive buffer so callers may keep views into it. */
  private readDatagram(what: string): Buffer {
    let n: number;
    const deadline = Date.now() + this.timeoutMs;
    for (;;) {
      try {
        n = readSync(this.fd, this.rx, 0, this.rx.length, null);
        break;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN' || code === 'EWOULDBLOCK') throw new NetlinkTimeoutError(what, this.timeoutMs, { cause: err });
        // A read on a socket with SO_RCVTIMEO is never restarted after a signal handler ran
        // (signal(7)), whatever SA_RESTART says: a child's SIGCHLD is enough. Read again until
        // the deadline; each read waits at most one more timeout.
        if (code === 'EINTR' && Date.now() < deadline) continue;
        if (code === 'EINTR') throw new NetlinkTimeoutError(what, this.timeoutMs, { cause: err });
        throw err;
      }
    }
    this.datagramsReceived += 1;
    return Buffer.from(this.rx.subarray(0, n));
  }
}
