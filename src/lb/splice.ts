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
 * The `onread` option for a socket about to be connected whose bytes all go to `to`; call
 * `attach` with that socket once made, and pass the same `counters` to splice() with it as `b`.
 */
export function readingInto(to: net.Socket, counters: SpliceCounters): { buffer: Buffer; callback: (n: number, buf: Buffer) => boolean; attach: (from: net.Socket) => void } {
  let from: net.Socket | undefined;
  let paused = false;
  // One shared callback for every write (Node defers a callback per write anyway, a no-op one
  // when none is given). 'drain' cannot be used: it only follows a write that reached the high
  // water mark (64 KiB), and a queued write of a smaller chunk still holds the buffer.
  const written = () => {
    if (paused && to.writableLength === 0) {
      paused = false;
      from?.resume();
    }
  };
  return {
    buffer: Buffer.allocUnsafeSlow(READ_BUFFER),
    attach: (socket) => (from = socket),
    callback: (n, buf) => {
      counters.bToA += n;
      to.write(buf.subarray(0, n), written);
      // Written at once (the usual case): the buffer is free again. Otherwise it is held by the
      // queued write: returning false stops reading until that write is done.
      if (to.writableLength === 0) return true;
      paused = true;
      return false;
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
  b.once('end', () => a.end());
  // With onread no 'data' listener puts the stream in flowing mode, and a readable that is not
  // flowing never emits 'end': the backend's FIN would not reach the client.
  b.resume();
}
