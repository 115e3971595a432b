/**
 * Who is attached to a network. The IPAM's attachment index in the store is the truth for every
 * client (podman containers as well as Shoal sandboxes): one entry per (container, ifname) with
 * its addresses. Names come from the DNS registry (shoal-dns records the container name podman
 * or `shoal run` passed as K8S_POD_NAME), when there is one.
 */
import { addressFromKey, formatAddress, parseCidr } from '../ipam/address.js';
import { attachmentPrefix, type AttachmentRecord } from '../ipam/keys.js';
import { networkEndpointsPrefix } from '../dns/registry.js';
import type { Store } from '../store/store.js';
import type { NetworkRecord } from './model.js';

export interface AttachedContainer {
  containerId: string;
  ifname: string;
  name?: string;
  /** CIDR form: address/prefix of the network's subnet. */
  addresses: string[];
  /**
   * Set when a store record of this attachment cannot be read: which record and what is wrong.
   * The attachment is still listed (its key says it exists) with what could be read, so it keeps
   * counting as attached (rm refuses, GC keeps it) until someone looks; callers report it.
   */
  problem?: string;
}

const ADDRESS_KEY_RE = /^(4:[0-9a-f]{8}|6:[0-9a-f]{32})$/;

function recordProblem(key: string, what: string): string {
  return `store record "${key}" ${what}`;
}

function noteProblem(a: AttachedContainer, problem: string): void {
  a.problem = a.problem ? `${a.problem}; ${problem}` : problem;
}

/** `<cid>/<ifname>` after `prefix`, URI-decoded; undefined for a key that is not of that form. */
function splitRef(prefix: string, key: string): { containerId: string; ifname: string } | undefined {
  const parts = key.slice(prefix.length).split('/');
  if (parts.length !== 2 || parts.some((p) => p === '')) return undefined;
  try {
    return { containerId: decodeURIComponent(parts[0]!), ifname: decodeURIComponent(parts[1]!) };
  } catch {
    return undefined;
  }
}

/** What is wrong with a parsed IPAM attachment record, if anything. */
function attachmentRecordProblem(rec: unknown): string | undefined {
  const addresses = (rec as AttachmentRecord | null)?.addresses;
  if (typeof rec !== 'object' || rec === null || !Array.isArray(addresses)) return 'has no "addresses" list';
  const bad = addresses.find((k) => typeof k !== 'string' || !ADDRESS_KEY_RE.test(k));
  return bad === undefined ? undefined : `lists ${JSON.stringify(bad)}, which is not an address key`;
}

/** What is wrong with a parsed DNS endpoint record, if anything. */
function endpointRecordProblem(ep: unknown): string | undefined {
  if (typeof ep !== 'object' || ep === null || Array.isArray(ep)) return 'is not a JSON object';
  const e = ep as Record<string, unknown>;
  if (e['name'] !== undefined && typeof e['name'] !== 'string') return 'has a "name" that is not a string';
  for (const f of ['ipv4', 'ipv6']) {
    const v = e[f];
    if (v !== undefined && !(Array.isArray(v) && v.every((x) => typeof x === 'string'))) return `has an "${f}" that is not a list of strings`;
  }
  return undefined;
}

function withPrefix(net: NetworkRecord, ip: string): string {
  if (ip.includes('/')) return ip;
  const family = ip.includes(':') ? 6 : 4;
  const subnet = net.subnets.find((s) => parseCidr(s.subnet)?.family === family);
  return subnet ? `${ip}/${subnet.subnet.split('/')[1]}` : ip;
}

/**
 * Everyone attached to `net`. A record that cannot be read does not drop its attachment: the
 * attachment is listed with `problem` set (see AttachedContainer), and the caller reports it.
 */
export async function listAttachments(store: Store, net: NetworkRecord): Promise<AttachedContainer[]> {
  const out = new Map<string, AttachedContainer>();
  // A key that is not <cid>/<ifname> still names a record of this network: listed under the raw key.
  const entry = (ref: { containerId: string; ifname: string } | undefined, rawTail: string): AttachedContainer => {
    const id = ref ? `${ref.containerId}/${ref.ifname}` : rawTail;
    let a = out.get(id);
    if (!a) out.set(id, (a = { containerId: ref?.containerId ?? rawTail, ifname: ref?.ifname ?? '', addresses: [] }));
    return a;
  };

  /** The records under `prefix` that pass `problemOf`, each with its attachment; bad ones are noted on it. */
  async function* validRecords(prefix: string, problemOf: (value: unknown) => string | undefined) {
    for (const kv of await store.list(prefix)) {
      const ref = splitRef(prefix, kv.key);
      const a = entry(ref, kv.key.slice(prefix.length));
      if (!ref) noteProblem(a, recordProblem(kv.key, 'has a key that is not <container id>/<ifname>'));
      let value: unknown;
      try {
        value = JSON.parse(kv.value);
      } catch (err) {
        noteProblem(a, recordProblem(kv.key, `is not valid JSON: ${(err as Error).message}`));
        continue;
      }
      const problem = problemOf(value);
      if (problem) noteProblem(a, recordProblem(kv.key, problem));
      else yield { a, value };
    }
  }

  for await (const { a, value } of validRecords(attachmentPrefix(net.name), attachmentRecordProblem)) {
    a.addresses = (value as AttachmentRecord).addresses.map((k) => withPrefix(net, formatAddress(addressFromKey(k))));
  }
  // An endpoint without an IPAM record (a chain with another IPAM) still counts as attached.
  for await (const { a, value } of validRecords(networkEndpointsPrefix(net.name), endpointRecordProblem)) {
    const e = value as { name?: string; ipv4?: string[]; ipv6?: string[] };
    if (e.name !== undefined) a.name = e.name;
    if (!a.addresses.length) a.addresses = [...(e.ipv4 ?? []), ...(e.ipv6 ?? [])].map((ip) => withPrefix(net, ip));
  }
  return [...out.values()].sort((a, b) => a.containerId.localeCompare(b.containerId) || a.ifname.localeCompare(b.ifname));
}

/** One line per attachment whose records could not be read, for the caller to report. */
export function attachmentProblems(net: NetworkRecord, attached: readonly AttachedContainer[]): string[] {
  return attached.filter((a) => a.problem).map((a) => `network "${net.name}", attachment "${a.containerId}/${a.ifname}": ${a.problem}`);
}
