/**
 * Network config of the L2 plugins (shoal-bridge, shoal-macvlan, shoal-ipvlan): valibot
 * schemas with the reference plugins' option names and meanings, Shoal's additions, and the
 * MAC address a runtime may ask for. Validation failures are code 7 naming the field; options
 * this kernel cannot honour (a bridge `vlan`) are code 2 naming the field and value.
 */
import * as v from 'valibot';
import { interfaceName, intRange, macAddress, parseConfig, pluginConfig } from '../../cni/config.js';
import { invalidConfig } from '../../cni/errors.js';
import type { CniRequest } from '../../cni/skel.js';

const mtu = intRange(68, 65535, 'must be 68-65535');
const ipamSection = v.looseObject({ type: v.pipe(v.string(), v.minLength(1, 'must not be empty')) });
/**
 * An embedded step's section (embedded.ts): only "is an object" is checked here; its fields are
 * the embedded plugin's own and are validated by that plugin, with the section's name prefixed.
 */
const embeddedSection = v.looseObject({});

export const bridgeSchema = pluginConfig({
  bridge: v.optional(interfaceName),
  isGateway: v.optional(v.boolean()),
  isDefaultGateway: v.optional(v.boolean()),
  forceAddress: v.optional(v.boolean()),
  ipMasq: v.optional(v.boolean()),
  mtu: v.optional(mtu),
  hairpinMode: v.optional(v.boolean()),
  promiscMode: v.optional(v.boolean()),
  vlan: v.optional(intRange(0, 4094, 'must be 0-4094')),
  vlanTrunk: v.optional(v.array(v.unknown())),
  preserveDefaultVlan: v.optional(v.boolean()),
  macspoofchk: v.optional(v.boolean()),
  enabledad: v.optional(v.boolean()),
  isolate: v.optional(v.union([v.boolean(), v.literal('strict')])),
  internal: v.optional(v.boolean()),
  portmap: v.optional(embeddedSection),
  discovery: v.optional(embeddedSection),
  ipam: ipamSection,
});

/** The bridge plugin's options with defaults applied. */
export interface BridgeConf {
  network: string;
  bridge: string;
  isGateway: boolean;
  isDefaultGateway: boolean;
  forceAddress: boolean;
  ipMasq: boolean;
  mtu: number | undefined;
  hairpinMode: boolean;
  promiscMode: boolean;
  macspoofchk: boolean;
  enabledad: boolean;
  /** false, true (other Shoal bridges) or 'strict' (every other bridge of the host). */
  isolate: boolean | 'strict';
  internal: boolean;
  /** shoal-portmap's options when port publishing runs in-process (embedded.ts); else undefined. */
  portmap: Record<string, unknown> | undefined;
  /** shoal-dns's options when DNS registration runs in-process (embedded.ts); else undefined. */
  discovery: Record<string, unknown> | undefined;
  /** A VLAN asked for (`vlan` other than 0, or a `vlanTrunk`): ADD asks the kernel (vlan.ts). */
  vlan: { field: 'vlan' | 'vlanTrunk'; value: unknown } | undefined;
}

export const DEFAULT_BRIDGE = 'cni0';

/**
 * Parses and checks the bridge config. Defaults follow the reference plugin (bridge "cni0",
 * everything else off); `isolate` is off here too so a conflist written for the reference
 * behaves the same, and the Shoal CLI writes `"isolate": true` into the networks it creates.
 */
export function parseBridgeConf(config: unknown): BridgeConf {
  const c = parseConfig(bridgeSchema, config);
  if (c.hairpinMode && c.promiscMode) {
    throw invalidConfig('promiscMode', true, 'cannot be set together with "hairpinMode" (as in the reference bridge plugin)');
  }
  const isDefaultGateway = c.isDefaultGateway ?? false;
  return {
    network: c.name,
    bridge: c.bridge ?? DEFAULT_BRIDGE,
    // As the reference: a default gateway is a gateway.
    isGateway: (c.isGateway ?? false) || isDefaultGateway,
    isDefaultGateway,
    forceAddress: c.forceAddress ?? false,
    ipMasq: c.ipMasq ?? false,
    mtu: c.mtu,
    hairpinMode: c.hairpinMode ?? false,
    promiscMode: c.promiscMode ?? false,
    macspoofchk: c.macspoofchk ?? false,
    enabledad: c.enabledad ?? false,
    isolate: c.isolate ?? false,
    internal: c.internal ?? false,
    portmap: c.portmap,
    discovery: c.discovery,
    vlan: c.vlan !== undefined && c.vlan !== 0 ? { field: 'vlan', value: c.vlan } : c.vlanTrunk?.length ? { field: 'vlanTrunk', value: c.vlanTrunk } : undefined,
  };
}

/**
 * DEL, STATUS and GC: the same fields, without refusing options ADD refuses (a `vlan`, a
 * section that is not an object), so a runtime's cleanup after a refused ADD does not fail too.
 */
export function parseBridgeConfForDel(config: unknown): BridgeConf {
  const c = config as Record<string, unknown>;
  const { vlan: _vlan, vlanTrunk: _trunk, promiscMode: _promisc, portmap, discovery, ...rest } = c;
  return { ...parseBridgeConf(rest), portmap: objectOrUndefined(portmap), discovery: objectOrUndefined(discovery) };
}

function objectOrUndefined(v: unknown): Record<string, unknown> | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

export const MACVLAN_MODES = ['bridge', 'private', 'vepa', 'passthru'] as const;
export type MacvlanModeName = (typeof MACVLAN_MODES)[number];

export const macvlanSchema = pluginConfig({
  master: v.optional(interfaceName),
  mode: v.optional(v.picklist(MACVLAN_MODES)),
  mtu: v.optional(mtu),
  mac: v.optional(macAddress),
  linkInContainer: v.optional(v.boolean()),
  ipam: v.optional(ipamSection),
});

export interface MacvlanConf {
  network: string;
  /** Undefined: the interface of the default route (resolved when the link is made). */
  master: string | undefined;
  mode: MacvlanModeName;
  mtu: number | undefined;
  mac: string | undefined;
  linkInContainer: boolean;
  hasIpam: boolean;
}

export function parseMacvlanConf(config: unknown): MacvlanConf {
  const c = parseConfig(macvlanSchema, config);
  return {
    network: c.name,
    master: c.master,
    mode: c.mode ?? 'bridge',
    mtu: c.mtu,
    mac: c.mac,
    linkInContainer: c.linkInContainer ?? false,
    hasIpam: c.ipam !== undefined,
  };
}

export const IPVLAN_MODES = ['l2', 'l3', 'l3s'] as const;
export type IpvlanModeName = (typeof IPVLAN_MODES)[number];

export const ipvlanSchema = pluginConfig({
  master: v.optional(interfaceName),
  mode: v.optional(v.picklist(IPVLAN_MODES)),
  mtu: v.optional(mtu),
  linkInContainer: v.optional(v.boolean()),
  ipam: v.optional(ipamSection),
});

export interface IpvlanConf {
  network: string;
  master: string | undefined;
  mode: IpvlanModeName;
  mtu: number | undefined;
  linkInContainer: boolean;
  hasIpam: boolean;
}

export function parseIpvlanConf(config: unknown): IpvlanConf {
  const c = parseConfig(ipvlanSchema, config);
  return { network: c.name, master: c.master, mode: c.mode ?? 'l2', mtu: c.mtu, linkInContainer: c.linkInContainer ?? false, hasIpam: c.ipam !== undefined };
}

const MAC_RE = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

/**
 * The MAC the runtime asks for, in the reference's order of precedence: CNI_ARGS `MAC=`, then
 * `args.cni.mac`, then `runtimeConfig.mac` (capability "mac") — the last one found wins, as
 * in the reference bridge. Undefined: let the kernel pick.
 */
export function requestedMac(req: Pick<CniRequest, 'args' | 'config'>): string | undefined {
  let mac: string | undefined;
  let field = '';
  const fromArgs = req.args['MAC'];
  if (fromArgs) [mac, field] = [fromArgs, 'CNI_ARGS MAC'];
  const cni = (req.config.args as { cni?: { mac?: unknown } } | undefined)?.cni;
  if (cni && typeof cni.mac === 'string' && cni.mac !== '') [mac, field] = [cni.mac, 'args.cni.mac'];
  const rc = req.config.runtimeConfig?.['mac'];
  if (typeof rc === 'string' && rc !== '') [mac, field] = [rc, 'runtimeConfig.mac'];
  if (mac === undefined) return undefined;
  if (!MAC_RE.test(mac)) throw invalidConfig(field, mac, 'is not a MAC address (like "02:42:ac:11:00:02")');
  // A multicast (group bit set) address cannot be a unicast interface's address.
  if ((parseInt(mac.slice(0, 2), 16) & 1) === 1) throw invalidConfig(field, mac, 'is a multicast MAC address');
  return mac.toLowerCase();
}
