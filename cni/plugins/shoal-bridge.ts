// The `shoal-bridge` CNI plugin as the skel runs it, in its executable (cni/bin/shoal-bridge.ts) and in the
// daemon (src/daemon/cni-worker.ts): the skel
// does the protocol, src/bridge/bridge-plugin.ts the work. Kept thin for start-up time: the
// plugin code (kernel layer, config schemas, IPAM; portmap and dns when the config embeds them,
// src/bridge/embedded.ts) is imported inside each verb, never for VERSION.
import type { CniPlugin } from '../skel.js';
import { lazyVerbs } from '../lazy.js';

const impl = () => import('../../src/bridge/bridge-plugin.js');

export const plugin: CniPlugin = {
  name: 'shoal-bridge',
  about: 'Shoal bridge plugin: containers on a Linux bridge through veth pairs',
  // MAC: the requested container MAC (reference); IP: requested addresses, passed to the IPAM;
  // K8S_POD_NAME: the container name, for the embedded portmap record and DNS registration.
  cniArgs: ['MAC', 'IP', 'K8S_POD_NAME', 'K8S_POD_NAMESPACE', 'K8S_POD_INFRA_CONTAINER_ID', 'K8S_POD_UID'],
  ...lazyVerbs(impl, ['add', 'del', 'check', 'status', 'gc']),
};
