/**
 * From an IPAM result to what the L2 plugins configure (pure, unit-tested): the gateway of each
 * address (the reference's calcGateways: the subnet's first address when the IPAM gave none and
 * the bridge is the gateway), the default routes `isDefaultGateway` adds, what `internal`
 * removes, and the addresses the bridge itself gets.
 */
import type { CniIpConfig, CniResult, CniRoute } from '../../cni/types.js';
import { networkOf } from './firewall.js';

export interface AddressingOptions {
  isGateway: boolean;
  isDefaultGateway: boolean;
  internal: boolean;
  /** Index of the container interface in the result's `interfaces`. */
  interfaceIndex: number;
}

export interface AddressPlan {
  ips: CniIpConfig[];
  routes: CniRoute[];
  /** "gateway/prefix" for each gateway the bridge holds (isGateway). */
  bridgeAddresses: string[];
}

export const isIpv6 = (addr: string): boolean => addr.includes(':');
const defaultDst = (v6: boolean): string => (v6 ? '::/0' : '0.0.0.0/0');
const isDefaultRoute = (dst: string): boolean => dst === '0.0.0.0/0' || dst === '::/0' || dst === 'default';

/** The first usable address of the subnet (network + 1), as the reference's calcGatewayIP. */
export function firstAddress(cidr: string): string {
  const net = networkOf(cidr).split('/')[0] ?? '';
  if (!isIpv6(cidr)) {
    const parts = net.split('.').map(Number);
    parts[3] = (parts[3] ?? 0) + 1;
    return parts.join('.');
  }
  const groups = net.split(':');
  const last = parseInt(groups[7] ?? '0', 16) + 1;
  groups[7] = last.toString(16);
  return compactIpv6(groups);
}

/** Eight hex groups -> the canonical compressed text (longest zero run becomes "::"). */
function compactIpv6(groups: string[]): string {
  const g = groups.map((x) => parseInt(x, 16).toString(16));
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) [best, bestLen] = [i, j - i];
    i = j;
  }
  if (best < 0) return g.join(':');
  return `${g.slice(0, best).join(':')}::${g.slice(best + bestLen).join(':')}`;
}

export function planAddresses(ipam: CniResult, o: AddressingOptions): AddressPlan {
  const ips: CniIpConfig[] = (ipam.ips ?? []).map((ip) => {
    const out: CniIpConfig = { address: ip.address, interface: o.interfaceIndex };
    const gateway = ip.gateway ?? (o.isGateway ? firstAddress(ip.address) : undefined);
    if (gateway) out.gateway = gateway;
    return out;
  });
  // `internal`: no route off the host, whatever the IPAM or isDefaultGateway says.
  let routes: CniRoute[] = (ipam.routes ?? []).map((r) => ({ ...r })).filter((r) => !(o.internal && isDefaultRoute(r.dst)));
  if (o.isDefaultGateway && !o.internal) {
    for (const v6 of [false, true]) {
      const withGw = ips.find((ip) => isIpv6(ip.address) === v6 && ip.gateway);
      if (!withGw?.gateway) continue;
      if (routes.some((r) => isDefaultRoute(r.dst) && isIpv6(r.dst === 'default' ? (r.gw ?? '') : r.dst) === v6)) continue;
      routes.push({ dst: defaultDst(v6), gw: withGw.gateway });
    }
  }
  routes = dedupeRoutes(routes);
  const bridgeAddresses: string[] = [];
  if (o.isGateway) {
    for (const ip of ips) {
      if (!ip.gateway) continue;
      const cidr = `${ip.gateway}/${ip.address.split('/')[1]}`;
      if (!bridgeAddresses.includes(cidr)) bridgeAddresses.push(cidr);
    }
  }
  return { ips, routes, bridgeAddresses };
}

function dedupeRoutes(routes: CniRoute[]): CniRoute[] {
  const seen = new Set<string>();
  return routes.filter((r) => {
    const key = `${r.dst}|${r.gw ?? ''}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** The gateway a route without `gw` uses inside the container: its family's gateway. */
export function routeGateway(route: CniRoute, ips: CniIpConfig[]): string | undefined {
  if (route.gw) return route.gw;
  const v6 = isIpv6(route.dst);
  return ips.find((ip) => isIpv6(ip.address) === v6 && ip.gateway)?.gateway;
}
