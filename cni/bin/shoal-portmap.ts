// Entry point of the `shoal-portmap` CNI executable (bundled to dist/cni/shoal-portmap).
// Keep this file thin: it is all a VERSION call loads; the plugin code is imported by the verbs.
import { runPluginProcess } from '../../src/kernel/process-io.js';
import { lazyVerbs } from '../lazy.js';

const impl = () => import('../../src/portmap/plugin.js');
void runPluginProcess({
  name: 'shoal-portmap',
  about: 'Shoal CNI plugin shoal-portmap: publishes host ports into the container (nftables DNAT)',
  cniArgs: ['K8S_POD_NAME'],
  ...lazyVerbs(impl, ['add', 'del', 'check', 'gc']),
});
