// Entry point of the `shoal-macvlan` Node executable (bundled to dist/cni/lib/shoal-macvlan.js, run by
// dist/cni/shoal-node/shoal-macvlan): one CNI invocation on this process's fds. The plugin itself is
// cni/plugins/shoal-macvlan.ts, which the daemon runs too (dist/cni/shoal-macvlan forwards there when it is up).
import { runPluginProcess } from '../../src/kernel/process-io.js';
import { plugin } from '../plugins/shoal-macvlan.js';

void runPluginProcess(plugin);
