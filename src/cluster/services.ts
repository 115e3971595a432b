/**
 * Services of overlay networks live in etcd (DESIGN §7, §8), so every node's daemon acts on them:
 * the same `services/<name>` records as the local store holds, under the cluster's prefix. The
 * CLI sends create/update/rm for an overlay network to its daemon, which writes here.
 *
 * A VIP must be unique across the cluster and never handed to a container on any node. It comes
 * from address blocks owned by the pseudo-owner `@services` (blocks.ts): no node's plugins
 * allocate from them, and the reaper never frees them. The VIPs in use are the `vips` of the
 * service records themselves, so taking one and writing the record is one etcd transaction, and
 * removing the record frees it.
 */
import { IpAddr, IpPrefix } from '../addr.js';
import type { ServiceInput, ServiceRecord } from '../service/model.js';
import { ServiceError } from '../service/model.js';
import { createService, listServices, removeService, updateService } from '../service/store.js';
import type { Store, Txn } from '../store/store.js';
import { claimBlockIn, listBlocks, SERVICE_BLOCKS_OWNER } from './blocks.js';
import { clusterNetworkKey, type ClusterNetwork } from './networks.js';
import { subnetGateway } from '../network/model.js';

export { listServices as listClusterServices };

/** Addresses of `block` a VIP may take: not the subnet's network, broadcast (IPv4) or gateway. */
function* usable(block: IpPrefix, subnet: IpPrefix, gateway: IpAddr): Generator<IpAddr> {
  for (let i = 0n; i < block.size; i++) {
    const a = block.nth(i);
    if (a.equals(subnet.network()) || a.equals(gateway)) continue;
    if (subnet.family === 4 && a.equals(subnet.last())) continue;
    yield a;
  }
}

async function vipOf(txn: Txn, network: string, spec: ClusterNetwork['subnets'][number], taken: ReadonlySet<string>): Promise<string> {
  const subnet = IpPrefix.parse(spec.subnet);
  const gateway = subnetGateway(spec).addr;
  const own = (await listBlocks(txn, network)).filter((b) => b.node === SERVICE_BLOCKS_OWNER).map((b) => IpPrefix.parse(b.cidr));
  for (const block of own.filter((b) => b.family === subnet.family)) {
    for (const a of usable(block, subnet, gateway)) if (!taken.has(a.toString())) return a.toString();
  }
  const block = await claimBlockIn(txn, network, subnet, SERVICE_BLOCKS_OWNER);
  const first = usable(block, subnet, gateway).next();
  if (first.done) throw new ServiceError(`failed to take a VIP on "${network}": block ${block.toString()} has no usable address`);
  return first.value.toString();
}

/** The VIP allocator of overlay networks (createService's `vipsFor`): one address per subnet. */
async function clusterVips(txn: Txn, name: string, network: string): Promise<string[]> {
  const kv = await txn.get(clusterNetworkKey(network));
  if (!kv) throw new ServiceError(`failed to create service "${name}": no overlay network "${network}" in the cluster`);
  const net = JSON.parse(kv.value) as ClusterNetwork;
  const taken = new Set((await listServices(txn)).flatMap((s) => s.vips));
  const vips: string[] = [];
  for (const subnet of net.subnets) vips.push(await vipOf(txn, network, subnet, taken));
  return vips;
}

export function createClusterService(etcd: Store, input: ServiceInput, now = new Date()): Promise<ServiceRecord> {
  return createService(etcd, input, now, clusterVips);
}

export function updateClusterService(etcd: Store, input: ServiceInput, now = new Date()): Promise<ServiceRecord> {
  return updateService(etcd, input, now);
}

/** False when there was no such service. Its VIPs are free once the record is gone. */
export function removeClusterService(etcd: Store, name: string): Promise<boolean> {
  return removeService(etcd, name);
}
