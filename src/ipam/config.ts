import { IpAddr, IpPrefix } from '../addr.js';
import { InvalidIpamConfigError } from './errors.js';
import type { Hole } from './pool.js';
import { type RangeSet, parseRangeSets } from './range.js';

export interface IpamRoute {
  dst: string;
  gw?: string;
}

/** The `ipam` object of a network config, validated and with host-local's defaults applied. */
export interface IpamConfig {
  rangeSets: RangeSet[];
  /** Gateways and `exclude` entries: never handed out. */
  holes: Hole[];
  routes: IpamRoute[];
  resolvConf?: string;
  /** `stateDir`, or host-local's `dataDir`; undefined means "the default state dir". */
  stateDir?: string;
  /**
   * Cluster networks (`ipam.blocks`): addresses come only from this node's blocks of the
   * subnets, which the daemon leases and mirrors into the local store; a new block is asked of
   * the daemon at `daemonSocket` (DESIGN §7).
   */
  blocks?: { daemonSocket: string };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Just the state dir: DEL, and GC of a network whose ranges no longer validate, must still find
 * the store, so this never looks at anything else.
 */
export function stateDirOf(ipam: unknown): string | undefined {
  if (!isObject(ipam)) return undefined;
  for (const key of ['stateDir', 'dataDir']) {
    const value = ipam[key];
    if (typeof value === 'string' && value !== '') return value;
  }
  return undefined;
}

function optionalString(ipam: Record<string, unknown>, key: string): string | undefined {
  const value = ipam[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || value === '') throw new InvalidIpamConfigError(`ipam.${key}`, value, 'must be a non-empty string');
  return value;
}

function parseRoutes(raw: unknown): IpamRoute[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw new InvalidIpamConfigError('ipam.routes', raw, 'must be a list of {"dst": CIDR, "gw": IP}');
  return raw.map((route, i) => {
    const field = `ipam.routes[${i}]`;
    if (!isObject(route)) throw new InvalidIpamConfigError(field, route, 'must be an object {"dst": CIDR, "gw": IP}');
    const dst = route['dst'];
    const cidr = typeof dst === 'string' ? IpPrefix.tryParse(dst) : undefined;
    if (!cidr) throw new InvalidIpamConfigError(`${field}.dst`, dst, `is not a CIDR (e.g. "0.0.0.0/0")${typeof dst === 'string' ? `: ${IpPrefix.problem(dst)}` : ''}`);
    const gw = route['gw'];
    if (gw === undefined || gw === null || gw === '') return { dst: cidr.toString() };
    const gateway = typeof gw === 'string' ? IpAddr.tryParse(gw) : undefined;
    if (!gateway) throw new InvalidIpamConfigError(`${field}.gw`, gw, `is not an IP address${typeof gw === 'string' ? `: ${IpAddr.problem(gw)}` : ''}`);
    if (gateway.family !== cidr.family) throw new InvalidIpamConfigError(`${field}.gw`, gw, `is IPv${gateway.family} but dst ${String(dst)} is IPv${cidr.family}`);
    return { dst: cidr.toString(), gw: gateway.toString() };
  });
}

function parseExclude(raw: unknown): Hole[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw new InvalidIpamConfigError('ipam.exclude', raw, 'must be a list of IP addresses or CIDRs');
  return raw.map((entry, i): Hole => {
    const field = `ipam.exclude[${i}]`;
    if (typeof entry !== 'string') throw new InvalidIpamConfigError(field, entry, 'must be an IP address or a CIDR');
    const cidr = IpPrefix.tryParse(entry, { bareAddress: true });
    if (!cidr) throw new InvalidIpamConfigError(field, entry, `is neither an IP address nor a CIDR: ${IpPrefix.problem(entry, { bareAddress: true })}`);
    // A CIDR with host bits set still names one block unambiguously: exclude that block.
    return { family: cidr.family, lo: cidr.network().value, hi: cidr.last().value };
  });
}

/** host-local's legacy form: one range at the top level of `ipam`, as its own (first) range set. */
function legacyRange(ipam: Record<string, unknown>): unknown[] | undefined {
  if (ipam['subnet'] === undefined) return undefined;
  const range: Record<string, unknown> = {};
  for (const key of ['subnet', 'rangeStart', 'rangeEnd', 'gateway']) if (ipam[key] !== undefined) range[key] = ipam[key];
  return [range];
}

/**
 * Validates the `ipam` object of a network config. `runtimeConfig.ipRanges` (the `ipRanges`
 * capability) replaces the configured ranges, as host-local does. Every error names the field
 * path and the bad value.
 */
export function parseIpamConfig(ipam: unknown, runtimeConfig?: unknown): IpamConfig {
  if (!isObject(ipam)) throw new InvalidIpamConfigError('ipam', ipam, 'must be an object');
  const override = isObject(runtimeConfig) ? runtimeConfig['ipRanges'] : undefined;
  let rangeSets: RangeSet[];
  if (Array.isArray(override) && override.length > 0) {
    rangeSets = parseRangeSets(override, 'runtimeConfig.ipRanges');
  } else {
    const legacy = legacyRange(ipam);
    const ranges = ipam['ranges'];
    if (legacy === undefined && ranges === undefined)
      throw new InvalidIpamConfigError('ipam.ranges', undefined, 'is required (or the legacy "subnet"), e.g. [[{"subnet": "10.88.0.0/16"}]]');
    if (legacy === undefined) rangeSets = parseRangeSets(ranges, 'ipam.ranges');
    else {
      // The legacy range becomes set 0 but is reported by its real name, `ipam.subnet` etc.
      const shifted = (i: number, j?: number): string =>
        i === 0 ? 'ipam' : j === undefined ? `ipam.ranges[${i - 1}]` : `ipam.ranges[${i - 1}][${j}]`;
      if (ranges !== undefined && !Array.isArray(ranges))
        throw new InvalidIpamConfigError('ipam.ranges', ranges, 'must be a list of range sets');
      rangeSets = parseRangeSets([legacy, ...(ranges ?? [])], 'ipam.ranges', shifted);
    }
  }
  const gateways: Hole[] = rangeSets.flat().map((range) => ({ family: range.family, lo: range.gateway.value, hi: range.gateway.value }));
  const config: IpamConfig = {
    rangeSets,
    holes: [...gateways, ...parseExclude(ipam['exclude'])],
    routes: parseRoutes(ipam['routes']),
  };
  const resolvConf = optionalString(ipam, 'resolvConf');
  if (resolvConf) config.resolvConf = resolvConf;
  const stateDir = optionalString(ipam, 'stateDir') ?? optionalString(ipam, 'dataDir');
  if (stateDir) config.stateDir = stateDir;
  const blocks = ipam['blocks'];
  if (blocks !== undefined && blocks !== null && blocks !== false) {
    if (!isObject(blocks)) throw new InvalidIpamConfigError('ipam.blocks', blocks, 'must be an object {"daemonSocket": PATH}');
    const daemonSocket = blocks['daemonSocket'];
    if (typeof daemonSocket !== 'string' || !daemonSocket.startsWith('/')) throw new InvalidIpamConfigError('ipam.blocks.daemonSocket', blocks['daemonSocket'], 'must be the absolute path of the Shoal daemon\'s socket');
    config.blocks = { daemonSocket };
  }
  return config;
}
