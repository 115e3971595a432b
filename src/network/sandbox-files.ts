/**
 * The /etc files a sandbox sees (bind-mounted over the host's in its private mount namespace):
 * resolv.conf from the CNI result's DNS (shoal-dns hands out the network's gateway) unless
 * --dns overrides it, hosts with the sandbox's own addresses and --add-host entries, hostname.
 * Pure text rendering, unit-tested; the caller writes the files.
 */
import { dnsNameProblem } from '../dns/registry-build.js';

export interface SandboxFilesInput {
  hostname: string;
  name: string;
  /** Addresses without prefix length. */
  addresses: string[];
  /** From the CNI result (dns.nameservers / dns.search). */
  resultNameservers: string[];
  resultSearch: string[];
  /** --dns / --dns-search / --add-host. */
  dns: string[];
  dnsSearch: string[];
  addHosts: Array<{ name: string; ip: string }>;
  /** The host's resolv.conf text (used for --network host, and when nothing else names a server). */
  hostResolvConf: string;
  /** The host's /etc/hosts text (kept for --network host, as docker does). */
  hostHosts?: string;
  /** false with --network none / host-only: loopback resolvers of the host are unreachable. */
  hostNetwork: boolean;
}

function hostNameservers(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f[0] === 'nameserver' && f[1])
    .map((f) => f[1]!);
}

function hostSearch(text: string): string[] {
  const line = text.split('\n').map((l) => l.trim().split(/\s+/)).filter((f) => f[0] === 'search' || f[0] === 'domain').pop();
  return line ? line.slice(1) : [];
}

export function renderResolvConf(i: SandboxFilesInput): string {
  let servers = i.dns.length ? i.dns : i.resultNameservers;
  let search = [...i.dnsSearch, ...i.resultSearch.filter((s) => !i.dnsSearch.includes(s))];
  if (!servers.length) {
    servers = hostNameservers(i.hostResolvConf);
    // 127.0.0.53 and friends listen in the host's netns only.
    if (!i.hostNetwork) servers = servers.filter((s) => !s.startsWith('127.') && s !== '::1');
    if (!search.length) search = hostSearch(i.hostResolvConf);
  }
  // A plugin's result (or the host file) is not trusted to be one word per entry: a space or a
  // line break inside an entry would add words or whole lines (a second nameserver).
  search = search.filter((d) => dnsNameProblem(d.replace(/\.$/, '')) === undefined);
  // eslint-disable-next-line no-control-regex
  servers = servers.filter((s) => /^[^\s\x00-\x1f\x7f]+$/.test(s));
  const lines = ['# written by shoal run'];
  if (search.length) lines.push(`search ${search.join(' ')}`);
  for (const s of servers) lines.push(`nameserver ${s}`);
  return lines.join('\n') + '\n';
}

export function renderHosts(i: SandboxFilesInput): string {
  const lines: string[] = [];
  if (i.hostNetwork && i.hostHosts !== undefined) {
    lines.push(i.hostHosts.trimEnd());
  } else {
    lines.push('127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback');
    const names = [...new Set([i.hostname, i.name])].join(' ');
    for (const a of i.addresses) lines.push(`${a}\t${names}`);
  }
  for (const h of i.addHosts) lines.push(`${h.ip}\t${h.name}`);
  return lines.join('\n') + '\n';
}

/** Parses --add-host NAME:IP (IPv6 after the first colon); undefined when malformed. */
export function parseAddHost(spec: string): { name: string; ip: string } | undefined {
  const i = spec.indexOf(':');
  if (i <= 0) return undefined;
  const name = spec.slice(0, i);
  const ip = spec.slice(i + 1);
  if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(name)) return undefined;
  if (!/^[0-9.]+$/.test(ip) && !ip.includes(':')) return undefined;
  return { name, ip };
}
