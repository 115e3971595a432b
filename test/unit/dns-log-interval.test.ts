import { describe, expect, it } from 'vitest';
import { LogInterval } from '../../src/dns/log-interval.js';

describe('LogInterval', () => {
  it('logs a key at once, folds repeats within the interval, then logs with their count; keys apart', async () => {
    const logs = new LogInterval(50);
    expect(logs.due('a timeout')).toBe(1);
    expect([logs.due('a timeout'), logs.due('a timeout'), logs.due('a timeout')]).toEqual([0, 0, 0]);
    expect(logs.due('b timeout')).toBe(1);
    await new Promise((r) => setTimeout(r, 60));
    expect(logs.due('a timeout')).toBe(4); // the three folded ones and this one
    expect(logs.due('a timeout')).toBe(0);
  });
});
