/**
 * `shoal network create|ls|inspect|rm|connect|disconnect|prune`, like `docker network`.
 * create lives in network-create.ts, connect/disconnect in network-connect.ts.
 */
import { CliError, guard, parse, table, UsageError, openStore, stateDir } from './common.js';
import type { Store } from '../store/store.js';
import type { NetworkRecord } from '../network/model.js';

const HELP = `Usage: shoal network COMMAND

Manage networks.

Commands:
  create      create a network and write its CNI conflist
  ls          list networks
  inspect     show networks as JSON, with attached containers
  rm          remove networks (refused while containers are attached, unless --force)
  connect     attach a sandbox or a network namespace to a network
  disconnect  detach it again
  prune       remove every network without attached containers

Run "shoal network COMMAND --help" for a command's options.
`;

const LS_HELP = `Usage: shoal network ls [--format table|json] [-q]

List networks: name, id, driver, subnets, attached containers.
`;
const INSPECT_HELP = `Usage: shoal network inspect NETWORK...

Print networks as a JSON array: subnets, gateway, options, conflist path, attached containers
(podman containers too) with their addresses.
`;
const RM_HELP = `Usage: shoal network rm [-f|--force] NETWORK...

Remove networks: the record, the conflist and the bridge. Refused while containers are
attached; --force detaches them first (runs DEL for each attachment).
`;
const PRUNE_HELP = `Usage: shoal network prune [-f|--force]

Remove every network that has no attached containers.
`;

export function chainOptions() {
  return import('../network/chain.js').then(({ defaultPluginDir }) => ({ pluginDir: defaultPluginDir(), stateDir: stateDir() }));
}

/** Warns on stderr about attachments whose store records are unreadable (they still count). */
function warnUnreadable(command: string, problems: string[]): void {
  for (const p of problems) process.stderr.write(`shoal ${command}: warning: ${p}\n`);
}

async function requireNet(store: Store, query: string): Promise<NetworkRecord> {
  const { findNetwork } = await import('../network/model.js');
  const net = await findNetwork(store, query);
  if (!net) throw new CliError(`network "${query}" not found`);
  return net;
}

async function ls(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { format: { type: 'string', default: 'table' }, quiet: { type: 'boolean', short: 'q' } });
  if (values.help) return void process.stdout.write(LS_HELP), 0;
  if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  if (values.format !== 'table' && values.format !== 'json') throw new UsageError(`invalid --format "${values.format}": table or json`);
  const { listNetworks } = await import('../network/model.js');
  const { listAttachments, attachmentProblems } = await import('../network/attachments.js');
  const store = await openStore();
  const nets = await listNetworks(store);
  if (values.quiet) return void process.stdout.write(nets.map((n) => `${n.name}\n`).join('')), 0;
  const attached = await Promise.all(nets.map((n) => listAttachments(store, n)));
  nets.forEach((n, i) => warnUnreadable('network ls', attachmentProblems(n, attached[i]!)));
  const counts = attached.map((a) => a.length);
  if (values.format === 'json') {
    const rows = nets.map((n, i) => ({ name: n.name, id: n.id, driver: n.driver, subnets: n.subnets.map((s) => s.subnet), internal: n.internal, containers: counts[i], created: n.created }));
    process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
    return 0;
  }
  const rows = nets.map((n, i) => [n.id.slice(0, 12), n.name, n.driver, n.subnets.map((s) => s.subnet).join(','), String(counts[i])]);
  process.stdout.write(table(['NETWORK ID', 'NAME', 'DRIVER', 'SUBNETS', 'CONTAINERS'], rows));
  return 0;
}

async function inspect(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {});
  if (values.help) return void process.stdout.write(INSPECT_HELP), 0;
  if (!positionals.length) throw new UsageError('missing network name');
  const { listAttachments, attachmentProblems } = await import('../network/attachments.js');
  const { defaultGateway } = await import('../network/subnet.js');
  const store = await openStore();
  const out = [];
  for (const q of positionals) {
    const n = await requireNet(store, q);
    const containers = await listAttachments(store, n);
    warnUnreadable('network inspect', attachmentProblems(n, containers));
    out.push({
      name: n.name,
      id: n.id,
      driver: n.driver,
      created: n.created,
      subnets: n.subnets.map((s) => ({ ...s, gateway: s.gateway ?? (n.driver === 'bridge' ? defaultGateway(s.subnet) : undefined) })),
      gateway: n.driver === 'bridge' ? (n.subnets[0]!.gateway ?? defaultGateway(n.subnets[0]!.subnet)) : n.subnets[0]?.gateway,
      ipv6: n.ipv6,
      internal: n.internal,
      attachable: n.attachable,
      bridge: n.bridge,
      options: n.options,
      dns: n.dns,
      dnsSearch: n.dnsSearch,
      hosts: n.hosts,
      conflist: n.confFile,
      cniVersion: n.cniVersion,
      containers,
    });
  }
  process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  return 0;
}

/** Removes a network (src/network/remove.ts) with the CLI's plugin dir and state dir. */
async function removeNetwork(store: Store, net: NetworkRecord, force: boolean): Promise<void> {
  if (net.driver === 'overlay') {
    // A cluster network: removed from etcd by the daemon, then by every node's daemon here.
    const { daemonCall } = await import('./node.js');
    await daemonCall('DELETE', `/v1/networks?name=${encodeURIComponent(net.name)}`);
    return;
  }
  const { removeNetwork: remove } = await import('../network/remove.js');
  await remove(store, net, force, await chainOptions(), (problems) => warnUnreadable('network rm', problems));
}

async function rm(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { force: { type: 'boolean', short: 'f' } });
  if (values.help) return void process.stdout.write(RM_HELP), 0;
  if (!positionals.length) throw new UsageError('missing network name');
  const store = await openStore();
  // Resolve every name first: an unknown one fails the command before anything is removed.
  const nets = [];
  for (const q of positionals) nets.push(await requireNet(store, q));
  for (const net of nets) {
    await removeNetwork(store, net, values.force === true);
    process.stdout.write(`${net.name}\n`);
  }
  return 0;
}

async function prune(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { force: { type: 'boolean', short: 'f' } });
  if (values.help) return void process.stdout.write(PRUNE_HELP), 0;
  if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  const { listNetworks } = await import('../network/model.js');
  const { listAttachments, attachmentProblems } = await import('../network/attachments.js');
  const store = await openStore();
  for (const net of await listNetworks(store)) {
    // A cluster network is the cluster's: removing it because this node has no container on it would take it from every node.
    if (net.driver === 'overlay') continue;
    const attached = await listAttachments(store, net);
    warnUnreadable('network prune', attachmentProblems(net, attached));
    if (attached.length) continue;
    await removeNetwork(store, net, false);
    process.stdout.write(`${net.name}\n`);
  }
  return 0;
}

export async function run(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === '--help' || sub === '-h') {
    process.stdout.write(HELP);
    return sub === undefined ? 2 : 0;
  }
  const name = `network ${sub}`;
  switch (sub) {
    case 'create':
      return guard(name, async () => (await import('./network-create.js')).create(rest));
    case 'ls':
    case 'list':
      return guard(name, () => ls(rest));
    case 'inspect':
      return guard(name, () => inspect(rest));
    case 'rm':
    case 'remove':
      return guard(name, () => rm(rest));
    case 'prune':
      return guard(name, () => prune(rest));
    case 'connect':
      return guard(name, async () => (await import('./network-connect.js')).connect(rest));
    case 'disconnect':
      return guard(name, async () => (await import('./network-connect.js')).disconnect(rest));
    default:
      process.stderr.write(`shoal network: unknown command "${sub}"; see "shoal network --help"\n`);
      return 2;
  }
}
