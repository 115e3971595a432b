/**
 * `shoal node ls`: the cluster's nodes, asked of the local daemon (`GET /v1/nodes` on
 * `<run dir>/shoald.sock`). The CLI never opens etcd itself (DESIGN.md §4.12): without a daemon
 * joined to a cluster it fails with one line, exit 1.
 */
import http from 'node:http';
import path from 'node:path';
import { CliError, guard, parse, runDir, table, UsageError } from './common.js';

const HELP = `Usage: shoal node COMMAND

Cluster nodes (needs a local daemon started with --store etcd://...).

Commands:
  ls          list the cluster's nodes
`;

const LS_HELP = `Usage: shoal node ls [--format table|json]

List the cluster's nodes as the local daemon reads them from etcd: name, address, state (ready:
the node's lease holds its key), lease age (since the node's current lease was granted).
`;

interface NodeRow {
  name: string;
  address: string;
  state: string;
  leaseAgeSeconds: number;
  started: string;
  version: string;
  self: boolean;
}

/** A request on the daemon's control socket; CliError (exit 1) when no daemon answers there. */
export function daemonRequest(method: string, urlPath: string, body?: unknown, socketPath = path.join(runDir(), 'shoald.sock')): Promise<{ status: number; body: unknown }> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) };
    const req = http.request({ socketPath, path: urlPath, method, headers, timeout: 30_000 }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: text ? (JSON.parse(text) as unknown) : undefined });
        } catch {
          reject(new CliError(`the daemon at "${socketPath}" answered ${urlPath} with something that is not JSON`));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 30 s')));
    req.on('error', (err: NodeJS.ErrnoException) => {
      const why = err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? 'no daemon is running there' : err.message;
      reject(new CliError(`failed to reach the daemon at "${socketPath}": ${why} (start "shoal daemon --store etcd://..." to join a cluster)`));
    });
    req.end(payload);
  });
}

export function daemonGet(urlPath: string, socketPath?: string): Promise<{ status: number; body: unknown }> {
  return daemonRequest('GET', urlPath, undefined, socketPath);
}

/** The daemon's answer, or CliError with the error it gave. */
export async function daemonCall(method: string, urlPath: string, body?: unknown): Promise<unknown> {
  const res = await daemonRequest(method, urlPath, body);
  if (res.status !== 200) throw new CliError((res.body as { error?: string } | undefined)?.error ?? `HTTP ${res.status}`);
  return res.body;
}

export function formatAge(seconds: number): string {
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${seconds % 60 ? `${seconds % 60}s` : ''}`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h${Math.floor((seconds % 3600) / 60)}m`;
  return `${Math.floor(seconds / 86400)}d${Math.floor((seconds % 86400) / 3600)}h`;
}

async function ls(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { format: { type: 'string', default: 'table' } });
  if (values.help) return void process.stdout.write(LS_HELP), 0;
  if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  if (values.format !== 'table' && values.format !== 'json') throw new UsageError(`invalid --format "${values.format}": table or json`);
  const res = await daemonGet('/v1/nodes');
  if (res.status !== 200) {
    const msg = (res.body as { error?: string } | undefined)?.error ?? `HTTP ${res.status}`;
    throw new CliError(msg);
  }
  const nodes = (res.body as NodeRow[]).slice().sort((a, b) => a.name.localeCompare(b.name));
  if (values.format === 'json') {
    process.stdout.write(JSON.stringify(nodes, null, 2) + '\n');
    return 0;
  }
  const rows = nodes.map((n) => [n.self ? `${n.name} *` : n.name, n.address, n.state, formatAge(n.leaseAgeSeconds), n.version]);
  process.stdout.write(table(['NAME', 'ADDRESS', 'STATE', 'LEASE AGE', 'VERSION'], rows));
  return 0;
}

export async function run(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  return guard(`node${sub && sub !== '--help' && sub !== '-h' ? ` ${sub}` : ''}`, async () => {
    if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
      process.stdout.write(HELP);
      return sub === undefined ? 2 : 0;
    }
    if (sub === 'ls' || sub === 'list') return ls(rest);
    throw new UsageError(`unknown command "${sub}"`);
  });
}
