/**
 * CNI results: one internal shape (spec 1.1, the richest) and conversion from and to every
 * version we speak.
 *
 * - 0.3.0 / 0.3.1 / 0.4.0: `ips[].version` ("4" or "6") is present and required.
 * - 1.0.0: no `ips[].version`.
 * - 1.1.0: adds interface `mtu`/`socketPath`/`pciID` and route `mtu`/`advmss`/`priority`/
 *   `table`/`scope`; these are dropped when printing to an older version.
 *
 * Parsing validates as it goes and reports code 7 naming the field path (e.g.
 * `prevResult.ips[0].address`), since a prevResult is part of the network config.
 */
import { IpAddr, IpPrefix } from '../src/addr.js';
import { invalidConfig } from './errors.js';
import { atLeast } from './version.js';

export interface CniInterface {
  name: string;
  mac?: string;
  sandbox?: string;
  /** 1.1 */ mtu?: number;
  /** 1.1 */ socketPath?: string;
  /** 1.1 */ pciID?: string;
}

export interface CniIpConfig {
  /** CIDR: the address and its prefix, e.g. "10.1.0.5/24". */
  address: string;
  gateway?: string;
  /** Index into `interfaces`. IPAM plugins leave it out. */
  interface?: number;
}

export interface CniRoute {
  dst: string;
  gw?: string;
  /** 1.1 */ mtu?: number;
  /** 1.1 */ advmss?: number;
  /** 1.1 */ priority?: number;
  /** 1.1 */ table?: number;
  /** 1.1 */ scope?: number;
}

export interface CniDns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

/** The internal result; `cniVersion` is added only when printing. */
export interface CniResult {
  interfaces?: CniInterface[];
  ips?: CniIpConfig[];
  routes?: CniRoute[];
  dns?: CniDns;
}

/** A GC attachment: an (container, ifname) pair the runtime still considers valid. */
export interface GcAttachment {
  containerID: string;
  ifname: string;
}

// ---- printing ----------------------------------------------------------------------------

/** The result as JSON in `version`. Empty lists and an empty `dns` are left out. */
export function formatResult(result: CniResult, version: string): Record<string, unknown> {
  const is11 = atLeast(version, '1.1.0');
  const is1x = atLeast(version, '1.0.0');
  const out: Record<string, unknown> = { cniVersion: version };
  if (result.interfaces?.length) {
    out.interfaces = result.interfaces.map((i) =>
      compact({
        name: i.name,
        mac: i.mac,
        mtu: is11 ? i.mtu : undefined,
        sandbox: i.sandbox,
        socketPath: is11 ? i.socketPath : undefined,
        pciID: is11 ? i.pciID : undefined,
      }),
    );
  }
  if (result.ips?.length) {
    out.ips = result.ips.map((ip) =>
      compact({
        version: is1x ? undefined : ipFamilyOf(ip.address),
        interface: ip.interface,
        address: ip.address,
        gateway: ip.gateway,
      }),
    );
  }
  if (result.routes?.length) {
    out.routes = result.routes.map((r) =>
      compact({
        dst: r.dst,
        gw: r.gw,
        mtu: is11 ? r.mtu : undefined,
        advmss: is11 ? r.advmss : undefined,
        priority: is11 ? r.priority : undefined,
        table: is11 ? r.table : undefined,
        scope: is11 ? r.scope : undefined,
      }),
    );
  }
  const dns = result.dns ? compact({ ...result.dns }) : {};
  if (Object.keys(dns).length > 0) out.dns = dns;
  return out;
}

function compact<T extends Record<string, unknown>>(obj: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(obj)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}

/** "4" or "6" for a CIDR or a bare address (one this module has validated). */
export function ipFamilyOf(addressOrCidr: string): '4' | '6' {
  return IpPrefix.tryParse(addressOrCidr, { bareAddress: true })?.family === 6 ? '6' : '4';
}

// ---- parsing -----------------------------------------------------------------------------

/**
 * Parses a result written in `version` (a prevResult, or a delegate's stdout) into the internal
 * shape. `where` prefixes field paths in error messages.
 */
export function parseResult(json: unknown, version: string, where = 'prevResult'): CniResult {
  const obj = asObject(json, where);
  const legacy = !atLeast(version, '1.0.0');
  const result: CniResult = {};
  if (obj.interfaces !== undefined) {
    result.interfaces = asArray(obj.interfaces, `${where}.interfaces`).map((v, n) => parseInterface(v, `${where}.interfaces[${n}]`));
  }
  if (obj.ips !== undefined) {
    result.ips = asArray(obj.ips, `${where}.ips`).map((v, n) => parseIp(v, `${where}.ips[${n}]`, legacy, result.interfaces));
  }
  if (obj.routes !== undefined) {
    result.routes = asArray(obj.routes, `${where}.routes`).map((v, n) => parseRoute(v, `${where}.routes[${n}]`));
  }
  if (obj.dns !== undefined) result.dns = parseDns(obj.dns, `${where}.dns`);
  return result;
}

function parseInterface(value: unknown, path: string): CniInterface {
  const o = asObject(value, path);
  const iface: CniInterface = { name: str(o.name, `${path}.name`, true) as string };
  assign(iface, 'mac', str(o.mac, `${path}.mac`));
  assign(iface, 'sandbox', str(o.sandbox, `${path}.sandbox`));
  assign(iface, 'mtu', int(o.mtu, `${path}.mtu`));
  assign(iface, 'socketPath', str(o.socketPath, `${path}.socketPath`));
  assign(iface, 'pciID', str(o.pciID, `${path}.pciID`));
  return iface;
}

function parseIp(value: unknown, path: string, legacy: boolean, interfaces: CniInterface[] | undefined): CniIpConfig {
  const o = asObject(value, path);
  const address = cidr(o.address, `${path}.address`);
  const ip: CniIpConfig = { address };
  const gateway = str(o.gateway, `${path}.gateway`);
  if (gateway !== undefined && gateway !== '') {
    const problem = IpAddr.problem(gateway);
    if (problem) throw invalidConfig(`${path}.gateway`, gateway, `is not an IP address: ${problem}`);
    ip.gateway = gateway;
  }
  const index = int(o.interface, `${path}.interface`);
  if (index !== undefined) {
    if (index < 0 || (interfaces !== undefined && index >= interfaces.length)) {
      throw invalidConfig(`${path}.interface`, index, `is not an index into "interfaces" (${interfaces?.length ?? 0} entries)`);
    }
    ip.interface = index;
  }
  // 0.x carries the family explicitly; the spec requires address and gateway to match it.
  // 1.x dropped the field: tolerate it (an unknown field) but do not trust it.
  if (legacy && o.version !== undefined) {
    if (o.version !== '4' && o.version !== '6') throw invalidConfig(`${path}.version`, o.version, 'must be "4" or "6"');
    if (o.version !== ipFamilyOf(address)) {
      throw invalidConfig(`${path}.address`, address, `is not an IPv${o.version} address, as "version" says`);
    }
    if (ip.gateway && ipFamilyOf(ip.gateway) !== o.version) {
      throw invalidConfig(`${path}.gateway`, ip.gateway, `is not an IPv${o.version} address, as "version" says`);
    }
  }
  return ip;
}

function parseRoute(value: unknown, path: string): CniRoute {
  const o = asObject(value, path);
  const route: CniRoute = { dst: cidr(o.dst, `${path}.dst`) };
  const gw = str(o.gw, `${path}.gw`);
  if (gw !== undefined && gw !== '') {
    const problem = IpAddr.problem(gw);
    if (problem) throw invalidConfig(`${path}.gw`, gw, `is not an IP address: ${problem}`);
    route.gw = gw;
  }
  for (const key of ['mtu', 'advmss', 'priority', 'table', 'scope'] as const) assign(route, key, int(o[key], `${path}.${key}`));
  return route;
}

function parseDns(value: unknown, path: string): CniDns {
  const o = asObject(value, path);
  const dns: CniDns = {};
  assign(dns, 'nameservers', strList(o.nameservers, `${path}.nameservers`));
  assign(dns, 'domain', str(o.domain, `${path}.domain`));
  assign(dns, 'search', strList(o.search, `${path}.search`));
  assign(dns, 'options', strList(o.options, `${path}.options`));
  return dns;
}

/**
 * Parses `cni.dev/valid-attachments` (or `cni.dev/attachments`, the spelling of an earlier
 * spec draft that libcni still sends too) for GC. Undefined when neither is present, so a GC
 * cannot mistake "not told" for "nothing is valid" and release everything.
 */
export function parseGcAttachments(config: Record<string, unknown>): GcAttachment[] | undefined {
  const key = config['cni.dev/valid-attachments'] !== undefined ? 'cni.dev/valid-attachments' : 'cni.dev/attachments';
  const raw = config[key];
  if (raw === undefined || raw === null) return undefined;
  return asArray(raw, key).map((v, n) => {
    const o = asObject(v, `${key}[${n}]`);
    return {
      containerID: str(o.containerID, `${key}[${n}].containerID`, true) as string,
      ifname: str(o.ifname, `${key}[${n}].ifname`, true) as string,
    };
  });
}

// ---- small validators (hand-written: this module must stay light for start-up) -----------

function assign<T extends object, K extends keyof T>(target: T, key: K, value: T[K] | undefined): void {
  if (value !== undefined) target[key] = value;
}

function asObject(value: unknown, path: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalidConfig(path, value, 'must be a JSON object');
  }
  return value as Record<string, unknown>;
}

function asArray(value: unknown, path: string): unknown[] {
  if (!Array.isArray(value)) throw invalidConfig(path, value, 'must be a list');
  return value;
}

function str(value: unknown, path: string, required = false): string | undefined {
  if (value === undefined || value === null) {
    if (required) throw invalidConfig(path, undefined, 'is required');
    return undefined;
  }
  if (typeof value !== 'string') throw invalidConfig(path, value, 'must be a string');
  return value;
}

function strList(value: unknown, path: string): string[] | undefined {
  if (value === undefined || value === null) return undefined;
  return asArray(value, path).map((v, n) => str(v, `${path}[${n}]`, true) as string);
}

function int(value: unknown, path: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value)) throw invalidConfig(path, value, 'must be an integer');
  return value;
}

/**
 * A result's CIDR, validated by the one parser; kept as text (results are passed on as the
 * previous plugin wrote them, and whoever needs values parses them once at its own edge).
 */
function cidr(value: unknown, path: string): string {
  const text = str(value, path, true) as string;
  const problem = IpPrefix.problem(text);
  if (problem) throw invalidConfig(path, value, `is not an address in CIDR notation (like "10.1.0.5/24"): ${problem}`);
  return text;
}
