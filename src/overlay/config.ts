/**
 * shoal-vxlan's network config: the overlay's own fields (valibot, code 7 naming the field),
 * and the shoal-bridge config the attachment itself runs with (addresses, routes,
 * masquerade, embedded portmap/discovery: the bridge plugin's code, see plugin.ts).
 */
import * as v from 'valibot';
import { interfaceName, intRange, ipAddress, parseConfig, pluginConfig } from '../../cni/config.js';
import type { NetConf } from '../../cni/config.js';
import { overlayBridgeName, VNI_MAX, VNI_MIN } from './names.js';
import type { UnderlaySpec } from './underlay.js';
import { OverlayConfigError } from './errors.js';

const ipamSection = v.looseObject({ type: v.pipe(v.string(), v.minLength(1, 'must not be empty')) });

export const vxlanSchema = pluginConfig({
  vni: intRange(VNI_MIN, VNI_MAX, `must be ${VNI_MIN}-${VNI_MAX}`),
  underlayInterface: v.optional(interfaceName),
  underlayAddress: v.optional(ipAddress),
  mtu: v.optional(intRange(68, 65535, 'must be 68-65535')),
  bridge: v.optional(interfaceName),
  ipMasq: v.optional(v.boolean()),
  isDefaultGateway: v.optional(v.boolean()),
  internal: v.optional(v.boolean()),
  ipam: ipamSection,
});

export interface VxlanConf {
  network: string;
  vni: number;
  underlay: UnderlaySpec;
  /** Undefined: the underlay's MTU minus the VXLAN overhead. */
  mtu: number | undefined;
  bridge: string;
  /** Default true: the overlay's addresses mean nothing off the overlay, so traffic leaving it is masqueraded. */
  ipMasq: boolean;
  /** Default true (unless `internal`): the node's own bridge is the container's default gateway. */
  isDefaultGateway: boolean;
}

export function parseVxlanConf(config: unknown): VxlanConf {
  const c = parseConfig(vxlanSchema, config);
  // Containers attach with a macvlan on the VXLAN device (device.ts): there is no host port to
  // check a source MAC on, and nothing to hairpin.
  if ((config as Record<string, unknown>)['macspoofchk'] === true) {
    throw new OverlayConfigError('macspoofchk', true, 'is not available on an overlay: containers attach with a macvlan on the VXLAN device, which has no host port to check');
  }
  const internal = c.internal ?? false;
  return {
    network: c.name,
    vni: c.vni,
    underlay: { interface: c.underlayInterface, address: c.underlayAddress },
    mtu: c.mtu,
    bridge: c.bridge ?? overlayBridgeName(c.name, c.vni),
    ipMasq: c.ipMasq ?? true,
    isDefaultGateway: (c.isDefaultGateway ?? true) && !internal,
  };
}

/**
 * DEL, GC and STATUS need only what finds the attachment (the network name, the bridge) and the
 * rules it may hold (`ipMasq`): a config whose overlay fields no longer validate must not block
 * a runtime's cleanup.
 */
export function parseVxlanConfForDel(config: NetConf): Pick<VxlanConf, 'network' | 'bridge' | 'ipMasq' | 'isDefaultGateway'> {
  const c = config as Record<string, unknown>;
  const vni = typeof c['vni'] === 'number' ? c['vni'] : 0;
  const bridge = typeof c['bridge'] === 'string' && c['bridge'] !== '' ? c['bridge'] : overlayBridgeName(config.name, vni);
  return { network: config.name, bridge, ipMasq: c['ipMasq'] !== false, isDefaultGateway: c['isDefaultGateway'] !== false && c['internal'] !== true };
}

/**
 * The shoal-bridge config the attachment runs with: the user's config (its bridge options, such
 * as `isolate`, `portmap`, `discovery`, are the bridge's own), with the overlay's gateway link
 * (as `bridge`) and MTU, and the node's gateway as the container's: every node's gateway holds
 * the same address and MAC, and a container's traffic off the overlay leaves through its own
 * node.
 */
export function bridgeConfig(config: NetConf, conf: Pick<VxlanConf, 'bridge' | 'ipMasq' | 'isDefaultGateway'>, mtu: number | undefined): NetConf {
  const out: Record<string, unknown> = { ...config, bridge: conf.bridge, isGateway: true, isDefaultGateway: conf.isDefaultGateway, ipMasq: conf.ipMasq };
  if (mtu !== undefined) out['mtu'] = mtu;
  else delete out['mtu'];
  return out as NetConf;
}
