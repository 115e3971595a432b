/**
 * `shoal service create|ls|inspect|ps|update|rm` (issue 16). create/update/rm write the service
 * record (and its VIP's IPAM allocation) to the store in one transaction; the daemon follows the
 * store and acts. ls/inspect/ps ask the running daemon for replicas and health
 * (`GET /v1/services`) and fall back to the stored records when no daemon answers.
 */
import type { ServiceInput, ServiceRecord } from '../service/model.js';
import type { ServiceView } from '../service/manager.js';
import { CliError, guard, many, openStore, parse, table, UsageError } from './common.js';
import { daemonGet, daemonRequest } from './node.js';

const HELP = `Usage: shoal service COMMAND

Services: a name on a network with a virtual IP (or round-robin DNS), published ports and health
checks, balanced over its replicas: the endpoints on the network that carry the name as an alias
(podman run --network-alias NAME, shoal network connect --alias NAME).

Commands:
  create   create a service
  ls       list services
  inspect  show a service as JSON, with its replicas
  ps       list a service's replicas, node and health
  update   change a service's ports, health check or balancing
  rm       remove services
`;

const CREATE_HELP = `Usage: shoal service create NAME --network NET [OPTIONS]

Options:
      --network NET              the network its replicas are on (required)
      --endpoint-mode vip|dnsrr  a virtual IP from NET's subnet (default), or DNS round robin
  -p, --publish SPEC             [mode=host,]PUBLISHED:TARGET[/tcp|udp] (repeatable)
      --health KIND              tcp (default with ports), http:/PATH, none
      --health-interval D        check interval (default 2s)
      --health-timeout D         check timeout (default: the interval)
      --health-rise N            successes that bring a replica back (default 2)
      --health-fall N            failures that take a replica out (default 3)
      --lb-policy P              rr (default), random, leastconn (proxy mode), source-hash
      --lb-mode M                kernel (nftables, default) or proxy (user space)
      --proxy-protocol v1|v2     send the PROXY protocol header to backends (proxy mode)
      --drain-timeout D          connections to a replica out of rotation end after D (default 30s)
      --affinity A               none (default) or client-ip[:TIMEOUT]: a client keeps its replica
                                 (TIMEOUT after its last new connection, default 3h)
      --max-conn N               open connections per replica and port (proxy mode; 0: no limit,
                                 the default); when all are full new clients wait in a queue
      --max-queue N              clients that may wait per port (with --max-conn, default 256;
                                 0: refuse at once); more are refused
      --queue-timeout D          a waiting client is reset after D (with --max-conn, default 5s)
      --slow-start D             a replica entering rotation (health rise, new) ramps from 1/16
                                 to its full share of new connections over D (proxy mode; 0: off)
`;

const SPEC_OPTIONS = {
  network: { type: 'string' },
  'endpoint-mode': { type: 'string' },
  publish: { type: 'string', short: 'p', multiple: true },
  health: { type: 'string' },
  'health-interval': { type: 'string' },
  'health-timeout': { type: 'string' },
  'health-rise': { type: 'string' },
  'health-fall': { type: 'string' },
  'lb-policy': { type: 'string' },
  'lb-mode': { type: 'string' },
  'proxy-protocol': { type: 'string' },
  'drain-timeout': { type: 'string' },
  affinity: { type: 'string' },
  'max-conn': { type: 'string' },
  'max-queue': { type: 'string' },
  'queue-timeout': { type: 'string' },
  'slow-start': { type: 'string' },
} as const;

function inputOf(name: string, v: Record<string, unknown>): ServiceInput {
  const s = (k: string) => (typeof v[k] === 'string' ? (v[k] as string) : undefined);
  const input: ServiceInput = { name };
  const set = <K extends keyof ServiceInput>(k: K, value: ServiceInput[K] | undefined) => {
    if (value !== undefined) input[k] = value;
  };
  set('network', s('network'));
  set('endpointMode', s('endpoint-mode'));
  if (v['publish'] !== undefined) input.ports = many(v['publish']);
  set('health', s('health'));
  set('healthInterval', s('health-interval'));
  set('healthTimeout', s('health-timeout'));
  set('healthRise', s('health-rise'));
  set('healthFall', s('health-fall'));
  set('lbPolicy', s('lb-policy'));
  set('lbMode', s('lb-mode'));
  set('proxyProtocol', s('proxy-protocol'));
  set('drainTimeout', s('drain-timeout'));
  set('affinity', s('affinity'));
  set('maxConn', s('max-conn'));
  set('maxQueue', s('max-queue'));
  set('queueTimeout', s('queue-timeout'));
  set('slowStart', s('slow-start'));
  return input;
}

/** A ServiceError is the user's input: exit 2 like a usage error. */
async function asInputError<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof Error && err.name === 'ServiceError') throw new CliError(err.message, 2);
    throw err;
  }
}

async function createOrUpdate(args: string[], update: boolean): Promise<number> {
  const { values, positionals } = parse(args, SPEC_OPTIONS);
  if (values.help) return void process.stdout.write(update ? CREATE_HELP.replace('create NAME --network NET', 'update NAME') : CREATE_HELP), 0;
  if (positionals.length !== 1) throw new UsageError(`expected one service name, got ${positionals.length}`);
  const input = inputOf(positionals[0]!, values);
  const store = await openStore();
  const { createService, getService, updateService } = await import('../service/store.js');
  if (await inCluster(store, input, update, update ? await getService(store, input.name) : undefined)) {
    // A service of an overlay network lives in etcd: the daemon, joined to the cluster, writes it.
    const res = await daemonRequest('POST', '/v1/services', { input, update });
    const error = (res.body as { error?: string } | undefined)?.error;
    if (res.status === 400) throw new CliError(error ?? 'the daemon refused the service', 2);
    if (res.status !== 200) throw new CliError(error ?? `HTTP ${res.status}`);
    process.stdout.write(`${(res.body as ServiceRecord).name}\n`);
    return 0;
  }
  const record = await asInputError(() => (update ? updateService(store, input) : createService(store, input)));
  process.stdout.write(`${record.name}\n`);
  return 0;
}

/**
 * Whether the service belongs to the cluster: created on an overlay network, or (update) not a
 * local one. Local networks keep their services in the local store, daemon or not.
 */
async function inCluster(store: Awaited<ReturnType<typeof openStore>>, input: ServiceInput, update: boolean, localRecord: ServiceRecord | undefined): Promise<boolean> {
  if (localRecord !== undefined) return false;
  if (input.network === undefined) return update; // create: the local model names the missing --network
  const { getNetwork } = await import('../network/model.js');
  return (await getNetwork(store, input.network))?.driver === 'overlay';
}

/** Live views from the daemon, or the stored records (health unknown) without one. */
async function views(name?: string): Promise<{ live: boolean; services: ServiceView[] }> {
  try {
    const res = await daemonGet(`/v1/services${name ? `?name=${encodeURIComponent(name)}` : ''}`);
    if (res.status === 200) return { live: true, services: res.body as ServiceView[] };
  } catch {
    // no daemon: the store still knows the services
  }
  const { listServices } = await import('../service/store.js');
  const records: ServiceRecord[] = await listServices(await openStore());
  return { live: false, services: records.filter((r) => name === undefined || r.name === name).map((r) => ({ ...r, replicas: [] })) };
}

const portsText = (s: ServiceRecord) => s.ports.map((p) => `${p.mode === 'host' ? 'host:' : ''}${p.published}->${p.target}/${p.protocol}`).join(', ');

async function ls(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { format: { type: 'string', default: 'table' } });
  if (values.help) return void process.stdout.write('Usage: shoal service ls [--format table|json]\n'), 0;
  if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  const { live, services } = await views();
  if (values.format === 'json') return void process.stdout.write(JSON.stringify(services, null, 2) + '\n'), 0;
  const rows = services.map((s) => [
    s.name,
    s.network,
    s.endpointMode,
    s.vips.join(',') || '-',
    live ? `${s.replicas.filter((r) => r.health === 'up').length}/${s.replicas.length}` : '?',
    `${s.lbMode}/${s.lbPolicy}`,
    portsText(s),
  ]);
  process.stdout.write(table(['NAME', 'NETWORK', 'MODE', 'VIP', 'REPLICAS', 'LB', 'PORTS'], rows));
  return 0;
}

async function one(name: string | undefined): Promise<{ live: boolean; service: ServiceView }> {
  if (!name) throw new UsageError('expected a service name');
  const { live, services } = await views(name);
  const service = services[0];
  if (!service) throw new CliError(`no such service "${name}"`);
  return { live, service };
}

async function inspect(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {});
  if (values.help) return void process.stdout.write('Usage: shoal service inspect NAME\n'), 0;
  const { service } = await one(positionals[0]);
  process.stdout.write(JSON.stringify(service, null, 2) + '\n');
  return 0;
}

async function ps(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {});
  if (values.help) return void process.stdout.write('Usage: shoal service ps NAME\n'), 0;
  const { live, service } = await one(positionals[0]);
  if (!live) throw new CliError('replicas and their health come from the daemon, and none answers (start "shoal daemon")');
  const rows = service.replicas.map((r) => [r.name, r.containerId.slice(0, 12), [r.ipv4, r.ipv6].filter(Boolean).join(','), r.node, r.health]);
  process.stdout.write(table(['NAME', 'CONTAINER', 'ADDRESS', 'NODE', 'HEALTH'], rows));
  return 0;
}

async function rm(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {});
  if (values.help) return void process.stdout.write('Usage: shoal service rm NAME...\n'), 0;
  if (positionals.length === 0) throw new UsageError('expected at least one service name');
  const store = await openStore();
  const { removeService } = await import('../service/store.js');
  let missing = 0;
  for (const name of positionals) {
    if ((await removeService(store, name)) || (await removeFromCluster(name))) process.stdout.write(`${name}\n`);
    else {
      process.stderr.write(`shoal service rm: no such service "${name}"\n`);
      missing += 1;
    }
  }
  return missing ? 1 : 0;
}

/** A service not in the local store may be the cluster's: the daemon removes it (false: it has none). */
async function removeFromCluster(name: string): Promise<boolean> {
  let res: { status: number; body: unknown };
  try {
    res = await daemonRequest('DELETE', `/v1/services?name=${encodeURIComponent(name)}`);
  } catch {
    return false; // no daemon: nothing but the local store to look in
  }
  if (res.status === 404 || res.status === 409) return false;
  if (res.status !== 200) throw new CliError((res.body as { error?: string } | undefined)?.error ?? `HTTP ${res.status}`);
  return true;
}

export async function run(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  return guard(`service${sub && sub !== '--help' && sub !== '-h' ? ` ${sub}` : ''}`, async () => {
    if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
      process.stdout.write(HELP);
      return sub === undefined ? 2 : 0;
    }
    if (sub === 'create') return createOrUpdate(rest, false);
    if (sub === 'update') return createOrUpdate(rest, true);
    if (sub === 'ls' || sub === 'list') return ls(rest);
    if (sub === 'inspect') return inspect(rest);
    if (sub === 'ps') return ps(rest);
    if (sub === 'rm' || sub === 'remove') return rm(rest);
    throw new UsageError(`unknown command "${sub}"`);
  });
}
