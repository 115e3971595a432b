/**
 * The service model (issue 16): a name on a network, how clients find it (a VIP or round-robin
 * DNS), the ports it publishes, how its replicas are checked and balanced. Replicas are not part
 * of the record: they are the endpoints on the network that carry the service name as an alias
 * (read from the DNS registry, so any runtime's ADD with `--network-alias NAME` joins, and a
 * remote node's endpoints can join the same way once they are mirrored into the registry).
 *
 * Pure: parsing and validation of what the CLI sends, no store, no kernel.
 */
import { ShoalError } from '../errors.js';

export type EndpointMode = 'vip' | 'dnsrr';
export type LbPolicy = 'rr' | 'random' | 'leastconn' | 'source-hash';
export type LbMode = 'kernel' | 'proxy';
export type PortProtocol = 'tcp' | 'udp';

export interface ServicePort {
  /** Host port it answers on (the routing mesh). */
  published: number;
  /** Port on the replicas (and on the VIP). */
  target: number;
  protocol: PortProtocol;
  /** `ingress` (default): every node; `host`: only nodes running a replica, to local ones. */
  mode: 'ingress' | 'host';
}

export interface HealthCheck {
  kind: 'tcp' | 'http' | 'none';
  /** HTTP GET path (kind http). */
  path?: string;
  intervalMs: number;
  timeoutMs: number;
  /** Consecutive successes that bring a down replica back (HAProxy `rise`). */
  rise: number;
  /** Consecutive failures that take an up replica out (HAProxy `fall`). */
  fall: number;
}

export interface ServiceSpec {
  name: string;
  network: string;
  endpointMode: EndpointMode;
  ports: ServicePort[];
  health: HealthCheck;
  lbPolicy: LbPolicy;
  lbMode: LbMode;
  proxyProtocol?: 'v1' | 'v2';
  /**
   * How long connections to a replica that left rotation may go on (ms); then the proxy closes
   * them and the kernel path deletes their conntrack entries. Absent: DRAIN_TIMEOUT_DEFAULT_MS
   * (records written before it existed have none).
   */
  drainTimeoutMs?: number;
  /** Client affinity: a client address keeps its replica for `timeoutS` after its last new connection (kernel path: timed sets; proxy: the pool's table). */
  affinity?: { kind: 'client-ip'; timeoutS: number };
  /** Proxy path: open connections per backend (HAProxy server `maxconn`); absent = no limit. */
  maxConn?: number;
  /** Proxy path, with maxConn: clients that may wait for a free slot per service port (absent: MAX_QUEUE_DEFAULT). */
  maxQueue?: number;
  /** Proxy path, with maxConn: how long a client waits in that queue (HAProxy `timeout queue`; absent: QUEUE_TIMEOUT_DEFAULT_MS). */
  queueTimeoutMs?: number;
  /** Proxy path: a backend entering rotation ramps from a small share to its full weight over this (HAProxy `slowstart`). */
  slowStartMs?: number;
}

export interface ServiceRecord extends ServiceSpec {
  /** Virtual IPs (one per address family of the network), vip mode only. */
  vips: string[];
  created: string;
  updated: string;
}

/** HAProxy's defaults: `inter 2s`, `rise 2`, `fall 3`; the timeout defaults to the interval. */
export const HEALTH_DEFAULTS = { intervalMs: 2000, rise: 2, fall: 3 } as const;

/** Draining connections are ended after this long by default (Envoy's drain time is 600 s; a
 * rolling update wants old replicas free well before that, HAProxy's hard-stop-after style). */
export const DRAIN_TIMEOUT_DEFAULT_MS = 30_000;
/** kube-proxy's default for sessionAffinity ClientIP (timeoutSeconds 10800). */
export const AFFINITY_DEFAULT_S = 10_800;

/** `none`, `client-ip`, `client-ip:TIMEOUT` (e.g. 30s, 10m, 3h; 1 s to 24 h). */
export function parseAffinity(text: string): ServiceSpec['affinity'] | 'none' {
  if (text === 'none') return 'none';
  const m = /^client-ip(?::(\d+)(s|m|h)?)?$/.exec(text.trim());
  if (!m) return bad('affinity', text, 'expected none, client-ip or client-ip:TIMEOUT (e.g. client-ip:10m)');
  const n = m[1] === undefined ? AFFINITY_DEFAULT_S : Number(m[1]) * (m[2] === 'h' ? 3600 : m[2] === 'm' ? 60 : 1);
  if (!(n >= 1 && n <= 86_400)) bad('affinity', text, 'the timeout must be between 1s and 24h');
  return { kind: 'client-ip', timeoutS: n };
}

/**
 * Waiting clients per service port when every backend is at --max-conn: each holds a socket
 * (a file descriptor) while it waits, so the queue is bounded; beyond it clients are refused.
 */
export const MAX_QUEUE_DEFAULT = 256;
/** HAProxy's examples use `timeout queue` of a few seconds: longer, a client has given up anyway. */
export const QUEUE_TIMEOUT_DEFAULT_MS = 5000;

export const maxQueueOf = (s: Pick<ServiceSpec, 'maxQueue'>): number => s.maxQueue ?? MAX_QUEUE_DEFAULT;
export const queueTimeoutOf = (s: Pick<ServiceSpec, 'queueTimeoutMs'>): number => s.queueTimeoutMs ?? QUEUE_TIMEOUT_DEFAULT_MS;

export const drainTimeoutOf = (s: Pick<ServiceSpec, 'drainTimeoutMs'>): number => s.drainTimeoutMs ?? DRAIN_TIMEOUT_DEFAULT_MS;

export class ServiceError extends ShoalError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EINVAL', message, options);
  }
}

/** A DNS label: the service name is answered as a name, so it must be one. */
export const SERVICE_NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

const bad = (what: string, value: string, why: string): never => {
  throw new ServiceError(`invalid ${what} "${value}": ${why}`);
};

export function checkServiceName(name: string): string {
  if (!SERVICE_NAME_RE.test(name)) bad('service name', name, 'expected a DNS label: lower-case letters, digits and "-", at most 63');
  return name;
}

/** "2s", "500ms", "1m", or a bare number of milliseconds. */
export function parseDuration(text: string, what = 'duration'): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (!m) return bad(what, text, 'expected e.g. "2s" or "500ms"');
  const n = Number(m[1]);
  const ms = m[2] === 's' ? n * 1000 : m[2] === 'm' ? n * 60_000 : n;
  if (!(ms >= 50 && ms <= 3_600_000)) bad(what, text, 'must be between 50ms and 1h');
  return Math.round(ms);
}

function port(text: string, what: string, spec: string): number {
  const n = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= 65535)) bad('port spec', spec, `${what} must be 1-65535`);
  return n;
}

/** `[mode=host,]PUBLISHED:TARGET[/tcp|udp]`. */
export function parsePortSpec(spec: string): ServicePort {
  let rest = spec.trim();
  let mode: ServicePort['mode'] = 'ingress';
  const m = /^mode=(host|ingress),(.*)$/.exec(rest);
  if (m) {
    mode = m[1] as ServicePort['mode'];
    rest = m[2]!;
  }
  let protocol: PortProtocol = 'tcp';
  const slash = rest.lastIndexOf('/');
  if (slash >= 0) {
    const p = rest.slice(slash + 1);
    if (p !== 'tcp' && p !== 'udp') bad('port spec', spec, 'protocol must be tcp or udp');
    protocol = p as PortProtocol;
    rest = rest.slice(0, slash);
  }
  const parts = rest.split(':');
  if (parts.length !== 2) bad('port spec', spec, 'expected [mode=host,]PUBLISHED:TARGET[/tcp|udp]');
  return { published: port(parts[0]!, 'published', spec), target: port(parts[1]!, 'target', spec), protocol, mode };
}

/** `tcp`, `http:/path`, `none`. */
export function parseHealthKind(text: string): Pick<HealthCheck, 'kind' | 'path'> {
  if (text === 'tcp' || text === 'none') return { kind: text };
  const m = /^http:(\/\S*)$/.exec(text);
  if (m) return { kind: 'http', path: m[1]! };
  return bad('health check', text, 'expected tcp, http:/PATH or none');
}

/** What `service create`/`update` accept; absent fields keep their default (or current value). */
export interface ServiceInput {
  name: string;
  network?: string;
  endpointMode?: string;
  ports?: string[];
  health?: string;
  healthInterval?: string;
  healthTimeout?: string;
  healthRise?: string;
  healthFall?: string;
  lbPolicy?: string;
  lbMode?: string;
  proxyProtocol?: string;
  drainTimeout?: string;
  affinity?: string;
  /** `0` removes the limit. */
  maxConn?: string;
  maxQueue?: string;
  queueTimeout?: string;
  /** `0` turns slow start off. */
  slowStart?: string;
}

function oneOf<T extends string>(what: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) bad(what, value, `expected ${allowed.join(', ')}`);
  return value as T;
}

function count(what: string, text: string): number {
  const n = /^\d{1,2}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= 99)) bad(what, text, 'expected 1-99');
  return n;
}

/** A whole number in [min, max] (a limit: `0` may mean none where min is 0). */
function whole(what: string, text: string, min: number, max: number): number {
  const n = /^\d{1,7}$/.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!(n >= min && n <= max)) bad(what, text, `expected ${min}-${max}`);
  return n;
}

/** Sets or (undefined) removes an optional field. */
function setOptional<K extends keyof ServiceSpec>(spec: ServiceSpec, key: K, value: ServiceSpec[K] | undefined): void {
  if (value === undefined) delete spec[key];
  else spec[key] = value;
}

/** --max-conn, --max-queue, --queue-timeout, --slow-start on top of `base` (0 removes a limit or the ramp). */
function applyProxyLimits(spec: ServiceSpec, input: ServiceInput, base: ServiceSpec | undefined): void {
  const maxConn = input.maxConn !== undefined ? whole('max conn', input.maxConn, 0, 1_000_000) || undefined : base?.maxConn;
  setOptional(spec, 'maxConn', maxConn);
  // The queue settings belong to the limit: kept with it, dropped when it is removed, unless given now.
  const keep = maxConn !== undefined;
  setOptional(spec, 'maxQueue', input.maxQueue !== undefined ? whole('max queue', input.maxQueue, 0, 100_000) : keep ? base?.maxQueue : undefined);
  setOptional(spec, 'queueTimeoutMs', input.queueTimeout !== undefined ? parseDuration(input.queueTimeout, 'queue timeout') : keep ? base?.queueTimeoutMs : undefined);
  const slow = input.slowStart !== undefined ? (input.slowStart.trim() === '0' ? undefined : parseDuration(input.slowStart, 'slow start')) : base?.slowStartMs;
  setOptional(spec, 'slowStartMs', slow);
  const name = spec.name;
  if (spec.maxConn === undefined && (spec.maxQueue !== undefined || spec.queueTimeoutMs !== undefined)) {
    throw new ServiceError(`failed to configure service "${name}": --${spec.maxQueue !== undefined ? 'max-queue' : 'queue-timeout'} needs --max-conn (clients wait only for a backend at its limit)`);
  }
  // nftables picks per packet with numgen/jhash: it neither counts a backend's connections nor weighs it by time.
  if (spec.lbMode === 'kernel' && spec.maxConn !== undefined) throw new ServiceError(`failed to configure service "${name}": --max-conn needs --lb-mode proxy`);
  if (spec.lbMode === 'kernel' && spec.slowStartMs !== undefined) throw new ServiceError(`failed to configure service "${name}": --slow-start needs --lb-mode proxy`);
}

/** Applies `input` on top of `base` (the current spec on update, undefined on create). */
export function buildSpec(input: ServiceInput, base?: ServiceSpec): ServiceSpec {
  const name = checkServiceName(input.name);
  const network = input.network ?? base?.network;
  if (!network) throw new ServiceError(`failed to create service "${name}": --network is required`);
  if (base && input.network !== undefined && input.network !== base.network) throw new ServiceError(`failed to update service "${name}": its network cannot change (remove and create it)`);
  const ports = input.ports ? input.ports.map(parsePortSpec) : (base?.ports ?? []);
  const seen = new Set<string>();
  for (const p of ports) {
    const key = `${p.protocol}/${p.published}`;
    if (seen.has(key)) bad('port spec', `${p.published}/${p.protocol}`, 'published twice');
    seen.add(key);
  }
  const kind = input.health !== undefined ? parseHealthKind(input.health) : base ? { kind: base.health.kind, path: base.health.path } : ports.length ? { kind: 'tcp' as const } : { kind: 'none' as const };
  if (kind.kind !== 'none' && ports.length === 0) throw new ServiceError(`failed to configure service "${name}": a ${kind.kind} health check needs a port (-p) to check`);
  const intervalMs = input.healthInterval !== undefined ? parseDuration(input.healthInterval, 'health interval') : (base?.health.intervalMs ?? HEALTH_DEFAULTS.intervalMs);
  const timeoutMs = input.healthTimeout !== undefined ? parseDuration(input.healthTimeout, 'health timeout') : Math.min(base?.health.timeoutMs ?? intervalMs, intervalMs);
  const health: HealthCheck = {
    ...kind,
    intervalMs,
    timeoutMs,
    rise: input.healthRise !== undefined ? count('health rise', input.healthRise) : (base?.health.rise ?? HEALTH_DEFAULTS.rise),
    fall: input.healthFall !== undefined ? count('health fall', input.healthFall) : (base?.health.fall ?? HEALTH_DEFAULTS.fall),
  };
  if (health.path === undefined) delete health.path;
  const spec: ServiceSpec = {
    name,
    network,
    endpointMode: input.endpointMode !== undefined ? oneOf('endpoint mode', input.endpointMode, ['vip', 'dnsrr'] as const) : (base?.endpointMode ?? 'vip'),
    ports,
    health,
    lbPolicy: input.lbPolicy !== undefined ? oneOf('lb policy', input.lbPolicy, ['rr', 'random', 'leastconn', 'source-hash'] as const) : (base?.lbPolicy ?? 'rr'),
    lbMode: input.lbMode !== undefined ? oneOf('lb mode', input.lbMode, ['kernel', 'proxy'] as const) : (base?.lbMode ?? 'kernel'),
  };
  const pp = input.proxyProtocol ?? base?.proxyProtocol;
  if (pp !== undefined) spec.proxyProtocol = oneOf('proxy protocol', pp, ['v1', 'v2'] as const);
  const drain = input.drainTimeout !== undefined ? parseDuration(input.drainTimeout, 'drain timeout') : base?.drainTimeoutMs;
  if (drain !== undefined) spec.drainTimeoutMs = drain;
  const affinity = input.affinity !== undefined ? parseAffinity(input.affinity) : base?.affinity;
  if (affinity !== undefined && affinity !== 'none') spec.affinity = affinity;
  if (base && spec.endpointMode !== base.endpointMode) throw new ServiceError(`failed to update service "${name}": the endpoint mode cannot change (remove and create it)`);
  // The kernel path balances with numgen/jhash: it cannot count connections or speak PROXY.
  if (spec.lbMode === 'kernel' && spec.lbPolicy === 'leastconn') throw new ServiceError(`failed to configure service "${name}": --lb-policy leastconn needs --lb-mode proxy`);
  if (spec.lbMode === 'kernel' && spec.proxyProtocol) throw new ServiceError(`failed to configure service "${name}": --proxy-protocol needs --lb-mode proxy`);
  applyProxyLimits(spec, input, base);
  return spec;
}
