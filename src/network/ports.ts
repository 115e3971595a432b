/**
 * `-p/--publish` specs in docker's syntax: [HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/PROTO],
 * with an IPv6 host IP in brackets ([::1]:8080:80). What docker accepts is accepted here:
 *   80            container port 80 on a host port chosen from the ephemeral range
 *   127.0.0.1::80 the same, on one host address
 *   8000-8002:80-82  three mappings, pairwise
 *   8000-8010:80  one mapping, on the first free host port of 8000-8010
 *   80-82         three mappings, each on a chosen host port
 * Parsing yields requests; src/network/host-ports.ts turns the open ones into ports. Errors name
 * the spec and the problem in one line.
 */
import { IpAddr } from '../addr.js';
import type { PortMapping } from './attach.js';

export class PortSpecError extends Error {
  readonly exitCode = 2;
}

/** A mapping to make; hostPort 0 means "choose one", from hostRange when given. */
export interface PortRequest extends PortMapping {
  hostRange?: [number, number];
  /** The spec it came from, for messages. */
  spec: string;
}

function portRange(spec: string, text: string, what: string): [number, number] {
  const m = /^(\d+)(?:-(\d+))?$/.exec(text);
  const lo = Number(m?.[1]);
  const hi = m?.[2] === undefined ? lo : Number(m[2]);
  const valid = (n: number) => Number.isInteger(n) && n >= 1 && n <= 65535;
  if (!m || !valid(lo) || !valid(hi)) throw new PortSpecError(`invalid port spec "${spec}": ${what} "${text}" is not a port 1-65535 or a range of them`);
  if (hi < lo) throw new PortSpecError(`invalid port spec "${spec}": ${what} range "${text}" ends before it starts`);
  return [lo, hi];
}

/** The host IP of a port spec, parsed (printed back canonically into the request). */
function hostAddress(spec: string, text: string): IpAddr {
  const ip = IpAddr.tryParse(text);
  if (!ip) throw new PortSpecError(`invalid port spec "${spec}": "${text}" is not an IP address (${IpAddr.problem(text)})`);
  return ip;
}

/** Splits off /PROTO and [HOST_IP]; returns the protocol, host IP and the ":"-separated rest. */
function splitSpec(spec: string): { protocol: string; hostIP: string; parts: string[] } {
  let rest = spec;
  let protocol = 'tcp';
  const slash = rest.lastIndexOf('/');
  if (slash >= 0) {
    protocol = rest.slice(slash + 1).toLowerCase();
    rest = rest.slice(0, slash);
    if (!['tcp', 'udp', 'sctp'].includes(protocol)) throw new PortSpecError(`invalid port spec "${spec}": protocol "${protocol}" is not tcp, udp or sctp`);
  }
  if (rest.startsWith('[')) {
    const end = rest.indexOf(']:');
    if (end < 0) throw new PortSpecError(`invalid port spec "${spec}": unclosed "[" around the host IP`);
    const hostIP = hostAddress(spec, rest.slice(1, end));
    if (hostIP.family !== 6) throw new PortSpecError(`invalid port spec "${spec}": "${hostIP.toString()}" is not an IPv6 address`);
    const parts = rest.slice(end + 2).split(':');
    if (parts.length !== 2) throw new PortSpecError(`invalid port spec "${spec}": expected [HOST_IP]:[HOST_PORT]:CONTAINER_PORT after the bracketed address`);
    return { protocol, hostIP: hostIP.toString(), parts };
  }
  const parts = rest.split(':');
  if (parts.length === 3) {
    const hostIP = parts.shift()!;
    return { protocol, hostIP: hostIP === '' ? '' : hostAddress(spec, hostIP).toString(), parts };
  }
  if (parts.length === 1) return { protocol, hostIP: '', parts: ['', parts[0]!] };
  if (parts.length !== 2) throw new PortSpecError(`invalid port spec "${spec}": expected [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]`);
  return { protocol, hostIP: '', parts };
}

export function parsePortSpec(spec: string): PortRequest[] {
  const { protocol, hostIP, parts } = splitSpec(spec);
  const [hostText, containerText] = parts as [string, string];
  const [clo, chi] = portRange(spec, containerText, 'container port');
  const count = chi - clo + 1;
  const base = { hostIP, protocol, spec };
  const containerPorts = Array.from({ length: count }, (_, i) => clo + i);
  if (hostText === '') return containerPorts.map((containerPort) => ({ ...base, hostPort: 0, containerPort }));
  const [hlo, hhi] = portRange(spec, hostText, 'host port');
  if (count === 1 && hhi > hlo) return [{ ...base, hostPort: 0, hostRange: [hlo, hhi], containerPort: clo }];
  if (hhi - hlo + 1 !== count) {
    throw new PortSpecError(`invalid port spec "${spec}": the host range has ${hhi - hlo + 1} ports and the container range ${count}; they must match`);
  }
  return containerPorts.map((containerPort, i) => ({ ...base, hostPort: hlo + i, containerPort }));
}

/** Parses every spec; a fixed (hostIP, hostPort, protocol) given twice is refused. */
export function parsePortSpecs(specs: string[]): PortRequest[] {
  const out = specs.flatMap(parsePortSpec);
  const seen = new Set<string>();
  for (const m of out) {
    if (m.hostPort === 0) continue;
    const key = `${m.hostIP}|${m.hostPort}|${m.protocol}`;
    if (seen.has(key)) throw new PortSpecError(`invalid port spec "${m.spec}": host port ${m.hostPort}/${m.protocol} given twice`);
    seen.add(key);
  }
  return out;
}
