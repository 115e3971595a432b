/**
 * `shoal daemon` flags -> DaemonOptions. Pure (env is passed in) so every default and every
 * refusal is unit-tested. Errors read `invalid flag "--x": <value> <problem>`.
 */
import { isIP } from '../addr.js';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ShoalError } from '../errors.js';
import { parseEtcdUrl, StoreUrlError } from '../store/etcd-url.js';
import { resolveStateDir, STORE_FILE_NAME } from '../store/open.js';

export const DEFAULT_RUN_DIR = '/run/shoal';
export const DEFAULT_METRICS_ADDR = '127.0.0.1:9590';
export const DEFAULT_NODE_TTL_SECONDS = 10;
/** A dead node's blocks: long enough for a daemon restart or a short partition to keep them (DESIGN §7). */
export const DEFAULT_BLOCK_GRACE_SECONDS = 300;
/**
 * UDP DNS queries a second one client address may send (--dns-client-rate). On by default since
 * torture dns showed what one container flooding the server does to everyone else's answers:
 * the server keeps up on average, but every pause (a GC, a JIT, a burst of TCP clients) queues
 * the flood's packets ahead of the others', and p99 went to 15-72 ms in half the runs. With the
 * limit, 2.8-6.9 ms in every run. Cloud resolvers cap per client too, lower: AWS's VPC resolver
 * 1,024 packets a second per network interface. A container above 10,000 a second is a flood or
 * a bug; a load test that needs more says --dns-client-rate 0.
 */
export const DEFAULT_DNS_CLIENT_RATE = 10_000;
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type DaemonLogLevel = (typeof LOG_LEVELS)[number];

export interface HostPort {
  host: string;
  port: number;
}

export type StoreSpec = { kind: 'sqlite'; file: string } | { kind: 'etcd'; endpoints: string[] };

/**
 * Cluster mode (`--store etcd://...`, DESIGN.md §7): the etcd session the daemon holds next to
 * its local store. `advertiseAddr` undefined means "the source address of the default route",
 * looked up by runDaemon (parsing stays pure).
 */
export interface ClusterSpec {
  endpoints: string[];
  node: string;
  advertiseAddr: string | undefined;
  nodeTtlSeconds: number;
  /** How long a dead node's address blocks stay reserved before other nodes may claim them. */
  blockGraceSeconds: number;
}

export interface DaemonOptions {
  metrics: HostPort | undefined;
  socket: string;
  runDir: string;
  stateDir: string;
  /** The local store (SQLite): DNS registry, IPAM, what the plugins write. */
  store: StoreSpec;
  /** Set with `--store etcd://...`: the daemon joins the cluster. */
  cluster: ClusterSpec | undefined;
  logLevel: DaemonLogLevel;
  dnsPort: number;
  pidFile: string;
  resolvConf: string;
  localTtl: number;
  maxConcurrentForwards: number;
  /** DNS worker threads (src/dns/worker-pool.ts); 0 answers on the main thread. */
  dnsWorkers: number;
  /** How often the store's revision is polled, ms: bounds how fast a CNI ADD is served. */
  watchIntervalMs: number;
  /** How often listeners that could not bind (address not on the host yet) are retried, ms. */
  retryIntervalMs: number;
  firewall: boolean;
  /** UDP queries a second one client address may send a network's DNS server (0: no limit). */
  dnsClientRate: number;
}

export class DaemonUsageError extends ShoalError {
  constructor(message: string) {
    super('EUSAGE', message);
  }
}

export const DAEMON_HELP = `Usage: shoal daemon [OPTIONS]

Runs the Shoal daemon: the DNS server on every Shoal network's gateway, Prometheus metrics,
and the control API. Follows the state store, so CNI ADD/DEL show up without a restart.

Options:
  --metrics-addr HOST:PORT   serve GET /metrics here (default ${DEFAULT_METRICS_ADDR}; "off" disables)
  --socket PATH              control API socket, mode 0600 (default $SHOAL_RUN_DIR/shoald.sock,
                             run dir default ${DEFAULT_RUN_DIR})
  --pid-file PATH            pid file; refuses to start while another live daemon holds it
                             (default <run dir>/shoald.pid)
  --state-dir DIR            state directory (default $SHOAL_STATE_DIR, else /var/lib/shoal)
  --store SPEC               sqlite:<file or state dir> (default sqlite:<state dir>/${STORE_FILE_NAME}),
                             or etcd://host:port[,host:port...]: join that cluster (the local
                             state stays in sqlite:<state dir>/${STORE_FILE_NAME})
  --node NAME                node name in the cluster (default: the hostname; etcd only)
  --advertise-addr IP        this node's address for other nodes (default: the source address
                             of the default route; etcd only)
  --node-ttl SECONDS         TTL of the node lease (default ${DEFAULT_NODE_TTL_SECONDS}; etcd only)
  --block-grace SECONDS      how long a dead node's overlay address blocks stay reserved before
                             they are freed (default ${DEFAULT_BLOCK_GRACE_SECONDS}; etcd only)
  --log-level LEVEL          ${LOG_LEVELS.join(', ')} (default info); JSON lines on stdout
  --dns-port PORT            DNS port on each gateway (default 53)
  --resolv-conf PATH         upstreams for networks without their own (default /etc/resolv.conf)
  --local-ttl SECONDS        TTL of container answers (default 5)
  --max-concurrent-forwards N  upstream queries in flight before REFUSED, per DNS
                               worker (default 150)
  --dns-workers N              DNS worker threads, each with its own sockets (default 2; 0: main thread)
  --watch-interval MS        store poll interval (default 25)
  --no-firewall              do not add the DNS accept rules to the "inet shoal" table
  --dns-client-rate N        UDP DNS queries per second one client address may send; the kernel
                             drops the excess before it reaches the server, which bounds the work
                             one container can make it do (default ${DEFAULT_DNS_CLIENT_RATE};
                             0: no limit; needs the firewall rules)
  -h, --help                 this text

Signals: SIGTERM/SIGINT stop gracefully, SIGHUP reloads (re-reads the store, resyncs listeners
and firewall rules).
`;

function bad(flag: string, value: unknown, problem: string): never {
  throw new DaemonUsageError(`invalid flag "--${flag}": ${JSON.stringify(value)} ${problem}`);
}

/** `127.0.0.1:9590`, `[::1]:9590`, `:9590` (all addresses). */
export function parseHostPort(flag: string, text: string): HostPort {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text);
  if (!m) bad(flag, text, 'is not HOST:PORT (like 127.0.0.1:9590 or [::1]:9590)');
  const host = m[1] ?? (m[2] === '' ? '0.0.0.0' : (m[2] as string));
  const port = Number(m[3]);
  if (port < 1 || port > 65535) bad(flag, text, 'has a port outside 1-65535');
  if (m[1] !== undefined && isIP(host) !== 6) bad(flag, text, 'has an invalid IPv6 address');
  return { host, port };
}

function intFlag(flag: string, text: string | undefined, def: number, min: number, max: number): number {
  if (text === undefined) return def;
  if (!/^\d+$/.test(text)) bad(flag, text, 'is not a whole number');
  const n = Number(text);
  if (n < min || n > max) bad(flag, text, `must be ${min}-${max}`);
  return n;
}

/** `sqlite:<path>`: a directory means "the store file in it"; anything else is the file. */
export function parseStoreSpec(text: string, isDirectory: (p: string) => boolean): StoreSpec {
  if (text.startsWith('etcd://')) {
    const endpoints = text.slice('etcd://'.length).split(',').filter(Boolean);
    if (endpoints.length === 0) bad('store', text, 'names no etcd endpoint');
    return { kind: 'etcd', endpoints };
  }
  if (!text.startsWith('sqlite:')) bad('store', text, 'must be sqlite:<path> or etcd://host:port[,host:port...]');
  const p = text.slice('sqlite:'.length);
  if (p === '') bad('store', text, 'names no path');
  const abs = path.resolve(p);
  return { kind: 'sqlite', file: isDirectory(abs) ? path.join(abs, STORE_FILE_NAME) : abs };
}

/** A node name: what `nodes/<name>` and block owners carry (a DNS label, like a hostname). */
const NODE_NAME = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

export function parseDaemonArgs(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
  isDirectory: (p: string) => boolean = () => false,
  hostname: () => string = () => 'localhost',
): { help: true } | { help: false; options: DaemonOptions } {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: false,
      strict: true,
      options: {
        help: { type: 'boolean', short: 'h' },
        'metrics-addr': { type: 'string' },
        socket: { type: 'string' },
        'pid-file': { type: 'string' },
        'state-dir': { type: 'string' },
        store: { type: 'string' },
        'log-level': { type: 'string' },
        'dns-port': { type: 'string' },
        'resolv-conf': { type: 'string' },
        'local-ttl': { type: 'string' },
        'max-concurrent-forwards': { type: 'string' },
        'dns-workers': { type: 'string' },
        'watch-interval': { type: 'string' },
        'no-firewall': { type: 'boolean' },
        'dns-client-rate': { type: 'string' },
        node: { type: 'string' },
        'advertise-addr': { type: 'string' },
        'node-ttl': { type: 'string' },
        'block-grace': { type: 'string' },
      },
    });
  } catch (err) {
    throw new DaemonUsageError(`${(err as Error).message}; run "shoal daemon --help"`);
  }
  const v = parsed.values;
  if (v.help) return { help: true };
  const runDir = path.resolve(env['SHOAL_RUN_DIR'] || DEFAULT_RUN_DIR);
  const stateDir = path.resolve(resolveStateDir(v['state-dir'], env));
  const metricsText = v['metrics-addr'] ?? DEFAULT_METRICS_ADDR;
  const level = v['log-level'] ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(level)) bad('log-level', level, `must be one of ${LOG_LEVELS.join(', ')}`);
  const localStore = { kind: 'sqlite' as const, file: path.join(stateDir, STORE_FILE_NAME) };
  const spec = v.store === undefined ? localStore : parseStoreSpec(v.store, isDirectory);
  let store: StoreSpec = spec;
  let cluster: ClusterSpec | undefined;
  if (spec.kind === 'etcd') {
    let endpoints: string[];
    try {
      endpoints = parseEtcdUrl(v.store as string);
    } catch (err) {
      if (err instanceof StoreUrlError) bad('store', v.store, err.message.replace(/^invalid store "[^"]*": /, 'is invalid: '));
      throw err;
    }
    const node = v.node ?? hostname().split('.')[0]!;
    if (!NODE_NAME.test(node)) bad('node', node, v.node === undefined ? 'is not a valid node name (it is the hostname; pass --node NAME)' : 'is not a valid node name (letters, digits and "-", at most 63)');
    const advertise = v['advertise-addr'];
    if (advertise !== undefined && isIP(advertise) === 0) bad('advertise-addr', advertise, 'is not an IP address');
    store = localStore;
    cluster = { endpoints, node, advertiseAddr: advertise, nodeTtlSeconds: intFlag('node-ttl', v['node-ttl'], DEFAULT_NODE_TTL_SECONDS, 1, 3600),
      blockGraceSeconds: intFlag('block-grace', v['block-grace'], DEFAULT_BLOCK_GRACE_SECONDS, 0, 30 * 86400),
    };
  } else {
    for (const flag of ['node', 'advertise-addr', 'node-ttl', 'block-grace'] as const) {
      if (v[flag] !== undefined) bad(flag, v[flag], 'needs --store etcd://...: only a daemon that joins a cluster has a node');
    }
  }
  return {
    help: false,
    options: {
      metrics: metricsText === 'off' ? undefined : parseHostPort('metrics-addr', metricsText),
      socket: path.resolve(v.socket ?? path.join(runDir, 'shoald.sock')),
      runDir,
      stateDir,
      store,
      cluster,
      logLevel: level as DaemonLogLevel,
      dnsPort: intFlag('dns-port', v['dns-port'], 53, 1, 65535),
      pidFile: path.resolve(v['pid-file'] ?? path.join(runDir, 'shoald.pid')),
      resolvConf: v['resolv-conf'] ?? '/etc/resolv.conf',
      localTtl: intFlag('local-ttl', v['local-ttl'], 5, 0, 86400),
      maxConcurrentForwards: intFlag('max-concurrent-forwards', v['max-concurrent-forwards'], 150, 1, 1_000_000),
      dnsWorkers: intFlag('dns-workers', v['dns-workers'], 2, 0, 64),
      watchIntervalMs: intFlag('watch-interval', v['watch-interval'], 25, 5, 60_000),
      retryIntervalMs: 1000,
      firewall: !v['no-firewall'],
      dnsClientRate: intFlag('dns-client-rate', v['dns-client-rate'], DEFAULT_DNS_CLIENT_RATE, 0, 10_000_000),
    },
  };
}
