import { addressKey, type Address } from './address.js';

/**
 * Where IPAM keeps its state in the store. Every name part is URI-encoded so a container id
 * or network name can never forge a "/" and land in another network's key space.
 *
 *   ipam/<network>/addr/<4:0a580005>         -> {"containerId","ifname","rangeSet"}   the truth
 *   ipam/<network>/attachment/<cid>/<ifname> -> {"addresses":["4:0a580005", ...]}     index for DEL
 *   ipam/<network>/cursor/<rangeSet>          -> "4:0a580005"                          round-robin
 *   ipam/<network>/block/<10.1.0.64_26>       -> {"claimedAt"}                          this node's blocks
 *   ipam-networks/<network>                   -> {"capacity":"254"}                     for stats
 *
 * The address record and the attachment index are always written and removed in the same
 * transaction, so they cannot disagree; GC still treats the address records as the truth.
 */
const enc = encodeURIComponent;

export const NETWORKS_PREFIX = 'ipam-networks/';

export function networkPrefix(network: string): string {
  return `ipam/${enc(network)}/`;
}

export function addrPrefix(network: string): string {
  return `${networkPrefix(network)}addr/`;
}

export function addrKey(network: string, address: Address): string {
  return addrPrefix(network) + addressKey(address);
}

export function attachmentPrefix(network: string): string {
  return `${networkPrefix(network)}attachment/`;
}

export function attachmentKey(network: string, containerId: string, ifname: string): string {
  return `${attachmentPrefix(network)}${enc(containerId)}/${enc(ifname)}`;
}

/** Container id and ifname back out of an attachment key. */
export function parseAttachmentKey(network: string, key: string): { containerId: string; ifname: string } {
  const [cid = '', ifname = ''] = key.slice(attachmentPrefix(network).length).split('/');
  return { containerId: decodeURIComponent(cid), ifname: decodeURIComponent(ifname) };
}

/** This node's address blocks of a cluster network (mirrored by the daemon, DESIGN §7). */
export function blockPrefix(network: string): string {
  return `${networkPrefix(network)}block/`;
}

export function blockKey(network: string, cidr: string): string {
  return `${blockPrefix(network)}${cidr.replace('/', '_')}`;
}

/** The CIDR back out of a block key. */
export function blockFromKey(network: string, key: string): string {
  return key.slice(blockPrefix(network).length).replace('_', '/');
}

export function cursorKey(network: string, rangeSetIndex: number): string {
  return `${networkPrefix(network)}cursor/${rangeSetIndex}`;
}

export function networkInfoKey(network: string): string {
  return NETWORKS_PREFIX + enc(network);
}

export function networkFromInfoKey(key: string): string {
  return decodeURIComponent(key.slice(NETWORKS_PREFIX.length));
}

export interface AddressRecord {
  containerId: string;
  ifname: string;
  rangeSet: number;
}

export interface AttachmentRecord {
  /** Address keys ("4:0a580005"), one per range set, in range-set order. */
  addresses: string[];
}
