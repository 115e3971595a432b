/**
 * `-p/--publish` specs, docker's syntax: [HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO], with an
 * IPv6 host IP in brackets ([::1]:8080:80). Ranges and random host ports are not supported: each
 * mapping names both ports. Errors name the spec and the problem in one line.
 */
import { isIP } from '../ip-text.js';
import type { PortMapping } from './attach.js';

export class PortSpecError extends Error {
  readonly exitCode = 2;
}

function port(spec: string, text: string, what: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > 65535) throw new PortSpecError(`invalid port spec "${spec}": ${what} "${text}" is not a port 1-65535`);
  return n;
}

export function parsePortSpec(spec: string): PortMapping {
  let rest = spec;
  let protocol = 'tcp';
  const slash = rest.lastIndexOf('/');
  if (slash >= 0) {
    protocol = rest.slice(slash + 1).toLowerCase();
    rest = rest.slice(0, slash);
    if (!['tcp', 'udp', 'sctp'].includes(protocol)) throw new PortSpecError(`invalid port spec "${spec}": protocol "${protocol}" is not tcp, udp or sctp`);
  }
  let hostIP = '';
  if (rest.startsWith('[')) {
    const end = rest.indexOf(']:');
    if (end < 0) throw new PortSpecError(`invalid port spec "${spec}": unclosed "[" around the host IP`);
    hostIP = rest.slice(1, end);
    rest = rest.slice(end + 2);
    if (isIP(hostIP) !== 6) throw new PortSpecError(`invalid port spec "${spec}": "${hostIP}" is not an IPv6 address`);
  }
  const parts = rest.split(':');
  if (parts.length === 3 && hostIP === '') {
    hostIP = parts.shift()!;
    if (hostIP !== '' && isIP(hostIP) === 0) throw new PortSpecError(`invalid port spec "${spec}": "${hostIP}" is not an IP address`);
  }
  if (parts.length !== 2) throw new PortSpecError(`invalid port spec "${spec}": expected [HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]`);
  return { hostIP, hostPort: port(spec, parts[0]!, 'host port'), containerPort: port(spec, parts[1]!, 'container port'), protocol };
}

/** Parses every spec; a (hostIP, hostPort, protocol) given twice is refused. */
export function parsePortSpecs(specs: string[]): PortMapping[] {
  const out = specs.map(parsePortSpec);
  const seen = new Set<string>();
  for (const [i, m] of out.entries()) {
    const key = `${m.hostIP}|${m.hostPort}|${m.protocol}`;
    if (seen.has(key)) throw new PortSpecError(`invalid port spec "${specs[i]}": host port ${m.hostPort}/${m.protocol} given twice`);
    seen.add(key);
  }
  return out;
}
