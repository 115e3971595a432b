import { describe, expect, it } from 'vitest';
import { HandlerChain, type Handler } from '../../src/dns/chain.js';
import { containersHandler } from '../../src/dns/handler-containers.js';
import { hostsHandler } from '../../src/dns/handler-hosts.js';
import { zoneHandler } from '../../src/dns/handler-zone.js';
import { forwardHandler } from '../../src/dns/handler-forward.js';
import { RecordSnapshot } from '../../src/dns/snapshot.js';
import type { DnsRecordsInput, HandlerResult, Question } from '../../src/dns/types.js';
import { context } from '../helpers/dns.js';

const input: DnsRecordsInput = {
  networks: [
    { name: 'red', domain: 'red.shoal', subnets: ['10.1.0.0/24'], hosts: { web: ['10.9.9.1'], db: ['10.9.9.2'] }, upstreams: ['192.0.2.53'] },
    { name: 'blue', subnets: ['10.2.0.0/24'] },
  ],
  endpoints: [{ network: 'red', containerId: 'c1', name: 'web', ipv4: ['10.1.0.10'] }],
};

function fakeForward() {
  const calls: { name: string; own: readonly string[] | undefined }[] = [];
  const fwd = {
    forward(_qb: Buffer, q: Question, _do: boolean, own: readonly string[] | undefined, network: string): Promise<HandlerResult> {
      calls.push({ name: q.name, own });
      return Promise.resolve({ kind: 'rcode', rcode: 0, network });
    },
  };
  return { calls, handler: forwardHandler(fwd as never) };
}

function chainWith(forward: Handler): HandlerChain {
  return new HandlerChain([containersHandler(), hostsHandler(), zoneHandler(), forward]);
}

const localData = (r: HandlerResult | Promise<HandlerResult>) => {
  if (r instanceof Promise || r.kind !== 'local') return undefined;
  return r.records.map((rr) => [...rr.subarray(12)].join('.'));
};

describe('handler chain', () => {
  it('containers answer before hosts', () => {
    const { handler, calls } = fakeForward();
    const r = chainWith(handler).resolve(context(input, '10.1.0.5', 'web'));
    expect(localData(r)).toEqual(['10.1.0.10']);
    expect(calls).toEqual([]);
  });

  it('hosts answer before forwarding', () => {
    const { handler, calls } = fakeForward();
    const r = chainWith(handler).resolve(context(input, '10.1.0.5', 'db'));
    expect(localData(r)).toEqual(['10.9.9.2']);
    expect(calls).toEqual([]);
  });

  it('unknown names under an in-scope domain are NXDOMAIN, not forwarded', () => {
    const { handler, calls } = fakeForward();
    const r = chainWith(handler).resolve(context(input, '10.1.0.5', 'nosuch.red.shoal'));
    expect(r).toMatchObject({ kind: 'local', rcode: 3 });
    expect(calls).toEqual([]);
  });

  it('everything else is forwarded, with the network’s own upstreams', async () => {
    const { handler, calls } = fakeForward();
    const r = await chainWith(handler).resolve(context(input, '10.1.0.5', 'example.org'));
    expect(r.kind).toBe('rcode');
    expect(calls).toEqual([{ name: 'example.org', own: ['192.0.2.53'] }]);
    await chainWith(handler).resolve(context(input, '10.2.0.5', 'web'));
    expect(calls[1]).toEqual({ name: 'web', own: undefined });
  });

  it('memoizes local outcomes per snapshot and scope, from the second ask of a question on', () => {
    let calls = 0;
    const counting: Handler = { name: 'count', pure: true, handle: (ctx) => (calls += 1, containersHandler().handle(ctx)) };
    const { handler } = fakeForward();
    const chain = new HandlerChain([counting, handler]);
    const snap = RecordSnapshot.build(input);
    chain.resolve(context(snap, '10.1.0.5', 'web'));
    chain.resolve(context(snap, '10.1.0.6', 'WEB'));
    chain.resolve(context(snap, '10.1.0.7', 'web'));
    expect(calls).toBe(2); // the first ask is not memoized (snapshot.ts, Doorkeeper)
    // Another scope has its own memo; the question is known already, so its first ask is kept.
    chain.resolve(context(snap, '10.2.0.6', 'web'));
    chain.resolve(context(snap, '10.2.0.6', 'web'));
    expect(calls).toBe(3);
    chain.resolve(context(RecordSnapshot.build(input), '10.1.0.5', 'web')); // new snapshot
    expect(calls).toBe(4);
  });

  it('keeps no answer to a question asked once, as when clients walk more names than the memo holds', () => {
    const chain = new HandlerChain([containersHandler(), fakeForward().handler]);
    const snap = RecordSnapshot.build(input, { cacheSize: 100 });
    for (let round = 0; round < 2; round += 1) for (let i = 0; i < 300; i += 1) chain.resolve(context(snap, '10.1.0.5', `n${i}`));
    // Only hash collisions in the doorkeeper could admit one of them.
    expect(snap.memoSize).toBeLessThan(5);
    chain.resolve(context(snap, '10.1.0.5', 'web'));
    chain.resolve(context(snap, '10.1.0.5', 'web'));
    expect(snap.memoSize).toBeGreaterThanOrEqual(1);
  });

  it('continues after an async handler that passes, and REFUSES when nobody answers', async () => {
    const passAsync: Handler = { name: 'p', pure: false, handle: () => Promise.resolve(undefined) };
    const last: Handler = { name: 'l', pure: false, handle: (ctx) => ({ kind: 'rcode', rcode: 2, network: ctx.scope.key }) };
    expect(await new HandlerChain([passAsync, last]).resolve(context(input, '10.1.0.5', 'x'))).toMatchObject({ rcode: 2 });
    expect(await new HandlerChain([passAsync]).resolve(context(input, '10.1.0.5', 'x'))).toMatchObject({ rcode: 5 });
  });

  it('rejects a pure handler after an impure one', () => {
    const { handler } = fakeForward();
    expect(() => new HandlerChain([handler, containersHandler()])).toThrow(/precede/);
  });
});
