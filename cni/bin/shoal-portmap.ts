// Entry point of the `shoal-portmap` CNI executable (bundled to dist/cni/shoal-portmap).
// Keep this file thin: it is all a VERSION call loads; the plugin code is imported by the verbs.
import { runPluginProcess } from '../../src/kernel/process-io.js';

const impl = () => import('../../src/portmap/plugin.js');
void runPluginProcess({
  name: 'shoal-portmap',
  about: 'Shoal CNI plugin shoal-portmap: publishes host ports into the container (nftables DNAT)',
  cniArgs: ['K8S_POD_NAME'],
  add: async (req) => (await impl()).add(req),
  del: async (req) => (await impl()).del(req),
  check: async (req) => (await impl()).check(req),
  gc: async (req) => (await impl()).gc(req),
});
