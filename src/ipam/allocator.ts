import type { Store, Txn } from '../store/store.js';
import { IpAddr, IpPrefix } from '../addr.js';
import { addressFromKey, addressKey } from './address.js';
import type { IpamConfig } from './config.js';
import {
  AddressInUseError,
  AddressNotAllocatableError,
  DuplicateAttachmentError,
  NodeBlocksFullError,
  RangeExhaustedError,
} from './errors.js';
import {
  type AddressRecord,
  type AttachmentRecord,
  addrKey,
  addrPrefix,
  attachmentKey,
  blockFromKey,
  blockPrefix,
  cursorKey,
  networkInfoKey,
} from './keys.js';
import { type Segment, allocatableSegments, capacityOf, visitOrder } from './pool.js';
import { type IpRange, describeRangeSet, rangeSetContains } from './range.js';
import type { RequestedAddress } from './requested.js';

/**
 * The allocator: pure decisions from ./pool.ts applied to the store inside one transaction.
 * Every function here takes the transaction it runs in; the caller owns commit and rollback,
 * so an ADD for a dual-stack network reserves both addresses or neither.
 */

export interface Attachment {
  containerId: string;
  ifname: string;
}

export interface Allocation {
  rangeSetIndex: number;
  address: IpAddr;
  range: IpRange;
}

/** Below this many addresses a block is listed and walked; above it, halved by counting. */
const WALK_BLOCK = 64;
/** Largest block counted in one query while skipping a run of used addresses. */
const MAX_SPAN = 1n << 20n;

/**
 * The first address in `order` with no record in the store.
 *
 * A pool with thousands of addresses in use must not cost thousands of lookups (or thousands
 * of rows copied into JavaScript) when the round-robin cursor sits in front of a long used run.
 * So: count the used addresses in a block after the candidate (the store counts inside its
 * index, etcd's count-only range does the same); a full block is skipped whole and the next
 * block is 16 times larger; a block with a gap is halved by counting until it is small enough
 * to list and walk. Cost: O(log n) queries.
 */
export async function findFree(reader: Pick<Txn, 'list' | 'count'>, network: string, order: readonly Segment[]): Promise<bigint | undefined> {
  const prefix = addrPrefix(network);
  for (const segment of order) {
    const keyOf = (value: bigint): string => prefix + addressKey({ family: segment.family, value });
    const usedIn = (lo: bigint, hi: bigint): Promise<number> => reader.count(prefix, { from: keyOf(lo), to: keyOf(hi) });
    let candidate = segment.lo;
    let span = 1n;
    while (candidate <= segment.hi) {
      let end = candidate + span - 1n > segment.hi ? segment.hi : candidate + span - 1n;
      if (BigInt(await usedIn(candidate, end)) === end - candidate + 1n) {
        candidate = end + 1n;
        span = span * 16n > MAX_SPAN ? MAX_SPAN : span * 16n;
        continue;
      }
      // [candidate, end] has a gap: narrow it down to a block small enough to walk.
      while (end - candidate + 1n > BigInt(WALK_BLOCK)) {
        const mid = candidate + (end - candidate) / 2n;
        if (BigInt(await usedIn(candidate, mid)) === mid - candidate + 1n) candidate = mid + 1n;
        else end = mid;
      }
      const used = await reader.list(prefix, { from: keyOf(candidate), to: keyOf(end), limit: WALK_BLOCK });
      for (const record of used) {
        if (addressFromKey(record.key.slice(prefix.length)).value > candidate) break;
        candidate += 1n;
      }
      // Outside a transaction (STATUS) another process may have filled the gap meanwhile.
      if (candidate <= end) return candidate;
    }
  }
  return undefined;
}

export async function readJson<T>(reader: Pick<Txn, 'get'>, key: string): Promise<T | undefined> {
  const kv = await reader.get(key);
  return kv === undefined ? undefined : (JSON.parse(kv.value) as T);
}

export function segmentsOf(config: IpamConfig, setIndex: number): Segment[] {
  return allocatableSegments(config.rangeSets[setIndex]!, config.holes);
}

/** This node's address blocks of a cluster network, as address intervals. */
async function nodeBlocks(reader: Pick<Txn, 'list'>, network: string): Promise<Array<{ family: 4 | 6; lo: bigint; hi: bigint }>> {
  const out = [];
  for (const kv of await reader.list(blockPrefix(network))) {
    const block = IpPrefix.tryParse(blockFromKey(network, kv.key));
    if (block) out.push({ family: block.family, lo: block.network().value, hi: block.last().value });
  }
  return out;
}

/** The segments of `setIndex` this node may hand out: all of them, or on a cluster network the parts inside its blocks. */
async function usableSegments(reader: Pick<Txn, 'list'>, network: string, config: IpamConfig, setIndex: number): Promise<Segment[]> {
  const segments = segmentsOf(config, setIndex);
  if (!config.blocks) return segments;
  const blocks = await nodeBlocks(reader, network);
  const out: Segment[] = [];
  for (const s of segments) {
    for (const b of blocks) {
      if (b.family !== s.family || b.hi < s.lo || b.lo > s.hi) continue;
      out.push({ ...s, lo: b.lo > s.lo ? b.lo : s.lo, hi: b.hi < s.hi ? b.hi : s.hi });
    }
  }
  return out.sort((a, b) => (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : 0));
}

async function lastReserved(reader: Pick<Txn, 'get'>, network: string, setIndex: number): Promise<IpAddr | undefined> {
  const kv = await reader.get(cursorKey(network, setIndex));
  return kv === undefined ? undefined : addressFromKey(kv.value);
}

/** The next address ADD would hand out from range set `setIndex`, without reserving it. */
export async function nextFree(reader: Pick<Txn, 'get' | 'list' | 'count'>, network: string, config: IpamConfig, setIndex: number): Promise<bigint | undefined> {
  const set = config.rangeSets[setIndex]!;
  const order = visitOrder(await usableSegments(reader, network, config, setIndex), set, await lastReserved(reader, network, setIndex));
  return findFree(reader, network, order);
}

/** Checks a requested address may be handed out at all; the in-use check happens later. */
async function checkRequested(reader: Pick<Txn, 'list'>, network: string, config: IpamConfig, setIndex: number, requested: RequestedAddress): Promise<IpRange> {
  const set = config.rangeSets[setIndex]!;
  const range = rangeSetContains(set, requested.address)!;
  const value = requested.address.value;
  if (config.rangeSets.flat().some((r) => r.gateway.equals(requested.address)))
    throw new AddressNotAllocatableError(requested.field, requested.text, 'it is a gateway address');
  const allocatable = segmentsOf(config, setIndex).some((s) => s.family === requested.address.family && s.lo <= value && value <= s.hi);
  if (!allocatable) throw new AddressNotAllocatableError(requested.field, requested.text, 'it is excluded by ipam.exclude');
  if (config.blocks && !(await usableSegments(reader, network, config, setIndex)).some((s) => s.family === requested.address.family && s.lo <= value && value <= s.hi)) {
    throw new AddressNotAllocatableError(requested.field, requested.text, "it is outside this node's address blocks of the network");
  }
  return range;
}

/**
 * Reserves one address per range set for `attachment`. Requested addresses are matched to the
 * first range set containing them; one that fits no set, or a second one for the same set, is
 * an error naming it. Throws (and the caller rolls back) on any failure.
 */
export async function allocate(
  txn: Txn,
  network: string,
  config: IpamConfig,
  attachment: Attachment,
  requested: readonly RequestedAddress[],
): Promise<Allocation[]> {
  const ownerKey = attachmentKey(network, attachment.containerId, attachment.ifname);
  const existing = await readJson<AttachmentRecord>(txn, ownerKey);
  if (existing) {
    const held = existing.addresses.map((key) => addressFromKey(key).toString());
    throw new DuplicateAttachmentError(network, attachment.containerId, attachment.ifname, held);
  }

  const unmatched = new Set(requested);
  const allocations: Allocation[] = [];
  for (let setIndex = 0; setIndex < config.rangeSets.length; setIndex++) {
    const set = config.rangeSets[setIndex]!;
    const wanted = requested.find((r) => unmatched.has(r) && rangeSetContains(set, r.address));
    let address: IpAddr;
    let range: IpRange;
    if (wanted) {
      unmatched.delete(wanted);
      range = await checkRequested(txn, network, config, setIndex, wanted);
      const holder = await readJson<AddressRecord>(txn, addrKey(network, wanted.address));
      if (holder) throw new AddressInUseError(wanted.text, network, holder);
      address = wanted.address;
    } else {
      const value = await nextFree(txn, network, config, setIndex);
      if (value === undefined && config.blocks) throw new NodeBlocksFullError(network, setIndex);
      if (value === undefined) throw new RangeExhaustedError(network, setIndex, describeRangeSet(set));
      address = IpAddr.of(set[0]!.family, value);
      range = rangeSetContains(set, address)!;
    }
    const record: AddressRecord = { ...attachment, rangeSet: setIndex };
    await txn.put(addrKey(network, address), JSON.stringify(record));
    await txn.put(cursorKey(network, setIndex), addressKey(address));
    allocations.push({ rangeSetIndex: setIndex, address, range });
  }
  for (const extra of unmatched) {
    const setIndex = config.rangeSets.findIndex((set) => rangeSetContains(set, extra.address));
    const taken = allocations[setIndex];
    throw new AddressNotAllocatableError(
      extra.field,
      extra.text,
      taken
        ? `range set ${setIndex} gives one address per attachment and already takes requested ${taken.address.toString()}`
        : `it is not inside any range of network "${network}" (${config.rangeSets.map(describeRangeSet).join('; ')})`,
    );
  }
  const record: AttachmentRecord = { addresses: allocations.map((a) => addressKey(a.address)) };
  await txn.put(ownerKey, JSON.stringify(record));
  await recordCapacity(txn, network, config);
  return allocations;
}

/**
 * `allocate` in a transaction of its own. On a cluster network whose node blocks are full,
 * `claim` gets this node another block of that family and it tries again, at most `maxClaims`
 * times: parallel ADDs may use up a fresh block before this one retries.
 */
export async function allocateClaimingBlocks(
  store: Pick<Store, 'transaction'>,
  network: string,
  config: IpamConfig,
  attachment: Attachment,
  requested: readonly RequestedAddress[],
  claim: (family: 4 | 6) => Promise<unknown>,
  maxClaims: number,
): Promise<Allocation[]> {
  for (let claims = 0; ; claims++) {
    try {
      return await store.transaction((txn) => allocate(txn, network, config, attachment, requested));
    } catch (err) {
      if (!(err instanceof NodeBlocksFullError) || claims >= maxClaims) throw err;
      await claim(config.rangeSets[err.rangeSetIndex]![0]!.family);
    }
  }
}

/** Keeps the network's capacity where the daemon's stats can find it without the config. */
async function recordCapacity(txn: Txn, network: string, config: IpamConfig): Promise<void> {
  const capacity = config.rangeSets.reduce((sum, _set, i) => sum + capacityOf(segmentsOf(config, i)), 0n);
  const value = JSON.stringify({ capacity: capacity.toString() });
  const key = networkInfoKey(network);
  if ((await txn.get(key))?.value !== value) await txn.put(key, value);
}

/**
 * Releases what `attachment` holds. Idempotent: an unknown attachment releases nothing.
 * Address records are removed only while they still name this attachment, so a stale index
 * can never free an address someone else holds. Returns the released addresses.
 */
export async function release(txn: Txn, network: string, attachment: Attachment): Promise<IpAddr[]> {
  const ownerKey = attachmentKey(network, attachment.containerId, attachment.ifname);
  const record = await readJson<AttachmentRecord>(txn, ownerKey);
  if (!record) return [];
  const released: IpAddr[] = [];
  for (const key of record.addresses) {
    const address = addressFromKey(key);
    const holder = await readJson<AddressRecord>(txn, addrKey(network, address));
    if (holder?.containerId === attachment.containerId && holder.ifname === attachment.ifname) {
      await txn.delete(addrKey(network, address));
      released.push(address);
    }
  }
  await txn.delete(ownerKey);
  return released;
}

/** What `attachment` holds, or undefined when it holds nothing. */
export async function heldBy(reader: Pick<Txn, 'get'>, network: string, attachment: Attachment): Promise<IpAddr[] | undefined> {
  const record = await readJson<AttachmentRecord>(reader, attachmentKey(network, attachment.containerId, attachment.ifname));
  return record?.addresses.map(addressFromKey);
}
