/**
 * SRV answers for service ports: `_NAME._tcp` (and `_udp`), also under `.<network>` and the
 * network's domain, answer one SRV per port of that protocol: priority 0, weight 0, the target
 * port, and the service's own name as the target (which answers the VIP, or the replicas in
 * dnsrr). The table goes to the DNS server with the records (`DnsRecordsInput.srv`), which
 * answers it in src/dns/handler-srv.ts.
 */
import type { DnsNetworkConfig } from '../dns/types.js';
import type { SrvTable, SrvTarget } from '../dns/handler-srv.js';
import type { ServiceRecord } from './model.js';

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
