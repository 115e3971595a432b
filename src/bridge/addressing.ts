/**
 * From an IPAM result to what the L2 plugins configure (pure, unit-tested): the gateway of each
 * address (the reference's calcGateways: the subnet's first address when the IPAM gave none and
 * the bridge is the gateway), the default routes `isDefaultGateway` adds, what `internal`
 * removes, and the addresses the bridge itself gets.
 *
 * The IPAM result's text is parsed once, here (DESIGN §4.11); the plan carries address values to
 * the kernel, the rules and the MAC derivation, and is printed back into CNI result entries by
 * resultIps / resultRoutes through the one formatter.
 */
import { IpAddr, IpPrefix, type Family } from '../addr.js';
import type { CniIpConfig, CniResult, CniRoute } from '../../cni/types.js';

export interface AddressingOptions {
  isGateway: boolean;
  isDefaultGateway: boolean;
  internal: boolean;
}

/** One address of the container: the address with its subnet's length, and its gateway. */
export interface PlannedIp {
  address: IpPrefix;
  gateway?: IpAddr | undefined;
}

/** A route; without `gw` it goes through its family's gateway (routeGateway). */
export interface PlannedRoute {
  dst: IpPrefix;
  gw?: IpAddr | undefined;
  /** The result entry it was read from: its other fields (mtu, table, ...) are passed on. */
  source?: CniRoute;
}

export interface Addressing {
  ips: PlannedIp[];
  routes: PlannedRoute[];
}

export interface AddressPlan extends Addressing {
  /** The gateway with its subnet's length, for each gateway the bridge holds (isGateway). */
  bridgeAddresses: IpPrefix[];
}

const anyAddress = (family: Family): IpPrefix => IpPrefix.of(IpAddr.of(family, 0n), 0);

/**
 * The addresses and routes of a CNI result (the IPAM's, or a prevResult for CHECK) as values.
 * `ips` can be narrowed to one interface's; a route "default" (not CIDR, but seen in the wild)
 * is the zero-length prefix of its gateway's family.
 */
export function parseAddressing(result: Pick<CniResult, 'ips' | 'routes'>): Addressing {
  return {
    ips: (result.ips ?? []).map((ip) => ({ address: IpPrefix.parse(ip.address), gateway: ip.gateway ? IpAddr.parse(ip.gateway) : undefined })),
    routes: (result.routes ?? []).map((r) => {
      const gw = r.gw ? IpAddr.parse(r.gw) : undefined;
      return { dst: r.dst === 'default' ? anyAddress(gw?.family ?? 4) : IpPrefix.parse(r.dst), gw, source: r };
    }),
  };
}

/** The first usable address of the subnet (network + 1), as the reference's calcGatewayIP. */
export function firstAddress(prefix: IpPrefix): IpAddr {
  return prefix.network().next();
}

export function planAddresses(ipam: Pick<CniResult, 'ips' | 'routes'>, o: AddressingOptions): AddressPlan {
  const parsed = parseAddressing(ipam);
  const ips = parsed.ips.map((ip) => ({ address: ip.address, gateway: ip.gateway ?? (o.isGateway ? firstAddress(ip.address) : undefined) }));
  // `internal`: no route off the host, whatever the IPAM or isDefaultGateway says.
  let routes = parsed.routes.filter((r) => !(o.internal && r.dst.length === 0));
  if (o.isDefaultGateway && !o.internal) {
    for (const family of [4, 6] as const) {
      const gateway = ips.find((ip) => ip.address.family === family && ip.gateway)?.gateway;
      if (!gateway) continue;
      if (routes.some((r) => r.dst.length === 0 && r.dst.family === family)) continue;
      routes.push({ dst: anyAddress(family), gw: gateway });
    }
  }
  routes = dedupeRoutes(routes);
  const bridgeAddresses: IpPrefix[] = [];
  if (o.isGateway) {
    for (const ip of ips) {
      if (!ip.gateway) continue;
      const own = IpPrefix.of(ip.gateway, ip.address.length);
      if (!bridgeAddresses.some((b) => b.equals(own))) bridgeAddresses.push(own);
    }
  }
  return { ips, routes, bridgeAddresses };
}

function dedupeRoutes(routes: PlannedRoute[]): PlannedRoute[] {
  return routes.filter((r, i) => routes.findIndex((o) => o.dst.equals(r.dst) && (o.gw === r.gw || (o.gw !== undefined && r.gw !== undefined && o.gw.equals(r.gw)))) === i);
}

/** The gateway a route without `gw` uses inside the container: its family's gateway. */
export function routeGateway(route: PlannedRoute, ips: readonly PlannedIp[]): IpAddr | undefined {
  return route.gw ?? ips.find((ip) => ip.address.family === route.dst.family && ip.gateway)?.gateway;
}

/** The plan's addresses as CNI result entries on interface `interfaceIndex`. */
export function resultIps(ips: readonly PlannedIp[], interfaceIndex: number): CniIpConfig[] {
  return ips.map((ip) => {
    const out: CniIpConfig = { address: ip.address.toString(), interface: interfaceIndex };
    if (ip.gateway) out.gateway = ip.gateway.toString();
    return out;
  });
}

export function resultRoutes(routes: readonly PlannedRoute[]): CniRoute[] {
  return routes.map((r) => {
    const { dst: _dst, gw: _gw, ...rest } = r.source ?? { dst: '' };
    return r.gw ? { dst: r.dst.toString(), gw: r.gw.toString(), ...rest } : { dst: r.dst.toString(), ...rest };
  });
}
