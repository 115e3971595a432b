// Entry point of the `shoal-portmap` Node executable (bundled to dist/cni/lib/shoal-portmap.js, run by
// dist/cni/shoal-node/shoal-portmap): one CNI invocation on this process's fds. The plugin itself is
// cni/plugins/shoal-portmap.ts, which the daemon runs too (dist/cni/shoal-portmap forwards there when it is up).
import { runPluginProcess } from '../../src/kernel/process-io.js';
import { plugin } from '../plugins/shoal-portmap.js';

void runPluginProcess(plugin);
