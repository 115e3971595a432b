/**
 * The DNS server's input shapes (what the daemon feeds it) and the small result types the
 * handler chain passes around.
 */
import type { SrvTable } from './handler-srv.js';

/** One container attachment, as shoal-dns registers it in the store. */
export interface DnsEndpoint {
  network: string;
  containerId: string;
  name: string;
  aliases?: string[];
  /** Addresses, with or without a `/prefix` (CNI results carry one). */
  ipv4?: string[];
  ipv6?: string[];
}

/** Per-network DNS configuration (from the network's conflist / store entry). */
export interface DnsNetworkConfig {
  name: string;
  /** Search domain handed to containers, e.g. `dns.shoal`; names resolve under it. */
  domain?: string;
  /** Gateway addresses (v4 and/or v6): the daemon listens there; they count as in-network. */
  gateways?: string[];
  /** CIDRs; a query from an address inside one of them is in this network's scope. */
  subnets?: string[];
  /** Custom hosts (the `--add-host` idea): name -> addresses, answered before forwarding. */
  hosts?: Record<string, string[]>;
  /** The network's own upstream resolvers (`ip`, `ip:port`, `[v6]:port`); else resolv.conf. */
  upstreams?: string[];
  /** TTL of local answers for this network, seconds; default: the server's `localTtl`. */
  ttl?: number;
}

export interface DnsRecordsInput {
  networks: DnsNetworkConfig[];
  endpoints: DnsEndpoint[];
  /** SRV names per network (services' ports, src/service/dns-srv.ts). */
  srv?: SrvTable;
}

/** The question the handlers see: name lower-cased without the trailing dot. */
export interface Question {
  name: string;
  type: number;
  class: number;
  /** True when a label contained a `.` or `\`: never matches a local record, only forwarded. */
  opaque: boolean;
}

/** A locally built answer: resource records already in wire form (owner = the question name). */
export interface LocalResult {
  kind: 'local';
  rcode: number;
  /** Each element is one complete RR using a compression pointer to the question name. */
  records: Buffer[];
  /** Network whose data answered (metrics label). */
  network: string;
}

/** A whole response message from an upstream (id and question are patched by the engine). */
export interface RawResult {
  kind: 'raw';
  rcode: number;
  message: Buffer;
  /** Byte range of the OPT RR inside `message`, if it is the last record (strippable). */
  optStart?: number;
  network: string;
}

/** Just an rcode (REFUSED, SERVFAIL, NXDOMAIN with no records). */
export interface RcodeResult {
  kind: 'rcode';
  rcode: number;
  network: string;
}

export type HandlerResult = LocalResult | RawResult | RcodeResult;

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5, BADVERS: 16 } as const;

export const QTYPE = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33, OPT: 41, ANY: 255 } as const;

export const QCLASS_IN = 1;
