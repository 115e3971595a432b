/**
 * Attaching a namespace to a network the way podman does it: CNI_ARGS
 * `IgnoreUnknown=1;K8S_POD_NAME=<name>`, runtimeConfig `portMappings` and
 * `aliases: {<network>: [...]}`, the network's conflist run through the chain runner.
 */
import { addNetworkList, delCached, type ChainOptions } from './chain.js';
import { loadConflist } from './manage.js';
import type { NetworkRecord } from './model.js';

export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: string;
  hostIP: string;
}

export interface AttachRequest {
  containerId: string;
  netns: string;
  ifname: string;
  name: string;
  aliases: string[];
  ports: PortMapping[];
}

export interface AttachResult {
  /** The chain's final result (conflist's cniVersion). */
  result: Record<string, unknown>;
  addresses: string[];
  gateways: string[];
  nameservers: string[];
  search: string[];
}

function attachmentOf(net: NetworkRecord, req: AttachRequest) {
  return {
    containerId: req.containerId,
    netns: req.netns,
    ifname: req.ifname,
    args: [
      ['IgnoreUnknown', '1'],
      ['K8S_POD_NAME', req.name],
    ] as Array<[string, string]>,
    capabilityArgs: {
      portMappings: req.ports.map((p) => ({ hostPort: p.hostPort, containerPort: p.containerPort, protocol: p.protocol, hostIP: p.hostIP })),
      aliases: { [net.name]: req.aliases },
    },
  };
}

export function summarize(result: Record<string, unknown>): Omit<AttachResult, 'result'> {
  const ips = (result['ips'] ?? []) as Array<{ address?: string; gateway?: string }>;
  const dns = (result['dns'] ?? {}) as { nameservers?: string[]; search?: string[] };
  return {
    addresses: ips.map((i) => i.address ?? '').filter(Boolean),
    gateways: ips.map((i) => i.gateway ?? '').filter(Boolean),
    nameservers: dns.nameservers ?? [],
    search: dns.search ?? [],
  };
}

export async function attach(opts: ChainOptions, net: NetworkRecord, req: AttachRequest): Promise<AttachResult> {
  const result = await addNetworkList(opts, loadConflist(net), attachmentOf(net, req));
  return { result, ...summarize(result) };
}

/** DEL with the cached result; falls back to the current conflist when nothing was cached. */
export async function detach(opts: ChainOptions, net: NetworkRecord | undefined, network: string, req: Pick<AttachRequest, 'containerId' | 'netns' | 'ifname'>): Promise<void> {
  const fallback = net ? () => ({ list: loadConflist(net), att: { containerId: req.containerId, netns: req.netns, ifname: req.ifname, args: [['IgnoreUnknown', '1']] as Array<[string, string]> } }) : undefined;
  await delCached(opts, network, req.containerId, req.ifname, fallback);
}
