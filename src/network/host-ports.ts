/**
 * Host ports for publish requests that leave them open (`-p 80`, `-p 127.0.0.1::80`,
 * `-p 8000-8010:80`), chosen the way docker chooses them: the first free port of the host range
 * when one is given, else a free port of the kernel's ephemeral range
 * (net.ipv4.ip_local_port_range). Free means: not published by Shoal (the portmap records), not
 * held by a socket of the host (/proc/net/{tcp,tcp6,udp,udp6}) and not chosen for another
 * request of the same command. The choice and the ADD are not one transaction; a concurrent run
 * that takes the port in between makes the portmap plugin refuse the ADD with the owner's name.
 */
import { readFileSync } from 'node:fs';
import { listRecords, portmapDir } from '../portmap/state.js';
import type { PortMapping } from './attach.js';
import type { PortRequest } from './ports.js';

export class NoFreeHostPortError extends Error {
  // docker run exits 125 when the daemon cannot allocate a port.
  readonly exitCode = 125;
}

export interface HostPortState {
  /** Mappings Shoal publishes now. */
  published: PortMapping[];
  /** `${protocol}/${port}` held by a host socket (TCP listening, UDP bound). */
  held: Set<string>;
  /** The ephemeral range, inclusive. */
  ephemeral: [number, number];
}

const overlaps = (a: string, b: string) => a === '' || b === '' || a === b;
const toMapping = ({ hostIP, hostPort, containerPort, protocol }: PortRequest): PortMapping => ({ hostIP, hostPort, containerPort, protocol });

/**
 * Fixed requests are kept as they are (the portmap plugin checks them and names the holder);
 * open ones get a port. `random` in [0, 1) picks where the walk of the ephemeral range starts,
 * so two commands at once rarely try the same port.
 */
export function assignHostPorts(requests: PortRequest[], state: HostPortState, random = Math.random()): PortMapping[] {
  const taken: PortMapping[] = [...state.published, ...requests.filter((r) => r.hostPort !== 0)];
  const isFree = (r: PortRequest, port: number) =>
    !state.held.has(`${r.protocol}/${port}`) && !taken.some((m) => m.protocol === r.protocol && m.hostPort === port && overlaps(m.hostIP, r.hostIP));
  return requests.map((r) => {
    const { hostIP, hostPort, containerPort, protocol } = r;
    if (hostPort !== 0) return toMapping(r);
    const [lo, hi] = r.hostRange ?? state.ephemeral;
    const size = hi - lo + 1;
    const first = r.hostRange ? 0 : Math.floor(random * size);
    for (let i = 0; i < size; i++) {
      const port = lo + ((first + i) % size);
      if (!isFree(r, port)) continue;
      const chosen = { hostIP, hostPort: port, containerPort, protocol };
      taken.push(chosen);
      return chosen;
    }
    const where = r.hostRange ? `the host range ${lo}-${hi}` : `the ephemeral range ${lo}-${hi}`;
    throw new NoFreeHostPortError(`cannot publish "${r.spec}": no free host port for ${protocol} in ${where}`);
  });
}

/** Local ports in a /proc/net/{tcp,udp}[6] table; for TCP only listening sockets count. */
export function heldPorts(table: string, listeningOnly: boolean): number[] {
  const ports: number[] = [];
  for (const line of table.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 4) continue;
    if (listeningOnly && fields[3] !== '0A') continue; // TCP_LISTEN
    const port = parseInt(fields[1]!.split(':')[1] ?? '', 16);
    if (Number.isInteger(port) && port > 0) ports.push(port);
  }
  return ports;
}

function readOr(file: string, fallback: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return fallback;
  }
}

/** Host ports for `-p` requests; reads what Shoal (under `stateDir`) and the host hold only when one is open. */
export function resolveHostPorts(requests: PortRequest[], stateDir: string | undefined): PortMapping[] {
  if (requests.every((r) => r.hostPort !== 0)) return requests.map(toMapping);
  return assignHostPorts(requests, readHostPortState(portmapDir(stateDir)));
}

/** What assignHostPorts needs, read from the portmap records in `portmapDir` and /proc. */
export function readHostPortState(portmapDir: string): HostPortState {
  const held = new Set<string>();
  for (const [file, protocol, listeningOnly] of [['tcp', 'tcp', true], ['tcp6', 'tcp', true], ['udp', 'udp', false], ['udp6', 'udp', false]] as const) {
    for (const port of heldPorts(readOr(`/proc/net/${file}`, ''), listeningOnly)) held.add(`${protocol}/${port}`);
  }
  const [lo, hi] = readOr('/proc/sys/net/ipv4/ip_local_port_range', '32768 60999').trim().split(/\s+/).map(Number);
  const ephemeral: [number, number] = lo && hi && lo <= hi ? [lo, hi] : [32768, 60999];
  return { published: listRecords(portmapDir).flatMap((r) => r.mappings), held, ephemeral };
}
