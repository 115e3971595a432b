// The `shoal-ipam` CNI plugin as the skel runs it, in its executable (cni/bin/shoal-ipam.ts) and in the
// daemon (src/daemon/cni-worker.ts): the skel
// does the protocol, src/ipam/cni-plugin.ts the work. The IPAM code (and node:sqlite) is
// imported inside each verb, so VERSION loads only this file and the skel.
import type { CniPlugin } from '../skel.js';
import { lazyVerbs } from '../lazy.js';

const impl = async () => (await import('../../src/ipam/cni-plugin.js')).shoalIpamPlugin;

export const plugin: CniPlugin = {
  name: 'shoal-ipam',
  about: 'Shoal IPAM plugin: host-local compatible address allocation on a crash-safe store',
  cniArgs: ['IP'],
  ...lazyVerbs(impl, ['add', 'del', 'check', 'status', 'gc']),
};
