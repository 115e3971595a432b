// Entry point of the `shoal-bridge` Node executable (bundled to dist/cni/lib/shoal-bridge.js, run by
// dist/cni/shoal-node/shoal-bridge): one CNI invocation on this process's fds. The plugin itself is
// cni/plugins/shoal-bridge.ts, which the daemon runs too (dist/cni/shoal-bridge forwards there when it is up).
import { runPluginProcess } from '../../src/kernel/process-io.js';
import { plugin } from '../plugins/shoal-bridge.js';

void runPluginProcess(plugin);
