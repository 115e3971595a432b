/**
 * Joins two connected sockets: bytes go both ways with backpressure, a FIN is passed on as a
 * FIN (both sockets must be made with allowHalfOpen), and every chunk is counted.
 *
 * Why not `a.pipe(b); b.pipe(a)`: the same loop, but a pipe adds its own listeners and state
 * checks per chunk, and the counting wants the chunk anyway. Counting is a plain addition here;
 * the caller turns totals into metrics when they are read, not per chunk.
 *
 * The socket we connect ourselves (the backend) can read into one buffer of its own
 * (`readingInto`, Node's `onread`): no Buffer per chunk and no readable-stream bookkeeping.
 * That buffer is reused by the next read, so it must not be read into again while a write of
 * it is still queued: a write that did not complete at once pauses reading until 'drain'.
 */
import type net from 'node:net';

export interface SpliceCounters {
  /** Bytes read from `a` and written to `b`. */
  aToB: number;
  /** Bytes read from `b` and written to `a`. */
  bToA: number;
}

// HAProxy's tune.bufsize: one buffer per connection, allocated at connect.
const READ_BUFFER = 16 * 1024;

function forward(from: net.Socket, to: net.Socket, counted: (n: number) => void): void {
  from.on('data', (chunk: Buffer) => {
    counted(chunk.length);
    if (!to.write(chunk)) from.pause();
  });
  to.on('drain', () => from.resume());
  from.once('end', () => to.end());
}

/**
 * The `onread` option for a socket about to be connected whose bytes all go to `to`. Pass the
 * same `counters` to splice() with the connected socket as `b`.
 */
export function readingInto(to: net.Socket, counters: SpliceCounters): { buffer: Buffer; callback: (n: number, buf: Buffer) => boolean } {
  return {
    buffer: Buffer.allocUnsafeSlow(READ_BUFFER),
    callback: (n, buf) => {
      counters.bToA += n;
      to.write(buf.subarray(0, n));
      // Written at once (the usual case): the buffer is free again. Otherwise it is held by the
      // queued write: returning false pauses reading until `to` drains.
      return to.writableLength === 0;
    },
  };
}

/**
 * Starts forwarding; `counters` are added to as bytes pass. `bReadsItself`: `b` was made with
 * readingInto(a, counters), so only its end and backpressure are wired here.
 */
export function splice(a: net.Socket, b: net.Socket, counters: SpliceCounters, bReadsItself = false): void {
  forward(a, b, (n) => (counters.aToB += n));
  if (!bReadsItself) {
    forward(b, a, (n) => (counters.bToA += n));
    return;
  }
  a.on('drain', () => b.resume());
  b.once('end', () => a.end());
}
