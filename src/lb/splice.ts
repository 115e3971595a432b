/**
 * Joins two connected sockets: bytes go both ways with backpressure, a FIN is passed on as a
 * FIN (both sockets must be made with allowHalfOpen), and every chunk is counted.
 *
 * Why not `a.pipe(b); b.pipe(a)`: the same loop, but a pipe adds its own listeners and state
 * checks per chunk, and the counting wants the chunk anyway. Counting is a plain addition here;
 * the caller turns totals into metrics when they are read, not per chunk.
 */
import type net from 'node:net';

export interface SpliceCounters {
  /** Bytes read from `a` and written to `b`. */
  aToB: number;
  /** Bytes read from `b` and written to `a`. */
  bToA: number;
}

function forward(from: net.Socket, to: net.Socket, counted: (n: number) => void): void {
  from.on('data', (chunk: Buffer) => {
    counted(chunk.length);
    if (!to.write(chunk)) from.pause();
  });
  to.on('drain', () => from.resume());
  from.once('end', () => to.end());
}

/** Starts forwarding; `counters` (if given) are added to as bytes pass. */
export function splice(a: net.Socket, b: net.Socket, counters?: SpliceCounters): void {
  if (counters) {
    forward(a, b, (n) => (counters.aToB += n));
    forward(b, a, (n) => (counters.bToA += n));
  } else {
    forward(a, b, () => {});
    forward(b, a, () => {});
  }
}
