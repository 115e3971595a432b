// Entry point of the `shoal-ipvlan` Node executable (bundled to dist/cni/lib/shoal-ipvlan.js, run by
// dist/cni/shoal-node/shoal-ipvlan): one CNI invocation on this process's fds. The plugin itself is
// cni/plugins/shoal-ipvlan.ts, which the daemon runs too (dist/cni/shoal-ipvlan forwards there when it is up).
import { runPluginProcess } from '../../src/kernel/process-io.js';
import { plugin } from '../plugins/shoal-ipvlan.js';

void runPluginProcess(plugin);
