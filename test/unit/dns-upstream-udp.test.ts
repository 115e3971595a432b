/**
 * The pooled UDP transport against real sockets on 127.0.0.1 (ports the kernel picks): queries
 * share a few sockets, a reply must carry the query's ID and question, sockets retire after
 * their uses, an unreachable port fails at once and a silent upstream at the timeout.
 */
import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { buildUpstreamQuery } from '../../src/dns/forwarder.js';
import { parseUpstream, UpstreamTimeout } from '../../src/dns/upstream.js';
import { UdpUpstreamPool } from '../../src/dns/upstream-udp.js';
import type { Upstream } from '../../src/dns/ip.js';
import { upstreamAnswer } from '../helpers/dns.js';

const failures = {
  timeout: (u: Upstream, ms: number) => new UpstreamTimeout(u, 'udp', ms),
  failed: (u: Upstream, cause: unknown) => new Error(`failed ${u.label}: ${(cause as Error).message}`),
};

/** The question section of a name (type A, class IN), as the forwarder passes it. */
function question(name: string): Buffer {
  const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  return Buffer.concat([...labels, Buffer.from([0, 0, 1, 0, 1])]);
}

type Reply = (query: Buffer) => Buffer[];
const servers: dgram.Socket[] = [];

/** A fake upstream on 127.0.0.1: answers each query with what `reply` returns; records source ports. */
async function upstream(reply: Reply): Promise<{ up: Upstream; ports: Set<number>; queries: number }> {
  const sock = dgram.createSocket('udp4');
  servers.push(sock);
  const seen = { ports: new Set<number>(), queries: 0 };
  sock.on('message', (msg, rinfo) => {
    seen.ports.add(rinfo.port);
    seen.queries += 1;
    for (const r of reply(msg)) sock.send(r, rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  const up = parseUpstream(`127.0.0.1:${sock.address().port}`) as Upstream;
  return Object.assign(seen, { up });
}

afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

const answerOf = (q: Buffer, a = '192.0.2.7') => upstreamAnswer(q, { a: [a] });
const addressIn = (reply: Buffer) => [...reply.subarray(reply.length - 4)].join('.');

describe('pooled upstream UDP', () => {
  it('carries 60 concurrent queries on at most perUpstream sockets, each answered with its own reply', async () => {
    // Each reply names its query: n<i>.example is answered 192.0.2.<i>.
    const fake = await upstream((q) => [answerOf(q, `192.0.2.${q.subarray(14, 13 + (q[12] as number)).toString()}`)]);
    const pool = new UdpUpstreamPool(failures, { perUpstream: 3 });
    const replies = await Promise.all(Array.from({ length: 60 }, (_, i) => pool.exchange(fake.up, buildUpstreamQuery(question(`n${i}.example`), false), 1000)));
    expect(replies.map(addressIn)).toEqual(Array.from({ length: 60 }, (_, i) => `192.0.2.${i}`));
    expect(fake.queries).toBe(60);
    expect(fake.ports.size).toBeLessThanOrEqual(3);
    expect(pool.sockets).toBeLessThanOrEqual(3);
  });

  it('ignores a reply with another ID, one with another question and one with QR clear; takes the real one', async () => {
    const fake = await upstream((q) => {
      const wrongId = answerOf(q, '192.0.2.66');
      wrongId.writeUInt16BE((q.readUInt16BE(0) + 1) & 0xffff, 0);
      const other = answerOf(buildUpstreamQuery(question('evil.example'), false), '192.0.2.67');
      other.writeUInt16BE(q.readUInt16BE(0), 0);
      const notReply = answerOf(q, '192.0.2.68');
      notReply[2] = (notReply[2] as number) & 0x7f;
      return [wrongId, other, notReply, answerOf(q, '192.0.2.7')];
    });
    const pool = new UdpUpstreamPool(failures);
    const reply = await pool.exchange(fake.up, buildUpstreamQuery(question('www.example'), false), 1000);
    expect(addressIn(reply)).toBe('192.0.2.7');
  });

  it('takes an error answer without a question section on its ID, and matches the question case-insensitively', async () => {
    const fake = await upstream((q) => {
      if (q[13] === 0x66) {
        // "f...": FORMERR with QDCOUNT 0, as some servers send
        const formerr = Buffer.alloc(12);
        q.copy(formerr, 0, 0, 2);
        formerr.writeUInt16BE(0x8001, 2);
        return [formerr];
      }
      const r = answerOf(q);
      r.write('WWW', 13, 'latin1'); // re-cased by the server
      return [r];
    });
    const pool = new UdpUpstreamPool(failures);
    const formerr = await pool.exchange(fake.up, buildUpstreamQuery(question('fail.example'), false), 1000);
    expect(formerr.readUInt16BE(2) & 0x0f).toBe(1);
    const recased = await pool.exchange(fake.up, buildUpstreamQuery(question('www.example'), false), 1000);
    expect(addressIn(recased)).toBe('192.0.2.7');
  });

  it('retires a socket after maxUses queries: source ports change, and retired sockets close', async () => {
    const fake = await upstream((q) => [answerOf(q)]);
    const pool = new UdpUpstreamPool(failures, { perUpstream: 1, maxUses: 3 });
    for (let i = 0; i < 9; i += 1) await pool.exchange(fake.up, buildUpstreamQuery(question(`n${i}.example`), false), 1000);
    expect(fake.ports.size).toBe(3);
    expect(pool.sockets).toBe(0); // the third socket retired with its third query
  });

  it('fails at once on an unreachable port (ICMP), and at the timeout when nothing answers', async () => {
    const closed = await upstream(() => []);
    const dead = closed.up;
    servers.pop()?.close(); // nothing listens there now
    await new Promise((r) => setTimeout(r, 20));
    const pool = new UdpUpstreamPool(failures);
    const t0 = performance.now();
    await expect(pool.exchange(dead, buildUpstreamQuery(question('a.example'), false), 2000)).rejects.toThrow(/ECONNREFUSED/);
    expect(performance.now() - t0).toBeLessThan(1000);

    const silent = await upstream(() => []);
    const t1 = performance.now();
    await expect(pool.exchange(silent.up, buildUpstreamQuery(question('b.example'), false), 200)).rejects.toThrow(/no udp answer within 200 ms/);
    expect(performance.now() - t1).toBeGreaterThanOrEqual(190);
  });
});
