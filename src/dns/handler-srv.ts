/**
 * SRV answers from the records (`DnsRecordsInput.srv`, what the daemon's services publish):
 * `_NAME._tcp` / `_NAME._udp` names of a network answer one SRV per port. First in the chain; it
 * answers only the names in its table and passes everything else on. Pure: the table arrives
 * with the records, so it changes only together with a new snapshot, and it reaches worker
 * threads the way the records do (structured clone).
 */
import type { Handler, QueryContext } from './chain.js';
import { encodeName, encodeRecord } from './wire.js';
import { QTYPE, RCODE } from './types.js';

export interface SrvTarget {
  port: number;
  target: string;
}

/** network -> query name -> SRV targets. */
export type SrvTable = ReadonlyMap<string, ReadonlyMap<string, readonly SrvTarget[]>>;

function srvRdata(t: SrvTarget): Buffer {
  const head = Buffer.alloc(6);
  head.writeUInt16BE(0, 0); // priority
  head.writeUInt16BE(0, 2); // weight
  head.writeUInt16BE(t.port, 4);
  return Buffer.concat([head, encodeName(t.target)]);
}

export function srvHandler(table: () => SrvTable | undefined): Handler {
  return {
    name: 'srv',
    pure: true,
    handle(ctx: QueryContext) {
      const q = ctx.question;
      if (q.opaque || q.class !== 1 || !q.name.startsWith('_')) return undefined;
      const t = table();
      if (!t) return undefined;
      for (const net of ctx.scope.networks) {
        const targets = t.get(net.name)?.get(q.name);
        if (!targets) continue;
        const records = q.type === QTYPE.SRV || q.type === QTYPE.ANY ? targets.map((x) => encodeRecord(QTYPE.SRV, net.ttl, srvRdata(x))) : [];
        return { kind: 'local', rcode: RCODE.NOERROR, records, network: net.name };
      }
      return undefined;
    },
  };
}
