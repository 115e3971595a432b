// The `shoal-portmap` CNI plugin as the skel runs it, in its executable (cni/bin/shoal-portmap.ts) and in the
// daemon (src/daemon/cni-worker.ts).
// Keep this file thin: it is all a VERSION call loads; the plugin code is imported by the verbs.
import type { CniPlugin } from '../skel.js';
import { lazyVerbs } from '../lazy.js';

const impl = () => import('../../src/portmap/plugin.js');
export const plugin: CniPlugin = {
  name: 'shoal-portmap',
  about: 'Shoal CNI plugin shoal-portmap: publishes host ports into the container (nftables DNAT)',
  cniArgs: ['K8S_POD_NAME'],
  ...lazyVerbs(impl, ['add', 'del', 'check', 'gc']),
};
