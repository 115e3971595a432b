import type { Store } from '../store/store.js';
import { openStateStore, resolveStateDir } from '../store/open.js';
import { IpAddr, IpPrefix } from '../addr.js';
import { type Allocation, type Attachment, allocateClaimingBlocks, heldBy, nextFree, release } from './allocator.js';
import { type IpamConfig, type IpamRoute, parseIpamConfig, stateDirOf } from './config.js';
import { AttachmentUnknownError } from '../errors.js';
import { AllocationMismatchError, InvalidIpamConfigError, NetworkUnavailableError } from './errors.js';
import { collectGarbage, type GcReport } from './gc.js';
import { describeRangeSet } from './range.js';
import { requestedAddresses } from './requested.js';
import { type DnsConfig, readResolvConf } from './resolv.js';

/**
 * The shoal-ipam plugin's verbs as plain functions. `cni/bin/shoal-ipam.ts` wires them into the
 * CNI skel; the bridge plugin calls them directly, in-process, when its `ipam.type` is
 * `shoal-ipam` (DESIGN.md §6: no second Node start-up inside one ADD).
 */

export interface IpamRequest {
  containerId: string;
  ifname: string;
  netns?: string;
  /** The network config's `name`: allocations are kept per network. */
  network: string;
  /** The network config's `ipam` object, unvalidated. */
  ipam: unknown;
  runtimeConfig?: unknown;
  /** The network config's `args` (for `args.cni.ips`). */
  args?: unknown;
  /** CNI_ARGS, raw ("IgnoreUnknown=1;IP=10.0.0.5") or split into pairs. */
  cniArgs?: string | Record<string, string>;
  /** The network config's top-level `stateDir`; `ipam.stateDir` / `ipam.dataDir` win over it. */
  stateDir?: string;
}

/** A 1.x-shaped IPAM result; the CNI layer converts it to the config's cniVersion. */
export interface IpamResult {
  ips: Array<{ address: string; gateway?: string }>;
  routes: IpamRoute[];
  dns?: DnsConfig;
}

export interface IpamDeps {
  /** Use this store instead of opening the one the config / environment names. */
  store?: Store;
  env?: NodeJS.ProcessEnv;
}

type StoreLocation = { ipam: unknown; stateDir?: string };

async function storeFor(where: StoreLocation, deps: IpamDeps): Promise<Store> {
  return deps.store ?? openStateStore(resolveStateDir(stateDirOf(where.ipam) ?? where.stateDir, deps.env ?? process.env));
}

function toResult(config: IpamConfig, allocations: Allocation[], dns: DnsConfig | undefined): IpamResult {
  const result: IpamResult = {
    ips: allocations.map(({ address, range }) => ({
      address: IpPrefix.of(address, range.subnet.length).toString(),
      gateway: range.gateway.toString(),
    })),
    routes: config.routes.map((route) => ({ ...route })),
  };
  if (dns) result.dns = dns;
  return result;
}

export async function ipamAdd(request: IpamRequest, deps: IpamDeps = {}): Promise<IpamResult> {
  const config = parseIpamConfig(request.ipam, request.runtimeConfig);
  const requested = requestedAddresses(request.runtimeConfig, request.args, request.cniArgs);
  // Read resolv.conf before reserving anything, so a bad path fails without touching the store.
  const dns = config.resolvConf ? readResolvConf(config.resolvConf) : undefined;
  const store = await storeFor(request, deps);
  const attachment: Attachment = { containerId: request.containerId, ifname: request.ifname };
  // A cluster network whose node blocks are full gets one more block per try from the daemon.
  const claim = async (family: 4 | 6): Promise<void> => {
    const { requestBlock } = await import('./block-request.js');
    await requestBlock(config.blocks!.daemonSocket, request.network, family);
  };
  const allocations = await allocateClaimingBlocks(store, request.network, config, attachment, requested, claim, 4);
  return toResult(config, allocations, dns);
}

/** Releases the attachment's addresses. Unknown attachment: success. Needs only the state dir. */
export async function ipamDel(request: Pick<IpamRequest, 'containerId' | 'ifname' | 'network' | 'ipam' | 'stateDir'>, deps: IpamDeps = {}): Promise<void> {
  const store = await storeFor(request, deps);
  const attachment: Attachment = { containerId: request.containerId, ifname: request.ifname };
  await store.transaction((txn) => release(txn, request.network, attachment));
}

function addressesOfPrevResult(prevResult: unknown): Map<string, IpAddr> {
  const ips = (prevResult as { ips?: unknown } | undefined)?.ips;
  if (!Array.isArray(ips)) throw new InvalidIpamConfigError('prevResult.ips', ips, 'must be a list of {"address": CIDR}');
  const found = new Map<string, IpAddr>();
  ips.forEach((ip: unknown, i) => {
    const text = (ip as { address?: unknown } | null)?.address;
    const address = typeof text === 'string' ? IpPrefix.tryParse(text, { bareAddress: true })?.addr : undefined;
    if (!address) throw new InvalidIpamConfigError(`prevResult.ips[${i}].address`, text, 'is not an address in CIDR form');
    found.set(address.toString(), address);
  });
  return found;
}

/** CHECK: the attachment holds exactly the addresses prevResult lists, no more, no fewer. */
export async function ipamCheck(request: IpamRequest & { prevResult: unknown }, deps: IpamDeps = {}): Promise<void> {
  parseIpamConfig(request.ipam, request.runtimeConfig);
  const expected = addressesOfPrevResult(request.prevResult);
  const store = await storeFor(request, deps);
  const held = await heldBy(store, request.network, request);
  const who = `container ${request.containerId} interface ${request.ifname}`;
  // Nothing recorded for it: never added (or deleted), code 3, which a caller that sees some
  // other part of the attachment turns into a failed check (src/bridge/check-known.ts).
  if (!held) throw new AttachmentUnknownError(`${who} holds no addresses in network "${request.network}": never added, or deleted`);
  const heldText = new Set(held.map((a) => a.toString()));
  const missing = [...expected.keys()].filter((a) => !heldText.has(a));
  const extra = [...heldText].filter((a) => !expected.has(a));
  if (missing.length || extra.length) {
    const parts = [];
    if (missing.length) parts.push(`prevResult lists ${missing.join(', ')} which it does not hold`);
    if (extra.length) parts.push(`it holds ${extra.join(', ')} which prevResult does not list`);
    throw new AllocationMismatchError(`${who} in network "${request.network}": ${parts.join('; ')}`);
  }
}

/** GC: releases every allocation of the network not held by a valid attachment. */
export async function ipamGc(
  request: { network: string; ipam: unknown; stateDir?: string; validAttachments: readonly Attachment[] },
  deps: IpamDeps = {},
): Promise<GcReport> {
  const store = await storeFor(request, deps);
  return collectGarbage(store, request.network, request.validAttachments);
}

/** STATUS: success while every range set can still hand out an address. */
export async function ipamStatus(request: { network: string; ipam: unknown; stateDir?: string; runtimeConfig?: unknown }, deps: IpamDeps = {}): Promise<void> {
  const config = parseIpamConfig(request.ipam, request.runtimeConfig);
  const store = await storeFor(request, deps);
  // A cluster network's node gets another block when its blocks are full (or says why not, code 11).
  if (config.blocks) return;
  const exhausted: string[] = [];
  for (let i = 0; i < config.rangeSets.length; i++) {
    if ((await nextFree(store, request.network, config, i)) === undefined) exhausted.push(`range set ${i} (${describeRangeSet(config.rangeSets[i]!)})`);
  }
  if (exhausted.length)
    throw new NetworkUnavailableError(`network "${request.network}" has no free address left in ${exhausted.join(' and ')}`);
}
