// Entry point of the `shoal-vxlan` Node executable (bundled to dist/cni/lib/shoal-vxlan.js, run by
// dist/cni/shoal-node/shoal-vxlan): one CNI invocation on this process's fds. The plugin itself is
// cni/plugins/shoal-vxlan.ts, which the daemon runs too (dist/cni/shoal-vxlan forwards there when it is up).
import { runPluginProcess } from '../../src/kernel/process-io.js';
import { plugin } from '../plugins/shoal-vxlan.js';

void runPluginProcess(plugin);
