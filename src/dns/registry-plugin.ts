/**
 * The shoal-dns CNI plugin's verbs: a chained plugin that records the container in the DNS
 * registry (src/dns/registry.ts) and hands the network's gateway out as the nameserver. It only
 * talks to the store, never to the daemon, so it works while the daemon is down; the daemon
 * follows the store and answers within one poll interval.
 *
 * Config (besides the base fields; `stateDir` picks the store like every Shoal plugin):
 *
 *   {"type": "shoal-dns", "domainName": "dns.shoal", "hosts": {"db.internal": ["192.0.2.10"]},
 *    "upstreams": ["192.0.2.53", "192.0.2.54:5353"], "ttl": 5}
 */
import * as v from 'valibot';
import { ipAddress, parseConfig, pluginConfig } from '../../cni/config.js';
import { CniCode, CniError, invalidConfig } from '../../cni/errors.js';
import type { CniRequest } from '../../cni/skel.js';
import type { CniResult } from '../../cni/types.js';
import { AttachmentUnknownError } from '../errors.js';
import { openStateStore, resolveStateDir } from '../store/open.js';
import type { Store } from '../store/store.js';
import { parseUpstream } from './ip.js';
import { buildEndpoint, buildNetwork, dnsNameProblem, EndpointInputError, mergeDnsResult, refusedAliases, type DnsPluginConfig } from './registry-build.js';
import { gcEndpoints, getEndpoint, getNetwork, registerEndpoint, unregisterEndpoint } from './registry.js';

const hostName = v.pipe(v.string(), v.check((s) => dnsNameProblem(s) === undefined, 'is not a valid DNS name'));

const schema = pluginConfig({
  domainName: v.optional(hostName),
  hosts: v.optional(v.record(hostName, v.union([ipAddress, v.array(ipAddress)]))),
  upstreams: v.optional(v.array(v.pipe(v.string(), v.check((s) => parseUpstream(s) !== undefined, 'is not an address, "ip:port" or "[v6]:port"')))),
  ttl: v.optional(v.pipe(v.number(), v.integer('must be a whole number'), v.minValue(0, 'must be 0 or more'), v.maxValue(86400, 'must be at most 86400'))),
});

function config(req: CniRequest): DnsPluginConfig & { stateDir?: string | undefined } {
  return parseConfig(schema, req.config);
}

async function store(stateDir: string | undefined): Promise<Store> {
  return openStateStore(resolveStateDir(stateDir));
}

function requirePrevResult(req: CniRequest): CniResult {
  if (!req.prevResult) {
    throw new CniError(
      CniCode.InvalidNetworkConfig,
      'invalid network config: field "prevResult" is required: shoal-dns must be chained after a plugin that assigns addresses',
    );
  }
  return req.prevResult;
}

/** Input problems (no name, no address, no gateway) are config problems for the runtime. */
function asCniError<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof EndpointInputError) throw new CniError(CniCode.InvalidNetworkConfig, err.message);
    throw err;
  }
}

function inputsOf(req: CniRequest, prevResult: CniResult) {
  return {
    network: req.config.name,
    containerId: req.containerId,
    ifname: req.ifname,
    cniArgs: req.args,
    args: req.config.args,
    runtimeConfig: req.config.runtimeConfig,
    prevResult,
  };
}

export async function add(req: CniRequest): Promise<CniResult> {
  const conf = config(req);
  const prevResult = requirePrevResult(req);
  const endpoint = asCniError(() => buildEndpoint(inputsOf(req, prevResult)));
  const network = asCniError(() => buildNetwork(req.config.name, conf, prevResult));
  await registerEndpoint(await store(conf.stateDir), network, endpoint);
  req.log.info({ name: endpoint.name, aliases: endpoint.aliases, ipv4: endpoint.ipv4, ipv6: endpoint.ipv6 }, 'registered DNS endpoint');
  // Not fatal (the runtime chose them, the container works without them), but not silent.
  for (const r of refusedAliases(req.config.runtimeConfig, req.config.name)) req.log.warn({ alias: r.alias, problem: r.problem }, 'DNS alias not registered: not a DNS name');
  return mergeDnsResult(prevResult, network);
}

export async function del(req: CniRequest): Promise<void> {
  // DEL must succeed whatever the config's own fields say, so only stateDir is read.
  const stateDir = typeof req.config.stateDir === 'string' ? req.config.stateDir : undefined;
  const removed = await unregisterEndpoint(await store(stateDir), { network: req.config.name, containerId: req.containerId, ifname: req.ifname });
  if (removed) req.log.info({}, 'removed DNS endpoint');
}

export async function check(req: CniRequest): Promise<void> {
  const conf = config(req);
  const prevResult = requirePrevResult(req);
  const want = asCniError(() => buildEndpoint(inputsOf(req, prevResult)));
  const s = await store(conf.stateDir);
  const ref = { network: req.config.name, containerId: req.containerId, ifname: req.ifname };
  const have = await getEndpoint(s, ref);
  const name = `${ref.network}/${ref.containerId}/${ref.ifname}`;
  if (!have) throw new AttachmentUnknownError(`failed to check "${name}": no DNS record for container ${ref.containerId} interface "${ref.ifname}" (never added, or deleted)`);
  if (!(await getNetwork(s, ref.network))) throw new CniError(CniCode.Internal, `failed to check "${name}": the network has no DNS record`);
  const same = (a: string[] | undefined, b: string[] | undefined) => JSON.stringify([...(a ?? [])].sort()) === JSON.stringify([...(b ?? [])].sort());
  if (have.name !== want.name || !same(have.aliases, want.aliases) || !same(have.ipv4, want.ipv4) || !same(have.ipv6, want.ipv6)) {
    throw new CniError(
      CniCode.Internal,
      `failed to check "${name}": the DNS record differs from this container`,
      JSON.stringify({ stored: have, expected: want }),
    );
  }
}

export async function gc(req: CniRequest): Promise<void> {
  // As shoal-ipam: a request without the list must not read as "nothing is valid".
  if (req.config['cni.dev/valid-attachments'] === undefined && req.config['cni.dev/attachments'] === undefined) {
    throw invalidConfig('cni.dev/valid-attachments', undefined, 'is required for GC');
  }
  const stateDir = typeof req.config.stateDir === 'string' ? req.config.stateDir : undefined;
  const valid = (req.validAttachments ?? []).map((a) => ({ containerId: a.containerID, ifname: a.ifname }));
  const removed = await gcEndpoints(await store(stateDir), req.config.name, valid);
  if (removed.length) req.log.info({ removed }, 'removed stale DNS endpoints');
}
