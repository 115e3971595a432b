/**
 * `shoal network connect|disconnect NETWORK TARGET`: run the network's conflist ADD (or DEL)
 * for a sandbox started by `shoal run`, or for any network namespace (a name under /run/netns
 * or a path such as /proc/<pid>/ns/net). The result is cached for DEL and CHECK.
 */
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { CliError, many, parse, UsageError, openStore } from './common.js';
import { chainOptions } from './network.js';
import type { Store } from '../store/store.js';
import type { SandboxRecord } from '../network/sandboxes.js';

const CONNECT_HELP = `Usage: shoal network connect [OPTIONS] NETWORK SANDBOX|NETNS

Attach a sandbox (name or id from "shoal ps") or a network namespace (a name under /run/netns,
or a path) to a network: runs the network's CNI chain (ADD) and caches the result.

Options:
      --alias NAME         DNS alias on this network (repeatable)
      --ifname NAME        interface name in the namespace (default: eth0, or the next free ethN)
      --container-id ID    CNI container id for a namespace (default: derived from its name)
  -p, --publish SPEC       publish a port, [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO] (repeatable)
      --check              run CHECK for an existing attachment instead of ADD
`;
const DISCONNECT_HELP = `Usage: shoal network disconnect [--ifname NAME] [--container-id ID] NETWORK SANDBOX|NETNS

Detach a sandbox or network namespace from a network: runs DEL through the chain in reverse,
with the result cached at connect time.
`;

interface Target {
  containerId: string;
  netns: string;
  name: string;
  sandbox?: SandboxRecord;
}

async function resolveTarget(store: Store, query: string, containerId: string | undefined): Promise<Target> {
  const { findSandbox } = await import('../network/sandboxes.js');
  const { netnsExists } = await import('../kernel/netns.js');
  const sb = query.includes('/') ? undefined : await findSandbox(store, query);
  if (sb) {
    if (!sb.netns || sb.networkMode === 'host') throw new CliError(`sandbox "${sb.name}" shares the host's network; it cannot be connected`);
    return { containerId: sb.id, netns: sb.netns, name: sb.name, sandbox: sb };
  }
  const netns = query.includes('/') ? path.resolve(query) : `/run/netns/${query}`;
  if (!netnsExists(netns)) throw new CliError(`no sandbox or network namespace "${query}"`);
  const base = path.basename(netns);
  const id = containerId ?? (netns.startsWith('/run/netns/') && /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(base) ? base : createHash('sha256').update(netns).digest('hex'));
  return { containerId: id, netns, name: base };
}

export async function connect(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    alias: { type: 'string', multiple: true },
    ifname: { type: 'string' },
    'container-id': { type: 'string' },
    publish: { type: 'string', short: 'p', multiple: true },
    check: { type: 'boolean' },
  });
  if (values.help) return void process.stdout.write(CONNECT_HELP), 0;
  if (positionals.length !== 2) throw new UsageError('expected NETWORK and SANDBOX|NETNS');
  const { parsePortSpecs } = await import('../network/ports.js');
  const ports = parsePortSpecs(many(values.publish));
  const store = await openStore();
  const { findNetwork } = await import('../network/model.js');
  const net = await findNetwork(store, positionals[0]!);
  if (!net) throw new CliError(`network "${positionals[0]}" not found`);
  const target = await resolveTarget(store, positionals[1]!, values['container-id'] as string | undefined);
  const opts = await chainOptions();
  if (values.check) {
    const { checkNetworkList } = await import('../network/chain.js');
    const ifname = (values.ifname as string | undefined) ?? target.sandbox?.attachments.find((a) => a.network === net.name)?.ifname ?? 'eth0';
    await checkNetworkList(opts, net.name, target.containerId, ifname);
    process.stdout.write(`ok\n`);
    return 0;
  }
  const used = new Set(target.sandbox?.attachments.map((a) => a.ifname) ?? []);
  if (target.sandbox?.attachments.some((a) => a.network === net.name)) throw new CliError(`sandbox "${target.name}" is already connected to network "${net.name}"`);
  let ifname = values.ifname as string | undefined;
  for (let i = 0; ifname === undefined; i++) if (!used.has(`eth${i}`)) ifname = `eth${i}`;
  const { attach } = await import('../network/attach.js');
  const { resolveHostPorts } = await import('../network/host-ports.js');
  const res = await attach(opts, net, { containerId: target.containerId, netns: target.netns, ifname, name: target.name, aliases: many(values.alias), ports: resolveHostPorts(ports, opts.stateDir) });
  if (target.sandbox) {
    const { putSandbox } = await import('../network/sandboxes.js');
    target.sandbox.attachments.push({ network: net.name, ifname, addresses: res.addresses });
    await putSandbox(store, target.sandbox);
  }
  process.stdout.write(`${ifname} ${res.addresses.join(' ')}\n`);
  return 0;
}

export async function disconnect(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { ifname: { type: 'string' }, 'container-id': { type: 'string' } });
  if (values.help) return void process.stdout.write(DISCONNECT_HELP), 0;
  if (positionals.length !== 2) throw new UsageError('expected NETWORK and SANDBOX|NETNS');
  const store = await openStore();
  const { findNetwork } = await import('../network/model.js');
  const { listCached } = await import('../network/cache.js');
  const net = await findNetwork(store, positionals[0]!);
  const networkName = net?.name ?? positionals[0]!;
  const opts = await chainOptions();
  const target = await resolveTarget(store, positionals[1]!, values['container-id'] as string | undefined);
  const cached = listCached(opts.stateDir).filter((c) => c.networkName === networkName && c.containerId === target.containerId);
  const ifname = (values.ifname as string | undefined) ?? target.sandbox?.attachments.find((a) => a.network === networkName)?.ifname ?? cached[0]?.ifName;
  if (!ifname) throw new CliError(`"${positionals[1]}" is not connected to network "${networkName}"`);
  if (!net && !cached.length) throw new CliError(`network "${networkName}" not found`);
  const { detach } = await import('../network/attach.js');
  await detach(opts, net, networkName, { containerId: target.containerId, netns: target.netns, ifname });
  if (target.sandbox) {
    const { putSandbox } = await import('../network/sandboxes.js');
    target.sandbox.attachments = target.sandbox.attachments.filter((a) => !(a.network === networkName && a.ifname === ifname));
    await putSandbox(store, target.sandbox);
  }
  process.stdout.write(`${ifname}\n`);
  return 0;
}

