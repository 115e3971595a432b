/**
 * Pure construction of registry records from what a CNI runtime hands shoal-dns: the container
 * name (podman's `K8S_POD_NAME` in CNI_ARGS, else `args.cni.name`, else one derived from the
 * container id), aliases (podman's `runtimeConfig.aliases[<network>]`), and addresses, gateways
 * and subnets from `prevResult`. No I/O here, so every rule is unit-tested.
 */
import type { CniDns, CniResult } from '../../cni/types.js';
import { IpAddr, IpPrefix } from '../addr.js';
import { stableHash } from '../hash.js';
import { parseAddress } from './ip.js';
import type { RegistryEndpoint, RegistryNetwork } from './registry.js';

/** Search domain when the config names none (podman uses `dns.podman`; ours mirrors it). */
export const DEFAULT_DOMAIN = 'dns.shoal';

/** shoal-dns's own config fields (validated by the plugin's schema before they get here). */
export interface DnsPluginConfig {
  /** Search domain handed to containers; names also resolve as `<name>.<domainName>`. */
  domainName?: string;
  /** Custom hosts: name -> address(es), answered before forwarding. */
  hosts?: Record<string, string | string[]>;
  /** The network's own upstream resolvers (`ip`, `ip:port`, `[v6]:port`); else the host's. */
  upstreams?: string[];
  /** TTL of local answers for this network, seconds. */
  ttl?: number;
}

export interface EndpointInputs {
  network: string;
  containerId: string;
  ifname: string;
  /** CNI_ARGS (only the keys the plugin declared). */
  cniArgs: Record<string, string>;
  /** The config's `args` (CONVENTIONS.md: `args.cni.*`). */
  args?: Record<string, unknown>;
  runtimeConfig?: Record<string, unknown>;
  prevResult: CniResult;
}

/** Letters, digits, `_`, `-` and dots between labels; at most 253 bytes, labels at most 63. */
export function dnsNameProblem(name: string): string | undefined {
  if (name === '') return 'is empty';
  if (name.length > 253) return 'is longer than 253 characters';
  if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(name)) return 'may contain only letters, digits, "_", "-" and dots between labels';
  if (name.split('.').some((l) => l.length > 63)) return 'has a label longer than 63 characters';
  // RFC 1123 host names; a leading "-" also reads as an option to tools given the name.
  if (name.split('.').some((l) => l.startsWith('-'))) return 'has a label starting with "-"';
  return undefined;
}

export class EndpointInputError extends Error {
  readonly code = 'EINVALIDCONFIG';
  constructor(message: string) {
    super(message);
    this.name = 'EndpointInputError';
  }
}

function cniArgsName(args: Record<string, unknown> | undefined): string | undefined {
  const cni = args?.['cni'];
  if (typeof cni !== 'object' || cni === null) return undefined;
  const name = (cni as Record<string, unknown>)['name'];
  return typeof name === 'string' && name !== '' ? name : undefined;
}

/** A runtime-generated id (docker, podman, CRI-O): 64 lowercase hex digits. */
const HEX_ID = /^[0-9a-f]{64}$/;
const LABEL_MAX = 63;

/**
 * The name an unnamed container gets from its id, the one its user would try:
 * - a 64-hex id (docker, podman, CRI-O) -> its first 12 characters, the short id their tools show;
 * - any other id (one the user chose: containerd's `ctr run --cni` passes `<namespace>-<id>`,
 *   e.g. `default-web`) -> the whole id when it is a valid label (letters, digits, `_`, `-`, at
 *   most 63 characters);
 * - otherwise a label derived from it: every other character (the `.` CNI ids may contain)
 *   becomes `-`, and an id longer than 63 characters keeps its first 54, then `-` and 8 hex
 *   digits of a hash of the whole id, so two long ids with one prefix stay apart.
 */
export function idName(containerId: string): string {
  if (HEX_ID.test(containerId)) return containerId.slice(0, 12);
  const label = containerId.replace(/[^A-Za-z0-9_-]/g, '-');
  if (label.length <= LABEL_MAX) return label;
  return `${label.slice(0, LABEL_MAX - 9)}-${stableHash(containerId, 8)}`;
}

/**
 * The name a container is registered under: `K8S_POD_NAME` (podman sends the container name
 * there), else `args.cni.name`, else one derived from the container id (`idName`), so an
 * unnamed container still resolves by something its user can guess.
 */
export function endpointName(inputs: Pick<EndpointInputs, 'cniArgs' | 'args' | 'containerId'>): string {
  const pod = inputs.cniArgs['K8S_POD_NAME'];
  return pod !== undefined && pod !== '' ? pod : (cniArgsName(inputs.args) ?? idName(inputs.containerId));
}

/** podman's `runtimeConfig.aliases[<network>]`; invalid entries and duplicates are dropped. */
export function endpointAliases(runtimeConfig: Record<string, unknown> | undefined, network: string, name: string): string[] {
  const all = runtimeConfig?.['aliases'];
  if (typeof all !== 'object' || all === null) return [];
  const mine = (all as Record<string, unknown>)[network];
  if (!Array.isArray(mine)) return [];
  const out: string[] = [];
  for (const a of mine) {
    if (typeof a !== 'string' || dnsNameProblem(a) !== undefined) continue;
    if (a.toLowerCase() === name.toLowerCase() || out.some((o) => o.toLowerCase() === a.toLowerCase())) continue;
    out.push(a);
  }
  return out;
}

/** The prevResult ips that belong to the container: no interface index, or one in a sandbox. */
/** The aliases endpointAliases leaves out because they are no DNS names, with the reason. */
export function refusedAliases(runtimeConfig: Record<string, unknown> | undefined, network: string): Array<{ alias: unknown; problem: string }> {
  const all = runtimeConfig?.['aliases'];
  if (typeof all !== 'object' || all === null) return [];
  const mine = (all as Record<string, unknown>)[network];
  if (!Array.isArray(mine)) return [];
  const out: Array<{ alias: unknown; problem: string }> = [];
  for (const a of mine) {
    const problem = typeof a === 'string' ? dnsNameProblem(a) : 'is not a string';
    if (problem) out.push({ alias: a, problem });
  }
  return out;
}

function containerIps(prev: CniResult): NonNullable<CniResult['ips']> {
  return (prev.ips ?? []).filter((ip) => {
    if (ip.interface === undefined) return true;
    const iface = prev.interfaces?.[ip.interface];
    return iface === undefined || (iface.sandbox !== undefined && iface.sandbox !== '');
  });
}

/** The MAC of the interface the container's first address is on, when the result says. */
function containerMac(prev: CniResult): string | undefined {
  const index = containerIps(prev)[0]?.interface;
  const mac = index === undefined ? undefined : prev.interfaces?.[index]?.mac;
  return typeof mac === 'string' && /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(mac) ? mac.toLowerCase() : undefined;
}

export function buildEndpoint(inputs: EndpointInputs): RegistryEndpoint {
  const name = endpointName(inputs);
  const problem = dnsNameProblem(name);
  if (problem) throw new EndpointInputError(`failed to register "${name}": the container name ${problem}`);
  const ipv4: string[] = [];
  const ipv6: string[] = [];
  for (const ip of containerIps(inputs.prevResult)) {
    // Kept in CIDR form as the result has it (src/dns/types.ts), printed canonically.
    const parsed = IpPrefix.tryParse(ip.address, { bareAddress: true });
    if (!parsed) continue;
    (parsed.family === 4 ? ipv4 : ipv6).push(parsed.toString());
  }
  if (ipv4.length + ipv6.length === 0) {
    throw new EndpointInputError(`failed to register "${name}": prevResult has no container address (is shoal-dns chained after the main plugin?)`);
  }
  const endpoint: RegistryEndpoint = { network: inputs.network, containerId: inputs.containerId, ifname: inputs.ifname, name };
  const aliases = endpointAliases(inputs.runtimeConfig, inputs.network, name);
  if (aliases.length) endpoint.aliases = aliases;
  if (ipv4.length) endpoint.ipv4 = ipv4;
  if (ipv6.length) endpoint.ipv6 = ipv6;
  // The container side's MAC: other nodes of an overlay program it for these addresses.
  const mac = containerMac(inputs.prevResult);
  if (mac) endpoint.mac = mac;
  return endpoint;
}

/** `10.88.0.5/16` -> `10.88.0.0/16`, `fd00:88::5/64` -> `fd00:88::/64`; undefined without a prefix. */
export function subnetOf(cidrText: string): string | undefined {
  return IpPrefix.tryParse(cidrText)?.masked().toString();
}

function hostsMap(hosts: DnsPluginConfig['hosts']): Record<string, string[]> | undefined {
  if (!hosts) return undefined;
  const out: Record<string, string[]> = {};
  // Validated by the plugin's schema; stored in the one formatter's text.
  for (const [name, v] of Object.entries(hosts)) out[name] = (Array.isArray(v) ? v : [v]).map((a) => IpAddr.tryParse(a)?.toString() ?? a);
  return Object.keys(out).length ? out : undefined;
}

/** The network record this ADD contributes (merged with the stored one by the registry). */
export function buildNetwork(network: string, conf: DnsPluginConfig, prev: CniResult): RegistryNetwork {
  const gateways: IpAddr[] = [];
  const subnets: string[] = [];
  for (const ip of containerIps(prev)) {
    const gateway = ip.gateway ? parseAddress(ip.gateway) : undefined;
    if (gateway && !gateways.some((g) => g.equals(gateway))) gateways.push(gateway);
    const s = subnetOf(ip.address);
    if (s && !subnets.includes(s)) subnets.push(s);
  }
  if (gateways.length === 0) {
    throw new EndpointInputError(`failed to register network "${network}": prevResult has no gateway for the DNS server to listen on`);
  }
  // IPv4 first: resolvers try nameservers in order, and most clients ask over v4.
  gateways.sort((a, b) => a.family - b.family);
  const record: RegistryNetwork = { name: network, domain: conf.domainName ?? DEFAULT_DOMAIN, gateways: gateways.map((g) => g.toString()), subnets };
  const hosts = hostsMap(conf.hosts);
  if (hosts) record.hosts = hosts;
  if (conf.upstreams?.length) record.upstreams = conf.upstreams;
  if (conf.ttl !== undefined) record.ttl = conf.ttl;
  return record;
}

/**
 * prevResult with our DNS merged in: the gateways become the nameservers (the host resolvers an
 * IPAM may have put there are what the daemon forwards to anyway), the network's domain goes
 * first in the search list, and any other search entries and options are kept.
 */
export function mergeDnsResult(prev: CniResult, network: RegistryNetwork): CniResult {
  const old: CniDns = prev.dns ?? {};
  const search = [network.domain ?? DEFAULT_DOMAIN, ...(old.search ?? [])].filter((s, i, all) => all.indexOf(s) === i);
  const dns: CniDns = { ...old, nameservers: [...(network.gateways ?? [])], search };
  return { ...prev, dns };
}
