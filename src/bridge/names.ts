/**
 * Names the L2 plugins derive rather than store: the host end of a container's veth, the
 * temporary name of a macvlan/ipvlan link before it moves, nftables owner comments and
 * per-network chain names. Derived names let DEL and GC find what ADD made even when the
 * container's netns is already gone.
 */
import { stableHash } from '../hash.js';

function digest(...parts: string[]): string {
  return stableHash(parts.join('\0'), 32);
}

/**
 * The host end of the veth: "veth" + 8 hex digits of a hash of (network, container, ifname).
 * It looks random to a user, as the reference's does, but DEL can delete it by name even when
 * the netns is gone (netns teardown deletes veths asynchronously, so DEL deletes explicitly).
 */
export function hostVethName(network: string, containerId: string, ifname: string): string {
  return `veth${digest('veth', network, containerId, ifname).slice(0, 8)}`;
}

/** A unique throw-away name for a link created in the host before it moves into a netns. */
export function temporaryLinkName(prefix: 'mv' | 'ipv' | 'vlp'): string {
  // Unique enough for a name that lives a few milliseconds; a clash fails with EEXIST and rolls
  // back, it never touches someone else's link.
  return `${prefix}tmp${Math.floor(Math.random() * 0xffffffff).toString(16).padStart(8, '0')}`;
}

/** nft keeps at most 128 bytes of a comment. */
const COMMENT_MAX = 128;

/**
 * The owner comment of a container's rules, "<network>/<container id>/<ifname>" (DESIGN §2).
 * A comment that would not fit keeps the network and ifname and replaces the container id with
 * a hash of it, so it stays unique and derivable.
 */
export function attachmentOwner(network: string, containerId: string, ifname: string): string {
  const plain = `${network}/${containerId}/${ifname}`;
  if (Buffer.byteLength(plain) <= COMMENT_MAX) return plain;
  return `${network.slice(0, 60)}/#${digest(containerId).slice(0, 32)}/${ifname}`;
}

/** Parses an owner comment back into its parts; undefined when it is not one of ours. */
export function parseAttachmentOwner(comment: string): { network: string; container: string; ifname: string } | undefined {
  const parts = comment.split('/');
  if (parts.length !== 3 || parts.some((p) => p === '')) return undefined;
  return { network: parts[0]!, container: parts[1]!, ifname: parts[2]! };
}

/** The container part of an owner comment for `containerId` (as attachmentOwner writes it). */
export function ownerMatchesContainer(ownerContainer: string, network: string, containerId: string, ifname: string): boolean {
  return attachmentOwner(network, containerId, ifname).split('/')[1] === ownerContainer;
}

/**
 * The chain holding one bridge's network-level rules in `inet shoal`. Bridge names may contain
 * characters nft cannot take unquoted, and chain names are refused when they are not plain
 * identifiers, so the chain is named by a hash of the bridge name.
 */
export function bridgeChainName(bridge: string): string {
  return /^[A-Za-z0-9_]+$/.test(bridge) ? `l2_br_${bridge}` : `l2_brh_${digest(bridge).slice(0, 12)}`;
}
