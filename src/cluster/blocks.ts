/**
 * Address blocks of overlay networks (Calico-style): each node leases small blocks (/26 by
 * default) of a network's subnet and its plugins allocate from those blocks only, so no address
 * is ever handed out twice across nodes without a cluster-wide lock per ADD. Claims are store
 * transactions (SQLite locally, etcd across hosts), so two nodes claiming at once get distinct
 * blocks.
 *
 * A node that dies keeps its blocks for a grace period (its containers' addresses may still be
 * in use if only its daemon died); `reapBlocks` marks the blocks of nodes that are not live and
 * frees them once they stayed orphaned longer than the grace. A node that comes back in time
 * keeps its blocks.
 *
 * Keys, relative to the store's prefix: `blocks/<network>/<block address>_<length>`.
 */
import { IpPrefix } from '../addr.js';
import { ShoalError } from '../errors.js';
import { stableHash } from '../hash.js';
import type { Store, Txn } from '../store/store.js';

export const DEFAULT_BLOCK_LENGTH_V4 = 26;
export const DEFAULT_BLOCK_LENGTH_V6 = 122;

export interface BlockRecord {
  network: string;
  /** The block, as CIDR text. */
  cidr: string;
  node: string;
  claimedAt: string;
  /** Set by reapBlocks while the owner is not live; cleared when it is again. */
  orphanedSince?: string;
}

export class BlocksExhaustedError extends ShoalError {
  constructor(network: string, subnet: IpPrefix, length: number) {
    super('EBLOCKSEXHAUSTED', `failed to claim an address block of network "${network}": every /${length} block of ${subnet.toString()} is taken`);
  }
}

const PREFIX = 'blocks/';

/**
 * The owner of the blocks service VIPs come from (cluster/services.ts). Not a node: node names
 * are host names and cannot start with '@', and the reaper never frees its blocks (a VIP lives
 * as long as its service, whichever nodes come and go).
 */
export const SERVICE_BLOCKS_OWNER = '@services';

function networkPrefix(network: string): string {
  return `${PREFIX}${encodeURIComponent(network)}/`;
}

function blockKey(network: string, block: IpPrefix): string {
  return `${networkPrefix(network)}${block.network().toString()}_${block.length}`;
}

function decode(value: string): BlockRecord {
  return JSON.parse(value) as BlockRecord;
}

/** The block length for `subnet`: /26 (IPv4) or /122 (IPv6), or the subnet itself when it is smaller. */
export function blockLength(subnet: IpPrefix, requested?: number): number {
  const wanted = requested ?? (subnet.family === 4 ? DEFAULT_BLOCK_LENGTH_V4 : DEFAULT_BLOCK_LENGTH_V6);
  return Math.max(wanted, subnet.length);
}

/** Every block of the network, in key order. */
export async function listBlocks(store: Txn, network: string): Promise<BlockRecord[]> {
  return (await store.list(networkPrefix(network))).map((kv) => decode(kv.value));
}

/** The blocks `node` holds in `network`. */
export async function nodeBlocks(store: Txn, network: string, node: string): Promise<IpPrefix[]> {
  return (await listBlocks(store, network)).filter((b) => b.node === node).map((b) => IpPrefix.parse(b.cidr));
}

/**
 * Where `node` starts looking for a free block among `count`: right after its own last block, so
 * a node's blocks lie together (fewer routes to summarise, as Calico's block affinity), else at
 * a place derived from its name, so nodes claiming at once rarely race for the same block (each
 * lost race is one more etcd transaction for the loser).
 */
export function claimStart(node: string, count: bigint, ownIndexes: readonly bigint[]): bigint {
  if (ownIndexes.length) return (ownIndexes.reduce((a, b) => (a > b ? a : b)) + 1n) % count;
  return BigInt(`0x${stableHash(node)}`) % count;
}

/**
 * Claims a free block of `subnet` for `node` (see claimStart for which) and returns it;
 * BlocksExhaustedError when every block is taken. One transaction: concurrent claims (other
 * nodes, other processes) get distinct blocks.
 */
export async function claimBlock(store: Store, network: string, subnet: IpPrefix, node: string, options: { length?: number; now?: Date } = {}): Promise<IpPrefix> {
  return store.transaction((txn) => claimBlockIn(txn, network, subnet, node, options));
}

/** claimBlock inside a transaction the caller holds (a service VIP claims its block with the record). */
export async function claimBlockIn(txn: Txn, network: string, subnet: IpPrefix, node: string, options: { length?: number; now?: Date } = {}): Promise<IpPrefix> {
  const length = blockLength(subnet, options.length);
  const count = 1n << BigInt(length - subnet.length);
  const stride = 1n << BigInt(subnet.bits - length);
  const base = subnet.network();
  const indexOf = (cidr: string): bigint => (IpPrefix.parse(cidr).network().value - base.value) / stride;
  const blocks = await listBlocks(txn, network);
  const taken = new Set(blocks.map((b) => b.cidr));
  // Only the node's blocks of this subnet: a dual-stack network keeps both families' blocks under
  // one prefix, and the index of an IPv4 block in the IPv6 subnet is negative, which put the
  // node's next IPv6 block outside the subnet, where no allocation could use it.
  const own = blocks.filter((b) => b.node === node && subnet.overlaps(IpPrefix.parse(b.cidr)));
  const start = claimStart(node, count, own.map((b) => indexOf(b.cidr)));
  for (let i = 0n; i < count; i++) {
    const block = IpPrefix.of(base.offset(((start + i) % count) * stride), length);
    if (taken.has(block.toString())) continue;
    const record: BlockRecord = { network, cidr: block.toString(), node, claimedAt: (options.now ?? new Date()).toISOString() };
    await txn.put(blockKey(network, block), JSON.stringify(record));
    return block;
  }
  throw new BlocksExhaustedError(network, subnet, length);
}

/** Gives `block` back when `node` holds it; resolves to whether it did. */
export async function releaseBlock(store: Store, network: string, block: IpPrefix, node: string): Promise<boolean> {
  return store.transaction(async (txn) => {
    const kv = await txn.get(blockKey(network, block));
    if (!kv || decode(kv.value).node !== node) return false;
    return txn.delete(blockKey(network, block));
  });
}

export interface ReapOutcome {
  /** Blocks newly marked orphaned (owner not live). */
  marked: string[];
  /** Blocks freed: orphaned for longer than the grace. */
  freed: string[];
  /** Blocks whose owner is live again: no longer orphaned. */
  revived: string[];
}

/**
 * One pass over every network's blocks: blocks of nodes not in `liveNodes` are marked orphaned
 * (first pass) and freed once they stayed so for `graceMs`; blocks of live nodes lose their mark.
 */
export async function reapBlocks(store: Store, liveNodes: ReadonlySet<string>, graceMs: number, now: Date = new Date()): Promise<ReapOutcome> {
  return store.transaction(async (txn) => {
    const outcome: ReapOutcome = { marked: [], freed: [], revived: [] };
    for (const kv of await txn.list(PREFIX)) {
      const record = decode(kv.value);
      const name = `${record.network}:${record.cidr}`;
      if (record.node === SERVICE_BLOCKS_OWNER) continue;
      if (liveNodes.has(record.node)) {
        if (record.orphanedSince === undefined) continue;
        delete record.orphanedSince;
        await txn.put(kv.key, JSON.stringify(record));
        outcome.revived.push(name);
      } else if (record.orphanedSince === undefined) {
        await txn.put(kv.key, JSON.stringify({ ...record, orphanedSince: now.toISOString() }));
        outcome.marked.push(name);
      } else if (now.getTime() - Date.parse(record.orphanedSince) >= graceMs) {
        await txn.delete(kv.key);
        outcome.freed.push(name);
      }
    }
    return outcome;
  });
}
