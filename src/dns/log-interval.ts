/**
 * At most one log line per key per interval, carrying how many occurrences it stands for. A
 * flood makes some events happen tens of thousands of times a second (torture dns: every
 * forward timing out at an upstream that stopped answering); a line each made the log itself
 * the load: an error object and a message to the main thread per event, 8 MB of log in 20 s.
 * The metrics keep the exact counts.
 */
export class LogInterval {
  private readonly seen = new Map<string, { at: number; count: number }>();

  constructor(private readonly intervalMs = 10_000) {}

  /**
   * Counts one occurrence of `key`. Returns how many occurrences a line logged now stands for
   * (this one and those folded since the last line), or 0 when no line is due.
   */
  due(key: string): number {
    const now = performance.now();
    const e = this.seen.get(key);
    if (!e) {
      if (this.seen.size >= 1000) this.seen.clear(); // keys are upstreams and outcomes: few
      this.seen.set(key, { at: now, count: 0 });
      return 1;
    }
    e.count += 1;
    if (now - e.at < this.intervalMs) return 0;
    const n = e.count;
    e.count = 0;
    e.at = now;
    return n;
  }
}
