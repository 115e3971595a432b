import { describe, expect, it } from 'vitest';
import { chainAdd, chainCheck, chainDel, chainGc, throwFirst, type ChainLink, type ChainVerb } from '../../cni/chain.js';
import { callVerb, decodeOutcome } from '../../cni/run.js';
import { CniError } from '../../cni/errors.js';
import type { CniRequest } from '../../cni/skel.js';

type R = { seen: string[] };

/** A link that records every call in `log` and fails the verbs in `fails`. */
function link(name: string, log: string[], fails: ChainVerb[] = [], extra: Partial<ChainLink<R>> = {}): ChainLink<R> {
  return {
    name,
    run: async (verb, prev) => {
      log.push(`${name} ${verb} ${prev?.seen.join('>') ?? '-'}`);
      if (fails.includes(verb)) throw new Error(`${name} ${verb} failed`);
      return verb === 'ADD' ? { seen: [...(prev?.seen ?? []), name] } : undefined;
    },
    ...extra,
  };
}

describe('chain runner (cni/chain.ts)', () => {
  it('ADD runs in order and threads each result into the next; onAdded sees each result', async () => {
    const log: string[] = [];
    const added: string[] = [];
    const result = await chainAdd([link('a', log), link('b', log), link('c', log)], { seen: ['main'] }, (l, r) => added.push(`${l.name}:${r.seen.length}`));
    expect(result).toEqual({ seen: ['main', 'a', 'b', 'c'] });
    expect(log).toEqual(['a ADD main', 'b ADD main>a', 'c ADD main>a>b']);
    expect(added).toEqual(['a:2', 'b:3', 'c:4']);
  });

  it('ADD stops at the first failure; a plugin that returns nothing is an error naming it', async () => {
    const log: string[] = [];
    await expect(chainAdd([link('a', log), link('b', log, ['ADD']), link('c', log)], undefined)).rejects.toThrow('b ADD failed');
    expect(log).toEqual(['a ADD -', 'b ADD a']);
    const silent: ChainLink<R> = { name: 'mute', run: async () => undefined };
    await expect(chainAdd([silent], undefined)).rejects.toThrow('mute ADD produced no result');
  });

  it('DEL runs in reverse, every plugin even after a failure, skips the ones with nothing to delete, and returns the errors in order', async () => {
    const log: string[] = [];
    const skip = link('c', log, [], { nothingToDelete: async () => true });
    const errors = await chainDel([link('a', log, ['DEL']), link('b', log, ['DEL']), skip], { seen: ['x'] });
    expect(log).toEqual(['b DEL x', 'a DEL x']);
    expect(errors.map((e) => (e as Error).message)).toEqual(['b DEL failed', 'a DEL failed']);
    expect(() => throwFirst(errors)).toThrow('b DEL failed');
    expect(() => throwFirst([])).not.toThrow();
  });

  it('CHECK runs in order and stops at the first failure; GC runs every plugin', async () => {
    const log: string[] = [];
    await expect(chainCheck([link('a', log), link('b', log, ['CHECK']), link('c', log)], { seen: ['f'] })).rejects.toThrow('b CHECK failed');
    expect(log).toEqual(['a CHECK f', 'b CHECK f']);
    const gcLog: string[] = [];
    const errors = await chainGc([link('a', gcLog, ['GC']), link('b', gcLog)]);
    expect(gcLog).toEqual(['a GC -', 'b GC -']);
    expect(errors).toHaveLength(1);
  });
});

describe('running one plugin (cni/run.ts)', () => {
  const req = (command: CniRequest['command']) => ({ command }) as CniRequest;

  it('in-process: a missing DEL, STATUS or GC is success, a missing CHECK is code 4, ADD must produce a result', async () => {
    const none = { name: 'bare' };
    for (const verb of ['DEL', 'STATUS', 'GC'] as const) await expect(callVerb(none, req(verb))).resolves.toBeUndefined();
    await expect(callVerb(none, req('CHECK'))).rejects.toMatchObject({ cniCode: 4 });
    await expect(callVerb({ name: 'empty', add: async () => undefined as never }, req('ADD'))).rejects.toThrow('empty: ADD produced no result');
  });

  it("exec: keeps a failed plugin's own code and message, explains a failure without one, refuses non-object output", () => {
    expect(() => decodeOutcome('plugin x ADD', { exitCode: 1, stdout: '{"cniVersion":"1.0.0","code":11,"msg":"try later","details":"busy"}' })).toThrow(
      expect.objectContaining({ cniCode: 11, message: 'try later', details: 'busy' }) as unknown as Error,
    );
    expect(() => decodeOutcome('plugin x ADD', { exitCode: 2, stdout: 'panic: boom' })).toThrow('plugin x ADD failed with exit code 2: panic: boom');
    expect(() => decodeOutcome('plugin x ADD', { exitCode: 0, stdout: '[1]' })).toThrow(CniError);
    expect(decodeOutcome('plugin x DEL', { exitCode: 0, stdout: '  \n' })).toBeUndefined();
    expect(decodeOutcome('plugin x ADD', { exitCode: 0, stdout: '{"ips":[]}' })).toEqual({ ips: [] });
  });
});
