/** `shoal network create`: see HELP. All validation happens before anything is written. */
import { CliError, parse, many, keyValues, UsageError, openStore, stateDir } from './common.js';
import { cniConfDir, CreateInputError, DEFAULT_CNI_CONF_DIR } from '../network/manage.js';

export const CREATE_HELP = `Usage: shoal network create [OPTIONS] NAME

Create a network: record it in the state store and write its CNI conflist into the CNI config
dir, where podman's CNI backend and "shoal run" find it. A bridge network's conflist is one
plugin (shoal-bridge running address allocation, published ports and DNS registration in one
process); macvlan/ipvlan chain shoal-portmap and shoal-dns after the main plugin. Without --subnet a free private subnet is picked that overlaps neither
the host's routes nor other Shoal networks.

An overlay network (--driver overlay) spans the nodes of a cluster: the local daemon (started
with --store etcd://...) records it in etcd with a cluster-unique VNI, and every node's daemon
writes its conflist (shoal-vxlan). Without --subnet a free /16 is picked (each node leases /26
blocks of it).

Options:
  -d, --driver DRIVER      bridge (default), macvlan, ipvlan or overlay
      --subnet CIDR        subnet (repeatable: one IPv4 and one IPv6)
      --ip-range CIDR      allocate container addresses from this sub-range
      --gateway IP         gateway of the subnet it falls in
      --ipv6               add an IPv6 subnet (picked when none is given)
      --internal           no masquerade, no route off the host
      --attachable         accepted for docker compatibility (every network is)
  -o, --opt K=V            driver options: bridge: bridge, mtu, isolate (true|false|strict),
                           ipMasq, hairpinMode, macspoofchk; macvlan/ipvlan: parent, mode, mtu;
                           overlay: vni, mtu
      --mtu N              overlay: MTU (default: the underlay's minus 50)
      --dns IP             upstream resolver for names the network does not know (repeatable)
      --dns-search DOMAIN  search domain handed to containers (first one: the DNS domain)
      --add-host NAME:IP   a name the network's DNS answers (repeatable)
      --cni-conf-dir DIR   where to write the conflist (default: $SHOAL_CNI_CONF_DIR, else ${DEFAULT_CNI_CONF_DIR})
`;

export async function create(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    driver: { type: 'string', short: 'd', default: 'bridge' },
    subnet: { type: 'string', multiple: true },
    'ip-range': { type: 'string', multiple: true },
    gateway: { type: 'string', multiple: true },
    ipv6: { type: 'boolean' },
    internal: { type: 'boolean' },
    attachable: { type: 'boolean' },
    opt: { type: 'string', short: 'o', multiple: true },
    dns: { type: 'string', multiple: true },
    'dns-search': { type: 'string', multiple: true },
    'add-host': { type: 'string', multiple: true },
    'cni-conf-dir': { type: 'string', default: cniConfDir() },
    mtu: { type: 'string' },
  });
  if (values.help) {
    process.stdout.write(CREATE_HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError(positionals.length ? `expected one network name, got ${positionals.length}` : 'missing network name');
  const input = {
    name: positionals[0]!,
    driver: values.driver as string,
    subnets: many(values.subnet),
    gateways: many(values.gateway),
    ipRanges: many(values['ip-range']),
    ipv6: values.ipv6 === true,
    internal: values.internal === true,
    attachable: values.attachable === true,
    options: keyValues('--opt', many(values.opt)),
    dns: many(values.dns),
    dnsSearch: many(values['dns-search']),
    addHosts: many(values['add-host']),
    confDir: values['cni-conf-dir'] as string,
    stateDir: stateDir(),
  };
  if (input.driver === 'overlay') {
    const options = { ...input.options, ...(values.mtu !== undefined ? { mtu: values.mtu as string } : {}) };
    const { daemonCall } = await import('./node.js');
    const net = (await daemonCall('POST', '/v1/networks', { ...input, options })) as { name: string };
    process.stdout.write(`${net.name}\n`);
    return 0;
  }
  if (values.mtu !== undefined) throw new UsageError('--mtu is for --driver overlay; bridge networks take -o mtu=N');
  const { planNetwork, createNetwork } = await import('../network/manage.js');
  const { hostRoutes } = await import('../network/host-routes.js');
  const store = await openStore();
  try {
    const net = await planNetwork(store, input, hostRoutes());
    await createNetwork(store, net);
    process.stdout.write(`${net.name}\n`);
    return 0;
  } catch (err) {
    if (err instanceof CreateInputError) throw new CliError(err.message);
    throw err;
  }
}
