/**
 * `shoal port <container id | name | netns> [PRIVATE_PORT[/PROTO]]`: the container's published
 * ports, formatted like `docker port`. Reads the records shoal-portmap writes under
 * `<state dir>/portmap/` (src/portmap/state.ts says why records and not nft comments), so it
 * needs no nft exec and loads no kernel code.
 */
import { parseArgs } from 'node:util';
import { listRecords, portmapDir, type PortmapRecord } from '../portmap/state.js';

const HELP = `Usage: shoal port [--state-dir DIR] CONTAINER [PRIVATE_PORT[/PROTO]]

List the port mappings of a container (by id, id prefix, name or netns path), like "docker port".
`;

/** Records of the container: exact id, unique id prefix (>= 3 chars), name, or netns path. */
export function findRecords(records: readonly PortmapRecord[], query: string): PortmapRecord[] {
  const exact = records.filter((r) => r.containerId === query || r.name === query || r.netns === query);
  if (exact.length > 0) return exact;
  if (query.length < 3) return [];
  const prefixed = records.filter((r) => r.containerId.startsWith(query));
  return new Set(prefixed.map((r) => r.containerId)).size === 1 ? prefixed : [];
}

/** docker's form: "80/tcp -> 0.0.0.0:8080" (and "[::]:8080" when the container has IPv6). */
export function formatMappings(records: readonly PortmapRecord[], filter?: string): string[] {
  const lines: string[] = [];
  const [fPort, fProto = 'tcp'] = (filter ?? '').split('/');
  for (const r of records) {
    const v4 = r.containerIPs.some((ip) => !ip.includes(':'));
    const v6 = r.containerIPs.some((ip) => ip.includes(':'));
    const sorted = [...r.mappings].sort((a, b) => a.containerPort - b.containerPort || a.protocol.localeCompare(b.protocol) || a.hostPort - b.hostPort);
    for (const m of sorted) {
      if (filter !== undefined && (String(m.containerPort) !== fPort || m.protocol !== fProto)) continue;
      const hosts = m.hostIP === '' ? [...(v4 ? ['0.0.0.0'] : []), ...(v6 ? ['::'] : [])] : [m.hostIP];
      for (const h of hosts) {
        const addr = `${h.includes(':') ? `[${h}]` : h}:${m.hostPort}`;
        lines.push(filter !== undefined ? addr : `${m.containerPort}/${m.protocol} -> ${addr}`);
      }
    }
  }
  return lines;
}

export async function run(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args, allowPositionals: true, options: { 'state-dir': { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  } catch (err) {
    process.stderr.write(`shoal port: ${(err as Error).message}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const [query, filter] = positionals;
  if (query === undefined || positionals.length > 2) {
    process.stderr.write(HELP);
    return 2;
  }
  const dir = portmapDir(values['state-dir']);
  const mine = findRecords(listRecords(dir), query);
  if (mine.length === 0) {
    process.stderr.write(`shoal port: no published ports found for "${query}" (looked in ${dir})\n`);
    return 1;
  }
  const lines = formatMappings(mine, filter);
  if (filter !== undefined && lines.length === 0) {
    process.stderr.write(`shoal port: no public port "${filter}" published for "${query}"\n`);
    return 1;
  }
  process.stdout.write(lines.map((l) => `${l}\n`).join(''));
  return 0;
}
