// The `shoal-vxlan` CNI plugin as the skel runs it, in its executable (cni/bin/shoal-vxlan.ts) and in the
// daemon (src/daemon/cni-worker.ts): the skel
// does the protocol, src/overlay/plugin.ts the work (the overlay's VXLAN device, then
// shoal-bridge's attachment). Kept thin for start-up time: the plugin code is imported inside
// each verb, never for VERSION.
import type { CniPlugin } from '../skel.js';
import { lazyVerbs } from '../lazy.js';

const impl = () => import('../../src/overlay/plugin.js');

export const plugin: CniPlugin = {
  name: 'shoal-vxlan',
  about: 'Shoal VXLAN overlay plugin: containers on a bridge joined to the other nodes through a VXLAN device',
  // The same keys as shoal-bridge, whose attachment code this plugin runs.
  cniArgs: ['MAC', 'IP', 'K8S_POD_NAME', 'K8S_POD_NAMESPACE', 'K8S_POD_INFRA_CONTAINER_ID', 'K8S_POD_UID'],
  ...lazyVerbs(impl, ['add', 'del', 'check', 'status', 'gc']),
};
