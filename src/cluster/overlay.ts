/**
 * The daemon's side of overlay networks in a cluster (DESIGN §7), between etcd and this node:
 *
 * - networks: every `networks/<name>` in etcd becomes a local NetworkRecord with this node's
 *   facts and a shoal-vxlan conflist in the CNI config dir (so `network ls`, `shoal run`, podman
 *   and any runtime see it); a network gone from etcd is removed here (record, conflist, the
 *   VXLAN device, this node's block copies).
 * - blocks: the blocks etcd says this node holds are mirrored into the local store, where
 *   shoal-ipam allocates from them; `claimBlock` serves a plugin whose blocks are full; dead
 *   nodes' blocks are reaped after the grace.
 * - endpoints: this node's overlay containers are published under the node lease; every other
 *   node's are read back, programmed as VXLAN peers on this node's devices and merged into the
 *   DNS records, so names resolve on every node.
 *
 * etcd changes arrive through the session's watch and trigger a refresh (coalesced), which
 * re-reads `networks/`, `endpoints/` and this node's blocks, then asks the daemon to sync.
 */
import type { Logger } from 'pino';
import { Gauge, type Registry } from 'prom-client';
import path from 'node:path';
import fs from 'node:fs';
import { IpPrefix } from '../addr.js';
import type { RegistryContents } from '../dns/registry.js';
import { addrPrefix, blockFromKey, blockKey, blockPrefix } from '../ipam/keys.js';
import { findLink } from '../kernel/link.js';
import { withRtnl } from '../kernel/rtnl.js';
import { conflistFileName, renderConflist } from '../network/conflist.js';
import { writeFileAtomic, type TakenRanges } from '../network/manage.js';
import { getNetwork, listNetworks, networkKey, type NetworkRecord } from '../network/model.js';
import { removeOverlayDevice } from '../overlay/device.js';
import { vxlanDeviceName } from '../overlay/names.js';
import { overlayTarget, syncPeers } from '../overlay/peers.js';
import type { Store } from '../store/store.js';
import { StoreConflictError, StoreUnavailableError } from '../store/errors.js';
import { claimBlock, nodeBlocks, reapBlocks } from './blocks.js';
import { asPeers, asRegistryEndpoint, EndpointPublisher, ENDPOINTS_PREFIX, localClusterEndpoints, parseClusterEndpoint, type ClusterEndpoint } from './endpoints.js';
import { createClusterNetwork, listClusterNetworks, localRecordOf, removeClusterNetwork, type ClusterNetwork, type OverlayCreateInput } from './networks.js';
import type { ClusterSession } from './session.js';
import { encryptedMtu, OverlayIpsec } from './ipsec.js';
import { ClusterMesh } from './mesh.js';
import { isShoalHolder } from '../ipam/gc.js';
import { createClusterService, listClusterServices, removeClusterService, updateClusterService } from './services.js';
import type { ServiceInput, ServiceRecord } from '../service/model.js';

export interface ClusterOverlayOptions {
  session: ClusterSession;
  /** The node's local store (SQLite), where plugins read and write. */
  local: Store;
  advertiseAddr: string;
  stateDir: string;
  confDir: string;
  daemonSocket: string;
  blockGraceSeconds: number;
  registry: Registry;
  logger: Logger;
  /** Called after a refresh changed what the daemon serves (remote endpoints, networks). */
  onChange: () => void;
  /** This node's routes, which a new overlay subnet must not overlap. */
  hostRoutes: () => TakenRanges;
}

export class ClusterOverlay {
  private networks = new Map<string, ClusterNetwork>();
  private remote: ClusterEndpoint[] = [];
  private readonly publisher: EndpointPublisher;
  private refreshing: Promise<void> | undefined;
  private refreshAgain = false;
  private reapTimer: NodeJS.Timeout | undefined;
  private readonly claims = new Map<string, Promise<string>>();
  private readonly peerCounts = new Map<string, number>();
  private closed = false;
  private readonly ipsec: OverlayIpsec;
  /** Services of overlay networks and this node's load-balancer endpoints (the routing mesh). */
  readonly mesh: ClusterMesh;

  constructor(private readonly o: ClusterOverlayOptions) {
    this.mesh = new ClusterMesh({ local: o.local, node: o.session.node, advertiseAddr: o.advertiseAddr, logger: o.logger, claimBlock: (network, family) => this.claimBlock(network, family) });
    this.ipsec = new OverlayIpsec({ session: o.session, etcd: o.session.store as unknown as Store, advertiseAddr: o.advertiseAddr, registry: o.registry, logger: o.logger });
    this.publisher = new EndpointPublisher(o.session.lease, (err) => o.logger.debug({ event: 'cluster_endpoint_publish_failed', err: err.message }, 'publishing an endpoint failed; retrying on the next sync'));
    const gauge: Gauge<'network'> = new Gauge({
      name: 'shoal_overlay_peers',
      help: 'Remote endpoint addresses programmed as VXLAN peers on this node, per overlay network',
      labelNames: ['network'],
      registers: [o.registry],
      collect: (): void => {
        gauge.reset();
        for (const [network, n] of this.peerCounts) gauge.set({ network }, n);
      },
    });
  }

  /** The session's store is an EtcdStore, a full Store (the session narrows its type for its unit tests). */
  private get etcd(): Store {
    return this.o.session.store as unknown as Store;
  }

  private get node(): string {
    return this.o.session.node;
  }

  async start(): Promise<void> {
    this.o.session.onChange(() => void this.refresh());
    // After a lost lease the new one holds every key again (the lease writes them): publish anew.
    this.o.session.lease.on('granted', () => {
      this.publisher.reset();
      this.o.onChange();
    });
    await this.refresh();
    const every = Math.max(1000, Math.min(10_000, this.o.blockGraceSeconds * 250));
    this.reapTimer = setInterval(() => void this.reap(), every);
  }

  close(): void {
    this.closed = true;
    this.ipsec.close();
    if (this.reapTimer) clearInterval(this.reapTimer);
  }

  /** Re-reads etcd (coalesced: one more after the one in progress). Never rejects. */
  refresh(): Promise<void> {
    if (this.refreshing) {
      this.refreshAgain = true;
      return this.refreshing;
    }
    const run = async (): Promise<void> => {
      do {
        this.refreshAgain = false;
        try {
          await this.refreshOnce();
        } catch (err) {
          this.o.logger.warn({ event: 'cluster_refresh_failed', err: (err as Error).message }, `failed to read the cluster's networks and endpoints: ${(err as Error).message}`);
        }
      } while (this.refreshAgain && !this.closed);
    };
    this.refreshing = run().finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  private async refreshOnce(): Promise<void> {
    const networks = await listClusterNetworks(this.etcd);
    const parsed = (await this.etcd.list(ENDPOINTS_PREFIX)).map((kv) => ({ kv, e: parseClusterEndpoint(kv) }));
    const endpoints = parsed.flatMap((p) => p.e ?? []);
    this.publisher.seed(parsed.filter((p) => p.e?.node === this.node).map((p) => p.kv));
    this.networks = new Map(networks.map((n) => [n.name, n]));
    this.remote = endpoints.filter((e) => e.node !== this.node && this.networks.has(e.network));
    await this.mesh.refresh(this.etcd);
    await this.materialize();
    // Before containers get peers: an encrypted VNI's guard is up before its first packet.
    await this.ipsec.update(networks);
    await this.mirrorBlocks();
    this.o.onChange();
  }

  /** Local records and conflists equal to etcd's networks; the ones etcd no longer has removed. */
  private async materialize(): Promise<void> {
    for (const net of this.networks.values()) {
      const confFile = path.join(path.resolve(this.o.confDir), conflistFileName(net.name));
      const want = localRecordOf(net, { stateDir: this.o.stateDir, confFile, underlayAddress: this.o.advertiseAddr, daemonSocket: this.o.daemonSocket });
      if (net.encrypted && want.overlay && want.overlay.mtu === undefined) want.overlay.mtu = encryptedMtu(this.o.advertiseAddr);
      const have = await getNetwork(this.o.local, net.name);
      if (have && have.driver !== 'overlay') {
        this.o.logger.warn({ event: 'cluster_network_conflict', network: net.name }, `overlay network "${net.name}" is not available on this node: a local ${have.driver} network has that name`);
        continue;
      }
      if (have && JSON.stringify(have) === JSON.stringify(want) && fs.existsSync(confFile)) continue;
      await this.o.local.put(networkKey(net.name), JSON.stringify(want));
      writeFileAtomic(confFile, JSON.stringify(renderConflist(want), null, 2) + '\n');
      this.o.logger.info({ event: 'cluster_network_added', network: net.name, vni: net.vni, subnets: net.subnets.map((s) => s.subnet) }, `overlay network "${net.name}" is available on this node`);
    }
    for (const local of await listNetworks(this.o.local)) {
      if (local.driver !== 'overlay' || this.networks.has(local.name)) continue;
      await this.removeLocal(local);
    }
  }

  private async removeLocal(local: NetworkRecord): Promise<void> {
    fs.rmSync(local.confFile, { force: true });
    await this.o.local.transaction(async (txn) => {
      await txn.delete(networkKey(local.name));
      for (const kv of await txn.list(blockPrefix(local.name))) await txn.delete(kv.key);
    });
    if (local.overlay) {
      const vni = local.overlay.vni;
      this.mesh.forget(local.name, vni);
      withRtnl(undefined, (nl) => removeOverlayDevice(nl, local.name, vni));
    }
    this.peerCounts.delete(local.name);
    this.o.logger.info({ event: 'cluster_network_removed', network: local.name }, `overlay network "${local.name}" was removed from the cluster`);
  }

  /** Local block keys equal to the blocks etcd says this node holds. */
  private async mirrorBlocks(): Promise<void> {
    for (const net of this.networks.values()) {
      const held = new Set((await nodeBlocks(this.etcd, net.name, this.node)).map((b) => b.toString()));
      await this.o.local.transaction(async (txn) => {
        const local = new Set((await txn.list(blockPrefix(net.name))).map((kv) => blockFromKey(net.name, kv.key)));
        for (const cidr of held) if (!local.has(cidr)) await txn.put(blockKey(net.name, cidr), JSON.stringify({ mirroredAt: new Date().toISOString() }));
        for (const cidr of local) {
          if (held.has(cidr)) continue;
          // Not ours in etcd any more (reaped while this node was away): no new addresses from it.
          await txn.delete(blockKey(net.name, cidr));
          this.o.logger.warn({ event: 'cluster_block_lost', network: net.name, block: cidr }, `address block ${cidr} of "${net.name}" is no longer this node's in etcd; no new addresses come from it`);
        }
      });
    }
  }

  /** A new block of `network` for this node (POST /v1/blocks); concurrent asks share one claim. */
  claimBlock(network: string, family: 4 | 6): Promise<string> {
    const key = `${network}\n${family}`;
    let claim = this.claims.get(key);
    if (!claim) {
      claim = this.doClaim(network, family).finally(() => this.claims.delete(key));
      this.claims.set(key, claim);
    }
    return claim;
  }

  private async doClaim(network: string, family: 4 | 6): Promise<string> {
    const net = this.networks.get(network) ?? (await listClusterNetworks(this.etcd)).find((n) => n.name === network);
    if (!net) throw new BlockClaimError(404, `network "${network}" is not an overlay network of this cluster`);
    const subnet = net.subnets.map((s) => IpPrefix.parse(s.subnet)).find((s) => s.family === family);
    if (!subnet) throw new BlockClaimError(400, `network "${network}" has no IPv${family} subnet`);
    const t0 = performance.now();
    const block = await this.claimWithRetry(network, subnet);
    await this.o.local.put(blockKey(network, block), JSON.stringify({ mirroredAt: new Date().toISOString() }));
    const ms = Math.round(performance.now() - t0);
    this.o.logger.info({ event: 'cluster_block_claimed', network, block, ms }, `claimed address block ${block} of "${network}" for this node in ${ms} ms`);
    return block;
  }

  /**
   * One claim, tried up to three times when etcd did not answer in time. A commit that timed
   * out may still have been applied: a block of this node's that was not there before the first
   * try is that claim, and is taken instead of claiming another.
   */
  private async claimWithRetry(network: string, subnet: IpPrefix): Promise<string> {
    const mine = async (): Promise<string[]> => (await nodeBlocks(this.etcd, network, this.node)).map((b) => b.toString());
    const before = new Set(await mine());
    for (let attempt = 1; ; attempt++) {
      try {
        return (await claimBlock(this.etcd, network, subnet, this.node)).toString();
      } catch (err) {
        if (!(err instanceof StoreUnavailableError || err instanceof StoreConflictError) || attempt >= 3) throw err;
        this.o.logger.warn({ event: 'cluster_block_claim_retry', network, attempt, err: err.message }, `claiming a block of "${network}" failed (${err.message}); trying again`);
        const applied = (await mine().catch(() => [])).find((b) => !before.has(b) && IpPrefix.parse(b).family === subnet.family);
        if (applied) return applied;
      }
    }
  }

  /** Frees the blocks of nodes that stayed gone longer than the grace (any node may do it; it is one transaction). */
  private async reap(): Promise<void> {
    if (this.closed) return;
    try {
      const live = new Set((await this.o.session.nodes()).map((n) => n.name));
      const outcome = await reapBlocks(this.etcd, live, this.o.blockGraceSeconds * 1000);
      for (const b of outcome.freed) this.o.logger.info({ event: 'cluster_block_freed', block: b }, `freed address block ${b}: its node stayed gone longer than ${this.o.blockGraceSeconds} s`);
    } catch (err) {
      this.o.logger.debug({ event: 'cluster_reap_failed', err: (err as Error).message }, 'reaping address blocks failed');
    }
  }

  /**
   * Called by every daemon sync with the local registry: publishes this node's overlay
   * endpoints, programs the other nodes' as peers, and returns the registry with them added.
   */
  async apply(local: RegistryContents): Promise<RegistryContents> {
    const overlays = new Set(this.networks.keys());
    const lbEndpoints = await this.mesh.ensure(overlays);
    void this.publisher.publish(localClusterEndpoints([...local.endpoints, ...lbEndpoints], overlays, this.node, this.o.advertiseAddr));
    this.programPeers();
    // Other nodes' load-balancer endpoints are peers only: no name, no replica.
    return { ...local, endpoints: [...local.endpoints, ...this.remote.filter((e) => !isShoalHolder(e)).map(asRegistryEndpoint)] };
  }

  /** `shoal service create|update` of a service on an overlay network: the record goes to etcd. */
  async putService(input: ServiceInput, update: boolean): Promise<ServiceRecord> {
    const record = update ? await updateClusterService(this.etcd, input) : await createClusterService(this.etcd, input);
    await this.refresh();
    return record;
  }

  async removeService(name: string): Promise<boolean> {
    const removed = await removeClusterService(this.etcd, name);
    await this.refresh();
    return removed;
  }

  private programPeers(): void {
    withRtnl(undefined, (nl) => {
      for (const net of this.networks.values()) {
        if (!findLink(nl, vxlanDeviceName(net.name, net.vni))) continue; // no container here yet
        const peers = this.remote.filter((e) => e.network === net.name).flatMap(asPeers);
        try {
          const report = syncPeers(nl, overlayTarget(net.name, net.vni), peers, { localVtep: this.o.advertiseAddr });
          this.peerCounts.set(net.name, peers.length);
          if (report.ops.length) this.o.logger.debug({ event: 'overlay_peers_synced', network: net.name, ops: report.ops.length }, 'overlay peers synced');
          for (const p of report.problems) this.o.logger.warn({ event: 'overlay_peer_problem', network: net.name, problem: p }, p);
        } catch (err) {
          this.o.logger.warn({ event: 'overlay_peer_sync_failed', network: net.name, err: (err as Error).message }, `failed to program the peers of "${net.name}": ${(err as Error).message}`);
        }
      }
    });
  }

  /** Creates an overlay network in the cluster and waits until this node has its copy. */
  async createNetwork(input: OverlayCreateInput): Promise<NetworkRecord> {
    const localTaken: TakenRanges = [
      ...(await listNetworks(this.o.local)).filter((n) => n.driver !== 'overlay').flatMap((n) => n.subnets.map((s) => ({ cidr: s.subnet, what: `local network "${n.name}" (${s.subnet})` }))),
      ...this.o.hostRoutes(),
    ];
    const net = await createClusterNetwork(this.etcd, input, this.node, localTaken);
    await this.refresh();
    const record = await getNetwork(this.o.local, net.name);
    if (!record) throw new BlockClaimError(409, `network "${net.name}" was created in the cluster but a local network of that name keeps it off this node`);
    return record;
  }

  /** Removes an overlay network from the cluster (refused while containers are attached anywhere). */
  async removeNetwork(name: string): Promise<void> {
    const attachedHere = await this.o.local.count(addrPrefix(name));
    if (attachedHere > 0) throw new BlockClaimError(409, `network "${name}" has ${attachedHere} container address(es) on this node; remove the containers first`);
    const services = (await listClusterServices(this.etcd)).filter((s) => s.network === name).map((s) => s.name);
    if (services.length > 0) throw new BlockClaimError(409, `network "${name}" has services (${services.join(', ')}); remove them first`);
    await removeClusterNetwork(this.etcd, name);
    await this.ipsec.forget(name);
    await this.refresh();
  }

  status(): Record<string, unknown> {
    return { networks: [...this.networks.keys()].sort(), remoteEndpoints: this.remote.length, publishedEndpoints: this.publisher.count };
  }
}

/** An error with the API status it answers with. */
export class BlockClaimError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}
