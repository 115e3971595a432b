import type { Family } from './address.js';
import type { RangeSet } from './range.js';

/**
 * The pure part of allocation: which addresses a range set may hand out, and in which order.
 * Addresses are represented as inclusive intervals ("segments") rather than lists, so a /64 costs
 * the same as a /29, and the allocator can ask the store for the used addresses inside a segment
 * with one range scan instead of one lookup per address.
 */

export interface Segment {
  family: Family;
  lo: bigint;
  hi: bigint;
  /** Index of the range (inside its set) this segment belongs to. */
  rangeIndex: number;
}

/** Addresses never handed out: gateways and `exclude` entries. */
export interface Hole {
  family: Family;
  lo: bigint;
  hi: bigint;
}

/**
 * The allocatable segments of `set`, in config order (ranges in the order written, addresses
 * ascending inside each): every range's [start, end] minus the holes.
 */
export function allocatableSegments(set: RangeSet, holes: readonly Hole[]): Segment[] {
  const segments: Segment[] = [];
  set.forEach((range, rangeIndex) => {
    const relevant = holes
      .filter((hole) => hole.family === range.family && hole.hi >= range.start.value && hole.lo <= range.end.value)
      .sort((a, b) => (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : 0));
    let next = range.start.value;
    for (const hole of relevant) {
      if (hole.lo > next) segments.push({ family: range.family, lo: next, hi: hole.lo - 1n, rangeIndex });
      if (hole.hi + 1n > next) next = hole.hi + 1n;
    }
    if (next <= range.end.value) segments.push({ family: range.family, lo: next, hi: range.end.value, rangeIndex });
  });
  return segments;
}

export function capacityOf(segments: readonly Segment[]): bigint {
  return segments.reduce((sum, segment) => sum + (segment.hi - segment.lo + 1n), 0n);
}

/**
 * Round-robin: the segments rearranged so the walk starts just after `last` (the address this
 * range set handed out most recently), runs to the end, wraps to the beginning and ends at
 * `last` itself. Starting after the last one, not at the lowest free one, keeps a just-released
 * address out of circulation as long as possible, so a stale ARP entry or a slow DNS update for
 * a dead container does not point at a new one.
 * When `last` is not allocatable any more (config changed), the walk starts at the next
 * allocatable address of the range it was in, or at the beginning when it is in none.
 */
export function visitOrder(segments: readonly Segment[], set: RangeSet, last: { family: Family; value: bigint } | undefined): Segment[] {
  if (!last) return [...segments];
  const at = segments.findIndex((s) => s.family === last.family && s.lo <= last.value && last.value <= s.hi);
  if (at >= 0) {
    const current = segments[at]!;
    const order: Segment[] = [];
    if (last.value < current.hi) order.push({ ...current, lo: last.value + 1n });
    order.push(...segments.slice(at + 1), ...segments.slice(0, at));
    order.push({ ...current, hi: last.value });
    return order;
  }
  const rangeIndex = set.findIndex((r) => r.family === last.family && r.start.value <= last.value && last.value <= r.end.value);
  if (rangeIndex < 0) return [...segments];
  let next = segments.findIndex((s) => s.rangeIndex === rangeIndex && s.lo > last.value);
  if (next < 0) next = segments.findIndex((s) => s.rangeIndex > rangeIndex);
  if (next < 0) return [...segments];
  return [...segments.slice(next), ...segments.slice(0, next)];
}

/** Every address of `segments`, in order. For tests and small pools; the allocator scans segments. */
export function* addressesOf(segments: readonly Segment[]): Generator<bigint> {
  for (const segment of segments) {
    for (let value = segment.lo; value <= segment.hi; value++) yield value;
  }
}
