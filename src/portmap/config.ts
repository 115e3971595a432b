/**
 * shoal-portmap's config and the plan derived from it: which DNAT entries (family, host
 * address, host port, protocol -> container address and port) an attachment publishes, and the
 * names (owner comment, chains) its nftables objects carry. Pure: no kernel access, so the
 * whole mapping logic is unit-tested.
 */
import { IpAddr, IpPrefix } from '../addr.js';
import { stableHash } from '../hash.js';
import * as v from 'valibot';
import { parseConfig, pluginConfig, portMappingSchema } from '../../cni/config.js';
import { CniCode, CniError } from '../../cni/errors.js';
import type { CniResult } from '../../cni/types.js';

export type Protocol = 'tcp' | 'udp' | 'sctp';
export type IpFamily = 4 | 6;

export const portmapSchema = pluginConfig({
  /** Masquerade hairpin and localhost traffic (reference portmap's `snat`). */
  snat: v.optional(v.boolean()),
  /** Masquerade every connection to a published port, whatever its source. */
  masqAll: v.optional(v.boolean()),
  runtimeConfig: v.optional(v.looseObject({ portMappings: v.optional(v.array(portMappingSchema)) })),
});

/** One entry of runtimeConfig.portMappings, normalised (hostIP "" = every local address). */
export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: Protocol;
  hostIP: string;
}

/**
 * One DNAT a family table gets, in the text the rules and nft's output use (addresses through
 * the one formatter). `hostIP` undefined = any local address of that family.
 */
export interface DnatEntry {
  family: IpFamily;
  hostIP?: string;
  hostPort: number;
  protocol: Protocol;
  containerIP: string;
  containerPort: number;
}

export interface ContainerAddress {
  family: IpFamily;
  ip: IpAddr;
  /** The container's subnet ("10.1.0.0/24"): hairpin sources. */
  subnet: IpPrefix;
}

export interface Attachment {
  network: string;
  containerId: string;
  ifname: string;
  /** The comment on every rule of this attachment. */
  owner: string;
  /** Regular chain holding the attachment's DNAT rules (jumped to from the port maps). */
  dnatChain: string;
  /** Regular chain holding its masquerade rules (jumped to from the masq map). */
  snatChain: string;
}

export interface PortmapPlan {
  attachment: Attachment;
  mappings: PortMapping[];
  dnat: DnatEntry[];
  addresses: ContainerAddress[];
  snat: boolean;
  masqAll: boolean;
}

export const OWNER_PREFIX = 'portmap/';

const COMMENT_MAX = 128;
const shortHash = (text: string, n: number) => `h${stableHash(text, n)}`;

/**
 * The owner comment: `portmap/<network>/<container id>/<ifname>` (DESIGN §2). nft keeps 128
 * bytes of comment, so a network name or container id that would not fit is replaced by a
 * hash; GC compares owners computed the same way, so it never needs to reverse one.
 */
export function ownerOf(network: string, containerId: string, ifname: string): string {
  const make = (n: string, c: string) => `${OWNER_PREFIX}${n}/${c}/${ifname}`;
  let net = network;
  let cid = containerId;
  if (Buffer.byteLength(make(net, cid)) > COMMENT_MAX) net = shortHash(network, 16);
  if (Buffer.byteLength(make(net, cid)) > COMMENT_MAX) cid = shortHash(containerId, 32);
  return make(net, cid);
}

/** Owners of one network start with one of these (plain or hashed network name). */
export function networkOwnerPrefixes(network: string): string[] {
  return [`${OWNER_PREFIX}${network}/`, `${OWNER_PREFIX}${shortHash(network, 16)}/`];
}

/** Chain names derive from the owner alone, so an owner read back from a comment is enough. */
export function chainsOf(owner: string): Pick<Attachment, 'dnatChain' | 'snatChain'> {
  const hash = stableHash(owner, 16);
  return { dnatChain: `portmap-c-${hash}`, snatChain: `portmap-s-${hash}` };
}

export function attachmentOf(network: string, containerId: string, ifname: string): Attachment {
  const owner = ownerOf(network, containerId, ifname);
  return { network, containerId, ifname, owner, ...chainsOf(owner) };
}

/** The attachment an owner comment names (ids may be hashes when they were too long). */
export function attachmentFromOwner(network: string, owner: string): Attachment {
  const parsed = parseOwner(owner);
  return { network, containerId: parsed?.containerId ?? '', ifname: parsed?.ifname ?? '', owner, ...chainsOf(owner) };
}

/** Parses an owner comment back into (network tag, container id, ifname). */
export function parseOwner(comment: string): { networkTag: string; containerId: string; ifname: string } | undefined {
  if (!comment.startsWith(OWNER_PREFIX)) return undefined;
  const parts = comment.slice(OWNER_PREFIX.length).split('/');
  if (parts.length !== 3 || parts.some((p) => p === '')) return undefined;
  return { networkTag: parts[0] as string, containerId: parts[1] as string, ifname: parts[2] as string };
}

/** Canonical text of an address (what nft prints, read back): IPv6 compressed, lower case. */
export function canonicalIp(ip: string): string {
  return IpAddr.parse(ip).toString();
}

/**
 * The container's addresses from prevResult (its text parsed here, once): the first of each
 * family, preferring IPs on an interface inside the sandbox (that is the container's side of
 * the attachment).
 */
export function containerAddresses(prev: CniResult | undefined): ContainerAddress[] {
  const ips = prev?.ips ?? [];
  const inSandbox = (i: number | undefined) => i !== undefined && prev?.interfaces?.[i]?.sandbox !== undefined;
  const ordered = [...ips.filter((ip) => inSandbox(ip.interface)), ...ips.filter((ip) => !inSandbox(ip.interface))];
  const out: ContainerAddress[] = [];
  for (const ip of ordered) {
    const prefix = IpPrefix.parse(ip.address, { bareAddress: true });
    if (!out.some((a) => a.family === prefix.family)) out.push({ family: prefix.family, ip: prefix.addr, subnet: prefix.masked() });
  }
  return out;
}

/** runtimeConfig.portMappings normalised and checked for duplicates within the request. */
export function normaliseMappings(raw: readonly v.InferOutput<typeof portMappingSchema>[]): PortMapping[] {
  const out: PortMapping[] = [];
  raw.forEach((m, i) => {
    const mapping: PortMapping = {
      hostPort: m.hostPort,
      containerPort: m.containerPort,
      protocol: m.protocol ?? 'tcp',
      // The schema parsed it (cni/config.ts hostIP): printed once, canonically.
      hostIP: m.hostIP ? m.hostIP.toString() : '',
    };
    const same = out.find((o) => o.hostPort === mapping.hostPort && o.protocol === mapping.protocol && o.hostIP === mapping.hostIP);
    if (same && same.containerPort !== mapping.containerPort) {
      throw new CniError(
        CniCode.InvalidNetworkConfig,
        `invalid network config: field "runtimeConfig.portMappings[${i}]": port ${mapping.hostPort}/${mapping.protocol} is published twice`,
      );
    }
    if (!same) out.push(mapping);
  });
  return out;
}

/**
 * Which DNAT entries the mappings need. hostIP "" publishes on every local address of each
 * family the container has; "0.0.0.0" / "::" on every address of that family only; anything
 * else on that address only. A mapping whose family the container lacks is skipped (as the
 * reference plugin does): there is nothing to forward to.
 */
export function dnatEntries(mappings: readonly PortMapping[], addresses: readonly ContainerAddress[]): DnatEntry[] {
  const out: DnatEntry[] = [];
  for (const m of mappings) {
    // hostIP is canonical text (normaliseMappings), so its family shows in its spelling.
    const hostFamily = m.hostIP === '' ? undefined : m.hostIP.includes(':') ? 6 : 4;
    for (const a of addresses) {
      if (hostFamily !== undefined && hostFamily !== a.family) continue;
      const entry: DnatEntry = { family: a.family, hostPort: m.hostPort, protocol: m.protocol, containerIP: a.ip.toString(), containerPort: m.containerPort };
      if (m.hostIP !== '' && m.hostIP !== '0.0.0.0' && m.hostIP !== '::') entry.hostIP = m.hostIP;
      out.push(entry);
    }
  }
  return out;
}

export function buildPlan(config: unknown, containerId: string, ifname: string, prevResult: CniResult | undefined): PortmapPlan {
  const conf = parseConfig(portmapSchema, config);
  const mappings = normaliseMappings(conf.runtimeConfig?.portMappings ?? []);
  const addresses = containerAddresses(prevResult);
  return {
    attachment: attachmentOf(conf.name, containerId, ifname),
    mappings,
    dnat: dnatEntries(mappings, addresses),
    addresses,
    snat: conf.snat ?? true,
    masqAll: conf.masqAll ?? false,
  };
}

/** "8080/tcp" */
export function portText(port: number, protocol: string): string {
  return `${port}/${protocol}`;
}
