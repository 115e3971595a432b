import { describe, expect, it } from 'vitest';
import dnsPacket from 'dns-packet';
import { adaptRawResponse, buildResponse, encodeRecord, isParseFailure, parseQuery, udpLimit, type ParsedQuery } from '../../src/dns/wire.js';
import { decode, query, upstreamAnswer } from '../helpers/dns.js';

const parse = (b: Buffer) => parseQuery(b) as ParsedQuery;
const aRecords = (n: number) => Array.from({ length: n }, (_, i) => encodeRecord(1, 5, Buffer.from([10, 0, i >> 8, i & 0xff])));

describe('query parsing', () => {
  it('reads id, lower-cased name, type and EDNS', () => {
    const q = parse(query('WeB.Red.Shoal.', 'AAAA', { id: 77, edns: 4096, dnssecOk: true }));
    expect(q.id).toBe(77);
    expect(q.question).toMatchObject({ name: 'web.red.shoal', type: 28, class: 1, opaque: false });
    expect(q.edns).toEqual({ udpSize: 4096, version: 0, dnssecOk: true });
    expect(parse(query('x')).edns).toBeUndefined();
  });

  it('marks names whose labels contain dots as opaque', () => {
    const msg = query('ab.cd');
    msg[13 + 1] = 0x2e; // "a.", still 2 bytes
    expect(parse(msg).question.opaque).toBe(true);
  });

  it('drops non-queries and short packets, FORMERRs broken questions, NOTIMPs other opcodes', () => {
    expect(parseQuery(Buffer.alloc(5))).toMatchObject({ fail: 'drop' });
    const resp = upstreamAnswer(query('a.test'), { a: ['192.0.2.1'] });
    expect(parseQuery(resp)).toMatchObject({ fail: 'drop' });
    const noQ = query('a.test');
    noQ.writeUInt16BE(0, 4);
    expect(parseQuery(noQ)).toMatchObject({ fail: 'formerr' });
    expect(parseQuery(query('a.test').subarray(0, 16))).toMatchObject({ fail: 'formerr' });
    const pointer = query('a.test');
    pointer[12] = 0xc0;
    expect(parseQuery(pointer)).toMatchObject({ fail: 'formerr' });
    const notify = query('a.test');
    notify.writeUInt16BE(4 << 11, 2);
    expect(parseQuery(notify)).toMatchObject({ fail: 'notimp' });
    const badOpt = query('a.test', 'A', { edns: 1232 });
    expect(isParseFailure(parseQuery(badOpt.subarray(0, badOpt.length - 3)))).toBe(true);
  });
});

describe('truncation', () => {
  it('limits UDP answers to 512 without EDNS and to the advertised size with it', () => {
    expect(udpLimit(parse(query('x')))).toBe(512);
    expect(udpLimit(parse(query('x', 'A', { edns: 300 })))).toBe(512);
    expect(udpLimit(parse(query('x', 'A', { edns: 1400 })))).toBe(1400);
    expect(udpLimit(parse(query('x', 'A', { edns: 65000 })), 4096)).toBe(4096);
  });

  it('keeps whole records that fit, sets TC, and stays within the limit', () => {
    const msg = query('many.test');
    const q = parse(msg);
    const out = buildResponse(q, msg, 0, aRecords(100), 512);
    expect(out.length).toBeLessThanOrEqual(512);
    const d = decode(out);
    expect(d.flag_tc).toBe(true);
    expect(d.answers!.length).toBe(Math.floor((512 - q.questionEnd) / 16));
    const full = decode(buildResponse(q, msg, 0, aRecords(100), 65535));
    expect(full.flag_tc).toBe(false);
    expect(full.answers).toHaveLength(100);
  });

  it('echoes the question spelling, id, RD, and adds OPT only when the client sent one', () => {
    const msg = query('MiXeD.test', 'A', { id: 999, edns: 1232 });
    const d = decode(buildResponse(parse(msg), msg, 0, aRecords(1), 1232));
    expect(d.id).toBe(999);
    expect(d.questions?.[0]?.name).toBe('MiXeD.test');
    expect(d.answers?.[0]?.name).toBe('MiXeD.test');
    expect(d.flag_rd && d.flag_aa && d.flag_qr).toBe(true);
    expect(d.additionals?.[0]?.type).toBe('OPT');
    const plain = query('a.test');
    expect(decode(buildResponse(parse(plain), plain, 0, [], 512)).additionals).toEqual([]);
  });

  it('answers BADVERS to EDNS versions above 0', () => {
    const msg = dnsPacket.encode({ type: 'query', id: 1, questions: [{ type: 'A', name: 'a.test' }], additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, ednsVersion: 1 } as never] });
    const out = buildResponse(parse(msg), msg, 0, aRecords(3), 1232);
    expect(out.readUInt16BE(2) & 0xf).toBe(0);
    const d = decode(out);
    expect(d.answers).toEqual([]);
    expect((d.additionals?.[0] as { extendedRcode: number }).extendedRcode).toBe(1);
  });
});

describe('adapting an upstream answer', () => {
  it('patches id and question spelling, strips OPT for a client without EDNS', () => {
    const upstreamQ = query('big.test', 'A', { edns: 1232 });
    const raw = dnsPacket.encode({
      ...dnsPacket.decode(upstreamAnswer(upstreamQ, { a: ['192.0.2.1'] })),
      additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232 } as never],
    });
    const optStart = raw.length - 11;
    const msg = query('BIG.test', 'A', { id: 31337 });
    const d = decode(adaptRawResponse(parse(msg), msg, raw, optStart, 512));
    expect(d.id).toBe(31337);
    expect(d.questions?.[0]?.name).toBe('BIG.test');
    expect(d.additionals).toEqual([]);
    expect((d.answers?.[0] as { data: unknown }).data).toBe('192.0.2.1');
  });

  it('sets TC with an empty answer when the upstream answer exceeds the client limit', () => {
    const q = query('big.test');
    const many = Array.from({ length: 60 }, (_, i) => `192.0.2.${i}`);
    const raw = upstreamAnswer(q, { a: many });
    expect(raw.length).toBeGreaterThan(512);
    const d = decode(adaptRawResponse(parse(q), q, raw, undefined, 512));
    expect(d.flag_tc).toBe(true);
    expect(d.answers).toEqual([]);
    expect(decode(adaptRawResponse(parse(q), q, raw, undefined, 65535)).answers).toHaveLength(60);
  });
});
