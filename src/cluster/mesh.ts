/**
 * The routing mesh's cluster side (issue 16 across nodes): the services of overlay networks, read
 * from etcd with the rest of the cluster state, and this node's load-balancer endpoint on every
 * overlay network that has one (lb-endpoint.ts). The service engine (src/service/manager.ts)
 * runs these services like local ones; it asks here for the records and for the address it
 * SNATs to when a replica runs on another node.
 */
import type { Logger } from 'pino';
import type { IpAddr } from '../addr.js';
import type { RegistryEndpoint } from '../dns/registry.js';
import { allocateClaimingBlocks, heldBy, release } from '../ipam/allocator.js';
import { parseIpamConfig } from '../ipam/config.js';
import { withRtnl } from '../kernel/rtnl.js';
import { loadConflist } from '../network/manage.js';
import { getNetwork, type NetworkRecord } from '../network/model.js';
import type { ServiceRecord } from '../service/model.js';
import type { LbSnats } from '../service/nft-rules.js';
import type { Store } from '../store/store.js';
import { ensureLbEndpoint, lbAttachment, removeLbEndpoint, type LbEndpoint } from './lb-endpoint.js';
import { listClusterServices } from './services.js';

export interface ClusterMeshOptions {
  /** The node's local store (SQLite): the endpoint's address is allocated there, from this node's blocks. */
  local: Store;
  node: string;
  advertiseAddr: string;
  logger: Logger;
  /** A new block of `network` for this node (ClusterOverlay.claimBlock). */
  claimBlock(network: string, family: 4 | 6): Promise<string>;
}

/** Services that balance connections need the endpoint on their network; dnsrr without ports does not. */
const needsEndpoint = (s: ServiceRecord) => s.vips.length > 0 || s.ports.length > 0;

export class ClusterMesh {
  private records: ServiceRecord[] = [];
  private readonly endpoints = new Map<string, LbEndpoint>();

  constructor(private readonly o: ClusterMeshOptions) {}

  /** Re-reads `services/` (the overlay's refresh calls it with the rest). */
  async refresh(etcd: Store): Promise<void> {
    this.records = await listClusterServices(etcd);
  }

  services(): readonly ServiceRecord[] {
    return this.records;
  }

  /** The SNAT to this node's own addresses on `network`'s bridge, by family. */
  snat(network: string): LbSnats | undefined {
    const e = this.endpoints.get(network);
    if (!e) return undefined;
    return { ...(e.v4 ? { 4: { bridge: e.bridge, address: e.v4 } } : {}), ...(e.v6 ? { 6: { bridge: e.bridge, address: e.v6 } } : {}) };
  }

  /**
   * Ensures this node's endpoint on every overlay network in `overlays` that a service needs it
   * on, and returns them as registry endpoints to publish (so other nodes program them as peers).
   */
  async ensure(overlays: ReadonlySet<string>): Promise<RegistryEndpoint[]> {
    const wanted = new Set(this.records.filter((s) => overlays.has(s.network) && needsEndpoint(s)).map((s) => s.network));
    for (const network of wanted) {
      try {
        const net = await getNetwork(this.o.local, network);
        if (!net?.overlay) continue;
        const addresses = await this.addresses(net);
        this.endpoints.set(network, withRtnl(undefined, (nl) => ensureLbEndpoint(nl, net, this.o.advertiseAddr, addresses)));
      } catch (err) {
        this.o.logger.warn({ event: 'lb_endpoint_failed', network, err: (err as Error).message }, `failed to set up this node's load-balancer endpoint on "${network}": ${(err as Error).message}`);
      }
    }
    const { containerId, ifname } = lbAttachment(this.o.node);
    return [...this.endpoints.values()]
      .filter((e) => wanted.has(e.network))
      .map((e) => ({ network: e.network, containerId, ifname, name: `node-${this.o.node}`, ...(e.v4 ? { ipv4: [e.v4] } : {}), ...(e.v6 ? { ipv6: [e.v6] } : {}), mac: e.mac }));
  }

  /** The network left this node: the veth goes, the address is released with the network's local state. */
  forget(network: string, vni: number): void {
    this.endpoints.delete(network);
    withRtnl(undefined, (nl) => removeLbEndpoint(nl, network, vni));
  }

  /**
   * This node's addresses on `net`, one per family of its subnets: held from an earlier run, else
   * allocated from its blocks (a new block when they are full).
   */
  private async addresses(net: NetworkRecord): Promise<IpAddr[]> {
    const attachment = lbAttachment(this.o.node);
    const held = (await heldBy(this.o.local, net.name, attachment)) ?? [];
    const families = new Set(net.subnets.map((s) => (s.subnet.includes(':') ? 6 : 4)));
    if (held.length > 0 && [...families].every((f) => held.some((a) => a.family === f))) return held;
    // An endpoint made by a build that took only IPv4 lacks its IPv6 address: it is allocated
    // again, asking for the addresses it holds, so those stay the same.
    if (held.length > 0) await this.o.local.transaction((txn) => release(txn, net.name, attachment));
    const requested = held.map((address) => ({ address, text: address.toString(), field: 'lb endpoint' }));
    const config = parseIpamConfig((loadConflist(net).plugins[0] as { ipam?: unknown }).ipam);
    const allocations = await allocateClaimingBlocks(this.o.local, net.name, config, attachment, requested, (family) => this.o.claimBlock(net.name, family), 3);
    if (allocations.length === 0) throw new Error(`network "${net.name}" has no subnet for the load-balancer endpoint`);
    return allocations.map((a) => a.address);
  }
}
