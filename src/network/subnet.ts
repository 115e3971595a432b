/**
 * Subnet arithmetic for `shoal network create`: validating --subnet/--gateway/--ip-range,
 * overlap checks, and picking a free private subnet. Pure (the caller reads host routes through
 * the kernel layer and passes them in), so every rule is unit-tested.
 */
import { IpAddr, IpPrefix } from '../addr.js';
import type { SubnetSpec } from './model.js';

export class SubnetInputError extends Error {}

function mustCidr(text: string, flag: string): IpPrefix {
  const c = IpPrefix.tryParse(text);
  if (!c) throw new SubnetInputError(`invalid ${flag} "${text}": not a CIDR like 10.89.0.0/24 (${IpPrefix.problem(text)})`);
  return c;
}

/**
 * Validates the user's --subnet/--gateway/--ip-range triples and returns canonical specs.
 * --gateway and --ip-range pair up with the --subnet they fall in (docker's rule).
 */
export function buildSubnetSpecs(subnets: string[], gateways: string[], ipRanges: string[]): SubnetSpec[] {
  const cidrs = subnets.map((s) => mustCidr(s, '--subnet'));
  for (const c of cidrs) {
    const max = c.family === 4 ? 30 : 126;
    if (c.length > max) throw new SubnetInputError(`invalid --subnet "${c.masked().toString()}": too small, at most /${max}`);
    if (c.family === 4 && c.length < 8) throw new SubnetInputError(`invalid --subnet "${c.masked().toString()}": too large, at least /8`);
  }
  for (let i = 0; i < cidrs.length; i++) {
    for (let j = i + 1; j < cidrs.length; j++) {
      if (cidrs[i]!.overlaps(cidrs[j]!)) throw new SubnetInputError(`invalid --subnet "${subnets[j]}": overlaps --subnet "${subnets[i]}"`);
    }
  }
  const specs: SubnetSpec[] = cidrs.map((c) => ({ subnet: c.masked().toString() }));
  for (const gw of gateways) {
    const a = IpAddr.tryParse(gw);
    if (!a) throw new SubnetInputError(`invalid --gateway "${gw}": not an IP address (${IpAddr.problem(gw)})`);
    // A host address: inside, and neither the network nor the last address.
    const i = cidrs.findIndex((c) => c.contains(a) && !a.equals(c.network()) && !a.equals(c.last()));
    if (i < 0) throw new SubnetInputError(`invalid --gateway "${gw}": not a host address of any --subnet`);
    if (specs[i]!.gateway) throw new SubnetInputError(`invalid --gateway "${gw}": --subnet "${specs[i]!.subnet}" already has a gateway`);
    specs[i]!.gateway = a.toString();
  }
  for (const r of ipRanges) {
    const c = mustCidr(r, '--ip-range');
    const i = cidrs.findIndex((s) => s.containsPrefix(c));
    if (i < 0) throw new SubnetInputError(`invalid --ip-range "${r}": not inside any --subnet`);
    specs[i]!.ipRange = c.masked().toString();
  }
  return specs;
}

/** The gateway a subnet gets when none is given: its first host address. */
export function defaultGateway(subnet: string): string {
  return IpPrefix.parse(subnet).nth(1).toString();
}

/** host-local's rangeStart/rangeEnd for an --ip-range (network and broadcast excluded). */
export function rangeBounds(ipRange: string): { rangeStart: string; rangeEnd: string } {
  const c = IpPrefix.parse(ipRange);
  const first = c.length < c.bits - 1 ? c.nth(1) : c.network();
  const last = c.family === 4 && c.length < 31 ? c.last().prev() : c.last();
  return { rangeStart: first.toString(), rangeEnd: last.toString() };
}

/**
 * The first entry of `taken` a subnet overlaps, for the "overlaps" error. Host routes with a
 * zero-length prefix (default routes) overlap everything and are not taken into account.
 */
export function firstOverlap(subnet: string, taken: ReadonlyArray<{ cidr: string; what: string }>): string | undefined {
  const c = IpPrefix.parse(subnet);
  for (const t of taken) {
    const o = IpPrefix.tryParse(t.cidr);
    if (!o || o.length === 0) continue;
    if (c.overlaps(o)) return t.what;
  }
  return undefined;
}

/**
 * Candidate pools, podman-style: 10.89.0.0/24, 10.89.1.0/24 ... 10.89.255.0/24, then the
 * 10.90-10.99 /16s in /24 steps, then 172.20-31 and 192.168 /24s.
 */
function* candidates4(): Generator<string> {
  for (let second = 89; second <= 99; second++) for (let third = 0; third < 256; third++) yield `10.${second}.${third}.0/24`;
  for (let second = 20; second <= 31; second++) for (let third = 0; third < 256; third++) yield `172.${second}.${third}.0/24`;
  for (let third = 0; third < 256; third++) yield `192.168.${third}.0/24`;
}

/** IPv6: fd89:5348:4f41:<n>::/64 (ULA; "SHOA" in the global id). */
function* candidates6(): Generator<string> {
  for (let n = 0; n < 0x10000; n++) yield `fd89:5348:4f41:${n.toString(16)}::/64`;
}

/** The first candidate subnet of the family that overlaps nothing in `taken`. */
export function pickFreeSubnet(family: 4 | 6, taken: ReadonlyArray<{ cidr: string; what: string }>): string {
  for (const cand of family === 4 ? candidates4() : candidates6()) {
    if (firstOverlap(cand, taken) === undefined) return cand;
  }
  throw new SubnetInputError(`no free private IPv${family} subnet left; pass --subnet`);
}
