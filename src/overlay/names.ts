/**
 * Names and numbers the overlay derives rather than stores, so every node (and DEL, CHECK, the
 * daemon's peer sync) finds the same objects from the network's name and VNI alone.
 */
import { stableHash } from '../hash.js';

/** IANA's VXLAN port (the kernel's default, 8472, is Linux's pre-standard one). */
export const VXLAN_PORT = 4789;

/** VNIs a network may use: 0 and 0xffffff are left out (reserved by many VTEP implementations). */
export const VNI_MIN = 1;
export const VNI_MAX = 16_777_214;

/**
 * The NDA_PROTOCOL tag on the neighbour entries the peer sync writes (`ip neigh` shows
 * `proto 83`, 'S'). The sync reads back and removes only entries carrying it.
 */
export const SHOAL_NEIGH_PROTOCOL = 83;

function vniHex(vni: number): string {
  return vni.toString(16).padStart(6, '0');
}

/**
 * `<prefix>-<vni hex>-<network hash>` in 15 bytes. A VNI above 24 bits (which the kernel then
 * refuses with its own text) takes hash digits, so the request still carries a valid name.
 */
function derivedName(prefix: string, network: string, vni: number): string {
  const hex = vniHex(vni);
  return `${prefix}-${hex}-${stableHash(`overlay:${network}`, Math.max(1, 15 - prefix.length - 2 - hex.length))}`;
}

/**
 * The VXLAN device of (network, VNI): "vx-" + the VNI in 6 hex digits + "-" + 5 hex digits of
 * a hash of the network name, exactly 15 bytes (Docker's overlay uses the same shape). The VNI
 * is readable in `ip link`; the network part keeps two networks that were given the same VNI
 * apart by name, so the kernel's own refusal ("A VXLAN device with the specified VNI already
 * exists") reports the clash.
 */
export function vxlanDeviceName(network: string, vni: number): string {
  return derivedName('vx', network, vni);
}

/**
 * The gateway link of an overlay network when the config names none ("bridge" in the config,
 * the name it had when it was one): "vb-" + VNI + network hash, as the VXLAN device. The same on
 * every node, so the MAC derived from it (src/bridge/mac.ts) is too: the gateway is one address
 * and one MAC on every node (an anycast gateway).
 */
export function overlayBridgeName(network: string, vni: number): string {
  return derivedName('vb', network, vni);
}

/**
 * The link of a node's load-balancer endpoint on an overlay network (src/cluster/lb-endpoint.ts):
 * "lb-…", a macvlan on the VXLAN device holding the node's own address on the network.
 */
export function lbEndpointName(network: string, vni: number): string {
  return derivedName('lb', network, vni);
}
