/**
 * Which published ports need a userspace proxy on [::1].
 *
 * The kernel cannot publish a port on ::1 by NAT: after the reply is un-NATed its destination
 * is ::1, and IPv6 accepts loopback destinations only on `lo`, so replies arriving from a bridge
 * are dropped (route_localnet exists for IPv4 only). An IPv4-only container cannot answer an
 * IPv6 connection at all. Docker solves both with docker-proxy; Shoal's daemon runs one
 * TcpProxy/UdpProxy per mapping this function returns (src/lb).
 */
import { IpPrefix } from '../addr.js';
import type { Protocol } from './config.js';
import type { PortmapRecord } from './state.js';

export interface LoopbackProxyTarget {
  /** Stable identity for reconciliation: `<protocol>/<hostPort>`. */
  key: string;
  protocol: Protocol;
  hostPort: number;
  /** Where the proxy connects: the container's address and port. */
  backend: { host: string; port: number };
  owner: string;
}

/** hostIP values that mean "every local IPv6 address", which includes ::1. */
function coversIpv6Loopback(hostIP: string): boolean {
  return hostIP === '' || hostIP === '::' || hostIP === '::1';
}

/**
 * One target per (protocol, hostPort) that some record publishes on ::1. The backend is the
 * container's IPv6 address when it has one (no family change), else its IPv4 address. sctp is
 * left out: Node has no SCTP sockets.
 */
export function loopbackProxyTargets(records: readonly PortmapRecord[]): LoopbackProxyTarget[] {
  const targets = new Map<string, LoopbackProxyTarget>();
  for (const record of records) {
    // Records hold text (with or without a prefix); unreadable entries are skipped.
    const addresses = record.containerIPs.flatMap((text) => IpPrefix.tryParse(text, { bareAddress: true })?.addr ?? []);
    const host = (addresses.find((a) => a.family === 6) ?? addresses.find((a) => a.family === 4))?.toString();
    if (!host) continue;
    for (const m of record.mappings) {
      if (m.protocol === 'sctp' || !coversIpv6Loopback(m.hostIP)) continue;
      const key = `${m.protocol}/${m.hostPort}`;
      // Conflicts are refused at ADD, so a key has one owner; keep the first if files disagree.
      if (!targets.has(key)) targets.set(key, { key, protocol: m.protocol, hostPort: m.hostPort, backend: { host, port: m.containerPort }, owner: record.owner });
    }
  }
  return [...targets.values()].sort((a, b) => a.key.localeCompare(b.key));
}
