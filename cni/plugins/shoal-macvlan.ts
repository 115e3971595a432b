// The `shoal-macvlan` CNI plugin as the skel runs it, in its executable (cni/bin/shoal-macvlan.ts) and in the
// daemon (src/daemon/cni-worker.ts): the skel does
// the protocol, src/bridge/sublink-plugin.ts the work, imported only inside each verb.
import type { CniPlugin } from '../skel.js';

const impl = () => import('../../src/bridge/sublink-plugin.js');

export const plugin: CniPlugin = {
  name: 'shoal-macvlan',
  about: 'Shoal macvlan plugin: a macvlan link on a parent interface, moved into the container',
  cniArgs: ['IP', 'K8S_POD_NAME', 'K8S_POD_NAMESPACE', 'K8S_POD_INFRA_CONTAINER_ID', 'K8S_POD_UID'],
  add: async (req) => (await impl()).add('macvlan', req),
  del: async (req) => (await impl()).del('macvlan', req),
  check: async (req) => (await impl()).check('macvlan', req),
  status: async (req) => (await impl()).status(req),
  gc: async (req) => (await impl()).gc(req),
};
