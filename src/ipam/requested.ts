import { IpAddr, IpPrefix } from '../addr.js';
import { InvalidIpamConfigError } from './errors.js';

/** An address the runtime asked for, and where it came from (for error messages). */
export interface RequestedAddress {
  address: IpAddr;
  text: string;
  field: string;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** "10.0.0.5" or "10.0.0.5/24": the conventions allow a prefix length, which IPAM ignores. */
function parseRequested(text: unknown, field: string): RequestedAddress {
  if (typeof text !== 'string') throw new InvalidIpamConfigError(field, text, 'is not an IP address');
  const trimmed = text.trim();
  const prefix = IpPrefix.tryParse(trimmed, { bareAddress: true });
  if (!prefix) throw new InvalidIpamConfigError(field, text, `is not an IP address: ${IpPrefix.problem(trimmed, { bareAddress: true })}`);
  return { address: prefix.addr, text: prefix.addr.toString(), field };
}

function fromList(raw: unknown, field: string): RequestedAddress[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw new InvalidIpamConfigError(field, raw, 'must be a list of IP addresses');
  return raw.map((entry, i) => parseRequested(entry, `${field}[${i}]`));
}

/** `CNI_ARGS` as the raw string ("IgnoreUnknown=1;IP=10.0.0.5") or already split into pairs. */
function ipFromCniArgs(cniArgs: string | Record<string, string> | undefined): string | undefined {
  if (cniArgs === undefined) return undefined;
  if (typeof cniArgs !== 'string') return cniArgs['IP'];
  for (const pair of cniArgs.split(';')) {
    const eq = pair.indexOf('=');
    if (eq > 0 && pair.slice(0, eq) === 'IP') return pair.slice(eq + 1);
  }
  return undefined;
}

/**
 * Specific addresses asked for, from (in this order) `runtimeConfig.ips` (capability `ips`),
 * `args.cni.ips`, and `CNI_ARGS` `IP=a,b`. All sources count, as in host-local; the order decides
 * which address a range set takes when several requested addresses fall into it (the first
 * one; any other left over is an error). Duplicates are dropped.
 */
export function requestedAddresses(
  runtimeConfig: unknown,
  args: unknown,
  cniArgs: string | Record<string, string> | undefined,
): RequestedAddress[] {
  const all = [
    ...fromList(isObject(runtimeConfig) ? runtimeConfig['ips'] : undefined, 'runtimeConfig.ips'),
    ...fromList(isObject(args) && isObject(args['cni']) ? args['cni']['ips'] : undefined, 'args.cni.ips'),
  ];
  const envIps = ipFromCniArgs(cniArgs);
  if (envIps) all.push(...envIps.split(',').filter((s) => s.trim() !== '').map((text) => parseRequested(text, 'CNI_ARGS IP')));
  const seen = new Set<string>();
  return all.filter((requested) => {
    const id = `${requested.address.family}:${requested.address.value}`;
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
}
