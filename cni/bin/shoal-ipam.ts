// Entry point of the `shoal-ipam` CNI executable (bundled to dist/cni/shoal-ipam): the skel
// does the protocol, src/ipam/cni-plugin.ts the work. The IPAM code (and node:sqlite) is
// imported inside each verb, so VERSION loads only this file and the skel.
import { runPluginProcess } from '../../src/kernel/process-io.js';
import { lazyVerbs } from '../lazy.js';

const plugin = async () => (await import('../../src/ipam/cni-plugin.js')).shoalIpamPlugin;

void runPluginProcess({
  name: 'shoal-ipam',
  about: 'Shoal IPAM plugin: host-local compatible address allocation on a crash-safe store',
  cniArgs: ['IP'],
  ...lazyVerbs(plugin, ['add', 'del', 'check', 'status', 'gc']),
});
