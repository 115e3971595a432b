// The `shoal-dns` CNI plugin as the skel runs it, in its executable (cni/bin/shoal-dns.ts) and in the
// daemon (src/daemon/cni-worker.ts): a chained
// plugin that registers the container's name and aliases in the DNS registry and returns
// prevResult with the network's DNS merged in. The plugin code (and the store) load only inside
// each verb, so VERSION pays for this file and the skel alone.
import type { CniPlugin } from '../skel.js';
import { lazyVerbs } from '../lazy.js';

const impl = () => import('../../src/dns/registry-plugin.js');

export const plugin: CniPlugin = {
  name: 'shoal-dns',
  about: 'Shoal DNS plugin: registers container names for the Shoal daemon\'s DNS server',
  // podman sends the container name as K8S_POD_NAME (with IgnoreUnknown=1).
  cniArgs: ['K8S_POD_NAME', 'K8S_POD_NAMESPACE', 'K8S_POD_INFRA_CONTAINER_ID', 'K8S_POD_UID'],
  ...lazyVerbs(impl, ['add', 'del', 'check', 'gc']),
};
