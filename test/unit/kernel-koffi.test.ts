import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { koffi } from '../../src/kernel/koffi.js';

describe('koffi loader', () => {
  it('loads the platform addon without koffi\'s entry point, and it calls into libc', () => {
    const k = koffi();
    expect(koffi()).toBe(k);
    const getpid = k.load('libc.so.6').func('int getpid(void)') as () => number;
    expect(getpid()).toBe(process.pid);
    const loaded = Object.keys(createRequire(import.meta.url).cache);
    expect(loaded.some((f) => f.endsWith(`/koffi-${process.platform}-${process.arch}/${process.platform}_${process.arch}/koffi.node`))).toBe(true);
    // koffi's entry parses node's ELF headers at load: ~10 ms of every plugin start-up.
    expect(loaded.filter((f) => /\/koffi\/(src\/koffi\/)?index\.cjs$/.test(f))).toEqual([]);
  });
});
