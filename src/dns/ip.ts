/**
 * How DNS reads addresses: the registry's text (CNI results carry `10.0.0.5/24`), a client's
 * source address as a dual-stack socket reports it (`::ffff:10.0.0.5`), a zone (`fe80::1%br0`).
 * All of it goes through the one parser (src/addr.ts) to plain address values; the hot path
 * never calls these (the record snapshot precomputes and caches what it needs).
 */
import { IpAddr, IpPrefix, isIP, isIPv6 } from '../addr.js';

export type Family = 4 | 6;

/** `text` without a `/prefix` and an IPv6 `%zone`, trimmed. */
function bare(text: string): string {
  let out = text.trim();
  const slash = out.indexOf('/');
  if (slash >= 0) out = out.slice(0, slash);
  const pct = out.indexOf('%');
  if (pct >= 0) out = out.slice(0, pct);
  return out.trim();
}

/** The address in `text` (prefix and zone dropped, an IPv4-mapped address unmapped). */
export function parseAddress(text: string): IpAddr | undefined {
  return IpAddr.tryParse(bare(text))?.unmap();
}

/** The canonical text of the address in `text`; text that holds none comes back stripped. */
export function stripAddress(text: string): string {
  return parseAddress(text)?.toString() ?? bare(text);
}

/** A prefix; a bare address is the whole-address prefix. */
export function parseCidr(text: string): IpPrefix | undefined {
  return IpPrefix.tryParse(text.trim(), { bareAddress: true });
}

/** `1.2.3.4` -> `4.3.2.1.in-addr.arpa`; IPv6 -> nibble form under `ip6.arpa`. Lower case. */
export function reverseName(addr: IpAddr): string {
  if (addr.family === 4) return `${addr.toString().split('.').reverse().join('.')}.in-addr.arpa`;
  return `${[...addr.value.toString(16).padStart(32, '0')].reverse().join('.')}.ip6.arpa`;
}

/** Lower-cases and drops one trailing dot: the form every map in the snapshot is keyed by. */
export function normalizeName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

export interface Upstream {
  host: string;
  port: number;
  /** `host:port` (`[v6]:port`), the metrics label. */
  label: string;
}

/** `1.2.3.4`, `1.2.3.4:5353`, `::1`, `[::1]:5353` (a zone is kept: the socket needs it). */
export function parseUpstream(text: string): Upstream | undefined {
  const t = text.trim();
  let host = t;
  let port = 53;
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(t);
  if (bracket) {
    host = bracket[1] as string;
    if (bracket[2]) port = Number(bracket[2]);
  } else if (!isIPv6(t)) {
    const m = /^([^:]+):(\d+)$/.exec(t);
    if (m) {
      host = m[1] as string;
      port = Number(m[2]);
    }
  }
  if (isIP(host.split('%')[0] ?? '') === 0 || port < 1 || port > 65535) return undefined;
  return { host, port, label: isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}` };
}
