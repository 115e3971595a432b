/** Shared helpers for the DNS tests: build queries with dns-packet, decode answers. */
import dnsPacket from 'dns-packet';
import { RecordSnapshot } from '../../src/dns/snapshot.js';
import type { QueryContext } from '../../src/dns/chain.js';
import type { DnsRecordsInput, Question } from '../../src/dns/types.js';
import { parseQuery, isParseFailure } from '../../src/dns/wire.js';

export interface QueryOpts {
  id?: number;
  edns?: number;
  dnssecOk?: boolean;
  rd?: boolean;
}

export function query(name: string, type: dnsPacket.RecordType = 'A', opts: QueryOpts = {}): Buffer {
  const packet: dnsPacket.Packet = {
    type: 'query',
    id: opts.id ?? 4242,
    flags: opts.rd === false ? 0 : dnsPacket.RECURSION_DESIRED,
    questions: [{ type, name, class: 'IN' }],
  };
  if (opts.edns !== undefined) {
    packet.additionals = [{ type: 'OPT', name: '.', udpPayloadSize: opts.edns, flags: opts.dnssecOk ? dnsPacket.DNSSEC_OK : 0 } as unknown as dnsPacket.Answer];
  }
  return dnsPacket.encode(packet);
}

export function decode(buf: Buffer): dnsPacket.DecodedPacket & { rcode?: string } {
  return dnsPacket.decode(buf) as dnsPacket.DecodedPacket & { rcode?: string };
}

export function answerData(buf: Buffer): string[] {
  return (decode(buf).answers ?? []).map((a) => String((a as { data: unknown }).data));
}

/** A handler context for `name`/`type` asked from `source` against `input`. */
export function context(input: DnsRecordsInput | RecordSnapshot, source: string, name: string, type: dnsPacket.RecordType = 'A', opts: QueryOpts = {}): QueryContext {
  const snapshot = input instanceof RecordSnapshot ? input : RecordSnapshot.build(input);
  const msg = query(name, type, opts);
  const parsed = parseQuery(msg);
  if (isParseFailure(parsed)) throw new Error(parsed.reason);
  const questionBytes = Buffer.from(msg.subarray(12, parsed.questionEnd));
  for (let i = 0; i < questionBytes.length - 4; i += 1) {
    const c = questionBytes[i] as number;
    if (c >= 0x41 && c <= 0x5a) questionBytes[i] = c + 0x20;
  }
  const question: Question = parsed.question;
  return { question, questionBytes, dnssecOk: opts.dnssecOk ?? false, scope: snapshot.scopeFor(source), snapshot };
}

/** Minimal upstream-style response for `q` (a query buffer) with A answers and optional SOA. */
export function upstreamAnswer(q: Buffer, opts: { a?: string[]; ttl?: number; rcode?: string; soa?: { ttl: number; minimum: number }; tc?: boolean } = {}): Buffer {
  const dq = dnsPacket.decode(q);
  const question = dq.questions?.[0] as dnsPacket.Question;
  const flags = (opts.tc ? dnsPacket.TRUNCATED_RESPONSE : 0) | dnsPacket.RECURSION_AVAILABLE | dnsPacket.RECURSION_DESIRED;
  const rcodeBits: Record<string, number> = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 };
  return dnsPacket.encode({
    type: 'response',
    id: dq.id,
    flags: flags | (rcodeBits[opts.rcode ?? 'NOERROR'] ?? 0),
    questions: [question],
    answers: (opts.a ?? []).map((data) => ({ type: 'A' as const, name: question.name, ttl: opts.ttl ?? 60, data })),
    authorities: opts.soa
      ? [{ type: 'SOA', name: 'example.test', ttl: opts.soa.ttl, data: { mname: 'ns.example.test', rname: 'h.example.test', serial: 1, refresh: 1, retry: 1, expire: 1, minimum: opts.soa.minimum } }]
      : [],
  });
}
