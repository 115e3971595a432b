/**
 * Who is attached to a network. The IPAM's attachment index in the store is the truth for every
 * client (podman containers as well as Shoal sandboxes): one entry per (container, ifname) with
 * its addresses. Names come from the DNS registry (shoal-dns records the container name podman
 * or `shoal run` passed as K8S_POD_NAME), when there is one.
 */
import { addressFromKey, formatAddress, parseCidr } from '../ipam/address.js';
import { attachmentPrefix, parseAttachmentKey, type AttachmentRecord } from '../ipam/keys.js';
import { networkEndpointsPrefix, parseEndpointKey } from '../dns/registry.js';
import type { Store } from '../store/store.js';
import type { NetworkRecord } from './model.js';

export interface AttachedContainer {
  containerId: string;
  ifname: string;
  name?: string;
  /** CIDR form: address/prefix of the network's subnet. */
  addresses: string[];
}

function withPrefix(net: NetworkRecord, ip: string): string {
  if (ip.includes('/')) return ip;
  const family = ip.includes(':') ? 6 : 4;
  const subnet = net.subnets.find((s) => parseCidr(s.subnet)?.family === family);
  return subnet ? `${ip}/${subnet.subnet.split('/')[1]}` : ip;
}

export async function listAttachments(store: Store, net: NetworkRecord): Promise<AttachedContainer[]> {
  const out = new Map<string, AttachedContainer>();
  for (const kv of await store.list(attachmentPrefix(net.name))) {
    const { containerId, ifname } = parseAttachmentKey(net.name, kv.key);
    let rec: AttachmentRecord;
    try {
      rec = JSON.parse(kv.value) as AttachmentRecord;
    } catch {
      continue;
    }
    const addresses = rec.addresses.map((k) => withPrefix(net, formatAddress(addressFromKey(k))));
    out.set(`${containerId}/${ifname}`, { containerId, ifname, addresses });
  }
  for (const kv of await store.list(networkEndpointsPrefix(net.name))) {
    const ref = parseEndpointKey(kv.key);
    if (!ref) continue;
    try {
      const ep = JSON.parse(kv.value) as { name?: string; ipv4?: string[]; ipv6?: string[] };
      const key = `${ref.containerId}/${ref.ifname}`;
      const have = out.get(key);
      // An endpoint without an IPAM record (a chain with another IPAM) still counts as attached.
      if (have) have.name = ep.name;
      else out.set(key, { containerId: ref.containerId, ifname: ref.ifname, name: ep.name, addresses: [...(ep.ipv4 ?? []), ...(ep.ipv6 ?? [])].map((ip) => withPrefix(net, ip)) });
    } catch {
      continue;
    }
  }
  return [...out.values()].sort((a, b) => a.containerId.localeCompare(b.containerId) || a.ifname.localeCompare(b.ifname));
}
