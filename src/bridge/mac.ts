/**
 * MAC addresses that neighbours can rely on (issue 12).
 *
 * The gateway: a Linux bridge whose MAC was never set takes the lowest MAC of its ports, so
 * every container that joins or leaves can change the gateway's MAC under the others, which
 * keep sending to the old one until their ARP entry goes stale (~20 s of silence). A MAC set
 * explicitly (at creation or later) is kept by the kernel (addr_assign_type "set"). Shoal
 * creates its bridges with a MAC derived from the bridge name: stable across re-creation, and
 * the same on every node for an overlay's gateway link (an anycast gateway).
 *
 * A container: its MAC is derived from its address, as Docker does, instead of a random one.
 * When an address is released and handed to a new container, neighbours that still hold the
 * previous holder's ARP/ND entry reach the new holder at once, with no announcement that could
 * be lost or sent before the bridge port forwards. (A gratuitous ARP from the container races
 * the bridge port's carrier handling; a MAC that does not change needs no message at all.)
 * Both are locally administered unicast addresses (first byte 0x02) with distinct second bytes,
 * so a bridge MAC never equals a container MAC.
 */
import type { IpAddr } from '../addr.js';
import { stableHash } from '../hash.js';

const BRIDGE_PREFIX = '02:5b';
const CONTAINER_V4_PREFIX = '02:5c';
const CONTAINER_V6_PREFIX = '02:5d';

function withPrefix(prefix: string, bytes: Uint8Array): string {
  return `${prefix}:${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(':')}`;
}

/** The MAC Shoal gives the bridge `name`: 02:5b followed by 32 bits of a hash of the name. */
export function bridgeMac(name: string): string {
  return `${BRIDGE_PREFIX}:${stableHash(`bridge-mac:${name}`, 8).replace(/(..)(?!$)/g, '$1:')}`;
}

/**
 * The MAC for a container interface holding `addresses`: 02:5c and the first IPv4 address, or
 * for an IPv6-only interface 02:5d and the low 32 bits of the first IPv6 address. Undefined when
 * there is no address (an L2-only attachment keeps a random MAC).
 */
export function containerMac(addresses: readonly IpAddr[]): string | undefined {
  const v4 = addresses.find((a) => a.family === 4);
  if (v4) return withPrefix(CONTAINER_V4_PREFIX, v4.toBytes());
  const v6 = addresses.find((a) => a.family === 6);
  if (v6) return withPrefix(CONTAINER_V6_PREFIX, v6.toBytes().subarray(12));
  return undefined;
}
