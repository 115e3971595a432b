/**
 * Service records in the state store, and their VIPs in the network's IPAM:
 *
 *   services/<name>  -> ServiceRecord (JSON)
 *
 * The VIP is an ordinary IPAM allocation on the service's network, held by the attachment
 * `service:<name>` / `vip`, taken and released in the same transaction as the record: no
 * container can be handed the address while the service exists, and `network inspect` shows who
 * holds it. The CLI writes here; the daemon follows the store and acts (DESIGN §4.13).
 */
import { allocate, release } from '../ipam/allocator.js';
import { parseIpamConfig } from '../ipam/config.js';
import { loadConflist } from '../network/manage.js';
import { networkKey, type NetworkRecord } from '../network/model.js';
import type { Store, Txn } from '../store/store.js';
import { buildSpec, ServiceError, type ServiceInput, type ServiceRecord } from './model.js';

export const SERVICES_PREFIX = 'services/';

export const serviceKey = (name: string) => `${SERVICES_PREFIX}${encodeURIComponent(name)}`;

/** The IPAM attachment that holds a service's VIPs. */
export const vipAttachment = (name: string) => ({ containerId: `service:${name}`, ifname: 'vip' });

function parseRecord(value: string): ServiceRecord | undefined {
  try {
    const r = JSON.parse(value) as ServiceRecord;
    return typeof r.name === 'string' && typeof r.network === 'string' && Array.isArray(r.ports) ? r : undefined;
  } catch {
    return undefined;
  }
}

export async function listServices(store: Pick<Txn, 'list'>): Promise<ServiceRecord[]> {
  const out: ServiceRecord[] = [];
  for (const kv of await store.list(SERVICES_PREFIX)) {
    const r = parseRecord(kv.value);
    if (r) out.push(r);
  }
  return out;
}

export async function getService(store: Pick<Txn, 'get'>, name: string): Promise<ServiceRecord | undefined> {
  const kv = await store.get(serviceKey(name));
  return kv ? parseRecord(kv.value) : undefined;
}

/** Published ports are host-wide: two services (of any network) cannot share one. */
export async function checkPortsFree(txn: Txn, record: ServiceRecord): Promise<void> {
  for (const other of await listServices(txn)) {
    if (other.name === record.name) continue;
    for (const p of record.ports) {
      if (other.ports.some((o) => o.protocol === p.protocol && o.published === p.published)) {
        throw new ServiceError(`failed to publish "${p.published}/${p.protocol}" for service "${record.name}": service "${other.name}" publishes it`);
      }
    }
  }
}

/** Takes the VIPs of a new vip-mode service on `network`, in the caller's transaction. */
export type VipAllocator = (txn: Txn, name: string, network: string) => Promise<string[]>;

/** A local network's VIPs: IPAM allocations held by the service's attachment. */
async function allocateVips(txn: Txn, name: string, network: string): Promise<string[]> {
  const kv = await txn.get(networkKey(network));
  const net = kv ? (JSON.parse(kv.value) as NetworkRecord) : undefined;
  if (!net) throw new ServiceError(`failed to create service "${name}": no network "${network}" (a VIP comes from a network made by "shoal network create")`);
  const ipam = (loadConflist(net).plugins[0] as { ipam?: unknown }).ipam;
  const config = parseIpamConfig(ipam);
  const allocations = await allocate(txn, network, config, vipAttachment(name), []);
  return allocations.map((a) => a.address.toString());
}

export async function createService(store: Store, input: ServiceInput, now = new Date(), vipsFor: VipAllocator = allocateVips): Promise<ServiceRecord> {
  const spec = buildSpec(input);
  return store.transaction(async (txn) => {
    if (await txn.get(serviceKey(spec.name))) throw new ServiceError(`failed to create service "${spec.name}": it exists`);
    const vips = spec.endpointMode === 'vip' ? await vipsFor(txn, spec.name, spec.network) : [];
    const at = now.toISOString();
    const record: ServiceRecord = { ...spec, vips, created: at, updated: at };
    await checkPortsFree(txn, record);
    await txn.put(serviceKey(spec.name), JSON.stringify(record));
    return record;
  });
}

export async function updateService(store: Store, input: ServiceInput, now = new Date()): Promise<ServiceRecord> {
  return store.transaction(async (txn) => {
    const current = await getService(txn, input.name);
    if (!current) throw new ServiceError(`failed to update service "${input.name}": no such service`);
    const spec = buildSpec(input, current);
    const record: ServiceRecord = { ...spec, vips: current.vips, created: current.created, updated: now.toISOString() };
    await checkPortsFree(txn, record);
    await txn.put(serviceKey(spec.name), JSON.stringify(record));
    return record;
  });
}

/** Removes the record and releases its VIPs; false when there was no such service. */
export async function removeService(store: Store, name: string): Promise<boolean> {
  return store.transaction(async (txn) => {
    const current = await getService(txn, name);
    if (!current) return false;
    await release(txn, current.network, vipAttachment(name));
    await txn.delete(serviceKey(name));
    return true;
  });
}
