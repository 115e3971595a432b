// The `shoal-ipvlan` CNI plugin as the skel runs it, in its executable (cni/bin/shoal-ipvlan.ts) and in the
// daemon (src/daemon/cni-worker.ts): the skel does
// the protocol, src/bridge/sublink-plugin.ts the work, imported only inside each verb.
import type { CniPlugin } from '../skel.js';

const impl = () => import('../../src/bridge/sublink-plugin.js');

export const plugin: CniPlugin = {
  name: 'shoal-ipvlan',
  about: 'Shoal ipvlan plugin: a ipvlan link on a parent interface, moved into the container',
  cniArgs: ['IP', 'K8S_POD_NAME', 'K8S_POD_NAMESPACE', 'K8S_POD_INFRA_CONTAINER_ID', 'K8S_POD_UID'],
  add: async (req) => (await impl()).add('ipvlan', req),
  del: async (req) => (await impl()).del('ipvlan', req),
  check: async (req) => (await impl()).check('ipvlan', req),
  status: async (req) => (await impl()).status(req),
  gc: async (req) => (await impl()).gc(req),
};
