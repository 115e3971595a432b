/**
 * Renders the CNI conflist of a network record. Podman's CNI backend reads the file as is, and
 * `shoal network connect` / `shoal run` execute the same chain, so both get identical behaviour.
 *
 * Start-ups per attachment (issue 7, "Speed"): every entry of `plugins` is one Node start-up
 * per ADD and per DEL. A bridge network is therefore ONE plugin: shoal-bridge with shoal-ipam,
 * port publishing (`portmap` section) and DNS registration (`discovery` section) all run
 * in-process (src/bridge/embedded.ts). It declares the capabilities `portMappings` and
 * `aliases`, since libcni passes runtimeConfig only to plugins that declare them.
 * macvlan/ipvlan networks keep the chain main plugin -> shoal-portmap -> shoal-dns.
 *
 * Every plugin gets `stateDir` so the file is self-contained: a runtime that does not pass
 * SHOAL_STATE_DIR (podman does not) still reaches the store the CLI used.
 */
import type { NetworkRecord } from './model.js';
import { defaultGateway, rangeBounds } from './subnet.js';
import { IpPrefix } from '../addr.js';

export class OptionError extends Error {}

const BRIDGE_OPTS = ['mtu', 'bridge', 'com.docker.network.bridge.name', 'com.docker.network.driver.mtu', 'isolate', 'ipMasq', 'hairpinMode', 'macspoofchk'];
const SUBLINK_OPTS = ['mtu', 'parent', 'master', 'mode', 'com.docker.network.driver.mtu'];
const MACVLAN_MODES = ['bridge', 'private', 'vepa', 'passthru'];
const IPVLAN_MODES = ['l2', 'l3', 'l3s'];

function bool(key: string, v: string): boolean {
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  throw new OptionError(`invalid --opt ${key}="${v}": must be true or false`);
}

function mtu(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 68 || n > 65535) throw new OptionError(`invalid --opt mtu="${v}": must be a number 68-65535`);
  return n;
}

/** Checks --opt keys and values for the driver; throws OptionError naming the first bad one. */
export function validateOptions(driver: NetworkRecord['driver'], opts: Record<string, string>): void {
  const allowed = driver === 'bridge' ? BRIDGE_OPTS : SUBLINK_OPTS;
  for (const [k, v] of Object.entries(opts)) {
    if (!allowed.includes(k)) throw new OptionError(`unknown --opt "${k}" for driver ${driver}; known: ${allowed.join(', ')}`);
    if (k.endsWith('mtu')) mtu(v);
    if (['ipMasq', 'hairpinMode', 'macspoofchk'].includes(k)) bool(k, v);
    if (k === 'isolate' && v !== 'strict') bool(k, v);
    if ((k === 'bridge' || k === 'com.docker.network.bridge.name' || k === 'parent' || k === 'master') && !/^[a-zA-Z0-9_.-]{1,15}$/.test(v)) {
      throw new OptionError(`invalid --opt ${k}="${v}": not an interface name`);
    }
    if (k === 'mode') {
      const modes = driver === 'macvlan' ? MACVLAN_MODES : IPVLAN_MODES;
      if (!modes.includes(v)) throw new OptionError(`invalid --opt mode="${v}" for ${driver}: one of ${modes.join(', ')}`);
    }
  }
}

function ipamSection(net: NetworkRecord, withGatewayRoutes: boolean): Record<string, unknown> {
  const ranges = net.subnets.map((s) => {
    const range: Record<string, unknown> = { subnet: s.subnet };
    if (net.driver === 'bridge' || net.driver === 'overlay') range['gateway'] = s.gateway ?? defaultGateway(s.subnet);
    else if (s.gateway) range['gateway'] = s.gateway;
    if (s.ipRange) Object.assign(range, rangeBounds(s.ipRange));
    return [range];
  });
  const routes: Array<{ dst: string }> = [];
  if (withGatewayRoutes && !net.internal) {
    const families = new Set(net.subnets.map((s) => IpPrefix.parse(s.subnet).family));
    if (families.has(4)) routes.push({ dst: '0.0.0.0/0' });
    if (families.has(6)) routes.push({ dst: '::/0' });
  }
  const ipam: Record<string, unknown> = { type: 'shoal-ipam', ranges };
  if (routes.length) ipam['routes'] = routes;
  ipam['stateDir'] = net.stateDir;
  if (net.overlay) ipam['blocks'] = { daemonSocket: net.overlay.daemonSocket };
  return ipam;
}

/** shoal-vxlan: the node's bridge is every container's gateway; the rest is shoal-bridge's. */
function overlayPlugin(net: NetworkRecord, overlay: NonNullable<NetworkRecord['overlay']>): Record<string, unknown> {
  const p: Record<string, unknown> = { type: 'shoal-vxlan', vni: overlay.vni, underlayAddress: overlay.underlayAddress };
  if (net.bridge) p['bridge'] = net.bridge;
  if (overlay.mtu !== undefined) p['mtu'] = overlay.mtu;
  if (net.internal) p['internal'] = true;
  p['isolate'] = true;
  p['stateDir'] = net.stateDir;
  p['ipam'] = ipamSection(net, true);
  return p;
}

function mainPlugin(net: NetworkRecord): Record<string, unknown> {
  if (net.overlay) return overlayPlugin(net, net.overlay);
  const o = net.options;
  const m = o['mtu'] ?? o['com.docker.network.driver.mtu'];
  if (net.driver === 'bridge') {
    const p: Record<string, unknown> = {
      type: 'shoal-bridge',
      bridge: net.bridge,
      isGateway: true,
      ipMasq: o['ipMasq'] !== undefined ? bool('ipMasq', o['ipMasq']) : !net.internal,
      hairpinMode: o['hairpinMode'] !== undefined ? bool('hairpinMode', o['hairpinMode']) : true,
      // Networks Shoal creates are kept apart from each other, as Docker keeps user networks.
      isolate: o['isolate'] === 'strict' ? 'strict' : o['isolate'] !== undefined ? bool('isolate', o['isolate']) : true,
    };
    if (net.internal) p['internal'] = true;
    if (m) p['mtu'] = mtu(m);
    if (o['macspoofchk'] !== undefined) p['macspoofchk'] = bool('macspoofchk', o['macspoofchk']);
    p['stateDir'] = net.stateDir;
    p['ipam'] = ipamSection(net, true);
    return p;
  }
  const p: Record<string, unknown> = { type: `shoal-${net.driver}` };
  const master = o['parent'] ?? o['master'];
  if (master) p['master'] = master;
  if (o['mode']) p['mode'] = o['mode'];
  if (m) p['mtu'] = mtu(m);
  p['stateDir'] = net.stateDir;
  p['ipam'] = ipamSection(net, net.subnets.some((s) => s.gateway !== undefined));
  return p;
}

/** shoal-dns's options: the standalone plugin's fields, or shoal-bridge's `discovery` section. */
function dnsOptions(net: NetworkRecord): Record<string, unknown> {
  const p: Record<string, unknown> = {};
  if (net.dnsSearch[0]) p['domainName'] = net.dnsSearch[0];
  if (net.hosts.length) {
    const hosts: Record<string, string[]> = {};
    for (const h of net.hosts) (hosts[h.name] ??= []).push(h.ip);
    p['hosts'] = hosts;
  }
  if (net.dns.length) p['upstreams'] = net.dns;
  return p;
}

/** shoal-portmap's options (`snat` is its default; written out so the file says it). */
const portmapOptions = (): Record<string, unknown> => ({ snat: true });

export interface Conflist {
  cniVersion: string;
  name: string;
  plugins: Array<Record<string, unknown>>;
  [k: string]: unknown;
}

export function renderConflist(net: NetworkRecord): Conflist {
  const main = mainPlugin(net);
  if (net.driver === 'bridge' || net.driver === 'overlay') {
    // One plugin, one start-up: portmap and dns run inside shoal-bridge.
    const bridge = { type: main['type'], capabilities: { portMappings: true, aliases: true }, ...main, portmap: portmapOptions(), discovery: dnsOptions(net) };
    return { cniVersion: net.cniVersion, name: net.name, plugins: [bridge] };
  }
  const plugins = [main, { type: 'shoal-portmap', capabilities: { portMappings: true }, ...portmapOptions(), stateDir: net.stateDir }];
  // shoal-dns hands out the gateway as nameserver; a network without a gateway (macvlan with
  // no --gateway) has nowhere for the daemon to listen, so it gets no DNS plugin.
  if (net.subnets.some((s) => s.gateway)) plugins.push({ type: 'shoal-dns', capabilities: { aliases: true }, ...dnsOptions(net), stateDir: net.stateDir });
  return { cniVersion: net.cniVersion, name: net.name, plugins };
}

/** The file name a network's conflist gets in the CNI config dir. */
export function conflistFileName(name: string): string {
  return `${name}.conflist`;
}
