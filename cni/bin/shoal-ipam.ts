// Entry point of the `shoal-ipam` Node executable (bundled to dist/cni/lib/shoal-ipam.js, run by
// dist/cni/shoal-node/shoal-ipam): one CNI invocation on this process's fds. The plugin itself is
// cni/plugins/shoal-ipam.ts, which the daemon runs too (dist/cni/shoal-ipam forwards there when it is up).
import { runPluginProcess } from '../../src/kernel/process-io.js';
import { plugin } from '../plugins/shoal-ipam.js';

void runPluginProcess(plugin);
