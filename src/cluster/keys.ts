/**
 * Key distribution and rotation for encrypted overlay networks, through etcd (DESIGN §7).
 *
 * - `keys/<network>/<gen>` (gen zero-padded to 10 digits): `{gen, key, created}`, the key 32
 *   random bytes in base64. These keys ARE the network's confidentiality: whoever can read them
 *   (etcd clients, etcd snapshots and backups, the data dir of a member) can decrypt the
 *   network's traffic of that generation. Operators must protect etcd accordingly (client TLS,
 *   RBAC on the `keys/` prefix, encrypted backups). Nothing else holds them: per-pair SA keys
 *   are derived in memory (../overlay/ipsec.ts) and handed to the kernel.
 * - `keyacks/<network>/<node>` under the node's lease: the newest generation this node has
 *   installed inbound SAs for. A peer sends with a generation only once the receiver has
 *   acknowledged it, which is what makes a rotation lose nothing. Gone with the lease.
 *
 * Rotation: any daemon that sees the newest generation older than the network's rotation
 * interval writes the next one in a transaction (one winner), keeping only the two newest: the
 * previous one is still in use by senders that have not switched yet.
 */
import { randomBytes } from 'node:crypto';
import type { Store, Txn } from '../store/store.js';
import type { KeyGeneration } from '../overlay/ipsec.js';

export const KEYS_PREFIX = 'keys/';
export const KEYACKS_PREFIX = 'keyacks/';
/** Generations kept: the current one and the one senders may still use. */
const KEEP = 2;

export interface StoredKey extends KeyGeneration {
  created: number;
}

export function keysPrefix(network: string): string {
  return `${KEYS_PREFIX}${network}/`;
}

export function keyAckKey(network: string, node: string): string {
  return `${KEYACKS_PREFIX}${network}/${encodeURIComponent(node)}`;
}

function genKey(network: string, gen: number): string {
  return `${keysPrefix(network)}${String(gen).padStart(10, '0')}`;
}

function parse(value: string): StoredKey | undefined {
  try {
    const v = JSON.parse(value) as { gen?: unknown; key?: unknown; created?: unknown };
    if (!Number.isInteger(v.gen) || typeof v.key !== 'string' || typeof v.created !== 'string') return undefined;
    const key = Buffer.from(v.key, 'base64');
    if (key.length !== 32) return undefined;
    return { gen: v.gen as number, key, created: Date.parse(v.created) };
  } catch {
    return undefined;
  }
}

/** The network's live generations, oldest first. */
export async function readKeys(reader: Pick<Txn, 'list'>, network: string): Promise<StoredKey[]> {
  const out: StoredKey[] = [];
  for (const kv of await reader.list(keysPrefix(network))) {
    const k = parse(kv.value);
    if (k) out.push(k);
  }
  return out.sort((a, b) => a.gen - b.gen);
}

/**
 * Makes sure the network has a key that is younger than `rotationMs`: writes the first
 * generation, or the next one (dropping all but the newest KEEP). Resolves to whether it wrote.
 */
export async function ensureKeys(etcd: Store, network: string, rotationMs: number, now = Date.now()): Promise<boolean> {
  return etcd.transaction(async (txn) => {
    const keys = await readKeys(txn, network);
    const newest = keys.at(-1);
    if (newest && now - newest.created < rotationMs) return false;
    const gen = (newest?.gen ?? 0) + 1;
    await txn.put(genKey(network, gen), JSON.stringify({ gen, key: randomBytes(32).toString('base64'), created: new Date(now).toISOString() }));
    for (const old of keys.slice(0, Math.max(0, keys.length + 1 - KEEP))) await txn.delete(genKey(network, old.gen));
    return true;
  });
}

/** Every node's acknowledged generation of `network`. */
export async function readAcks(reader: Pick<Txn, 'list'>, network: string): Promise<Map<string, number>> {
  const prefix = `${KEYACKS_PREFIX}${network}/`;
  const out = new Map<string, number>();
  for (const kv of await reader.list(prefix)) {
    const gen = Number(kv.value);
    if (Number.isInteger(gen)) out.set(decodeURIComponent(kv.key.slice(prefix.length)), gen);
  }
  return out;
}

/** Removes a deleted network's keys (its acks go with the nodes' leases or are overwritten). */
export async function removeKeys(etcd: Store, network: string): Promise<void> {
  await etcd.transaction(async (txn) => {
    for (const kv of await txn.list(keysPrefix(network))) await txn.delete(kv.key);
  });
}
