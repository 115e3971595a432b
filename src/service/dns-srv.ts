/**
 * SRV answers for service ports: `_NAME._tcp` (and `_udp`), also under `.<network>` and the
 * network's domain, answer one SRV per port of that protocol: priority 0, weight 0, the target
 * port, and the service's own name as the target (which answers the VIP, or the replicas in
 * dnsrr). A separate handler in front of the chain (it answers only these names and passes on
 * everything else), pure: its table changes only together with a new record snapshot.
 */
import type { Handler, QueryContext } from '../dns/chain.js';
import { encodeName, encodeRecord } from '../dns/wire.js';
import { QTYPE, RCODE } from '../dns/types.js';
import type { DnsNetworkConfig } from '../dns/types.js';
import type { ServiceRecord } from './model.js';

export interface SrvTarget {
  port: number;
  target: string;
}

/** network -> query name -> SRV targets. */
export type SrvTable = ReadonlyMap<string, ReadonlyMap<string, readonly SrvTarget[]>>;

export function buildSrvTable(services: readonly ServiceRecord[], networks: readonly DnsNetworkConfig[]): SrvTable {
  const out = new Map<string, Map<string, SrvTarget[]>>();
  for (const s of services) {
    const net = networks.find((n) => n.name === s.network);
    if (!net) continue;
    const domain = net.domain?.toLowerCase().replace(/\.$/, '');
    const target = `${s.name}.${domain ?? s.network.toLowerCase()}`;
    let names = out.get(s.network);
    if (!names) out.set(s.network, (names = new Map()));
    for (const proto of ['tcp', 'udp'] as const) {
      const ports = [...new Set(s.ports.filter((p) => p.protocol === proto).map((p) => p.target))];
      if (ports.length === 0) continue;
      const base = `_${s.name}._${proto}`;
      const spellings = [base, `${base}.${s.network.toLowerCase()}`, ...(domain ? [`${base}.${domain}`] : [])];
      for (const n of spellings) names.set(n, ports.map((port) => ({ port, target })));
    }
  }
  return out;
}

function srvRdata(t: SrvTarget): Buffer {
  const head = Buffer.alloc(6);
  head.writeUInt16BE(0, 0); // priority
  head.writeUInt16BE(0, 2); // weight
  head.writeUInt16BE(t.port, 4);
  return Buffer.concat([head, encodeName(t.target)]);
}

export function serviceSrvHandler(table: () => SrvTable | undefined): Handler {
  return {
    name: 'service-srv',
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
