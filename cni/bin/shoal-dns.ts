// Entry point of the `shoal-dns` Node executable (bundled to dist/cni/lib/shoal-dns.js, run by
// dist/cni/shoal-node/shoal-dns): one CNI invocation on this process's fds. The plugin itself is
// cni/plugins/shoal-dns.ts, which the daemon runs too (dist/cni/shoal-dns forwards there when it is up).
import { runPluginProcess } from '../../src/kernel/process-io.js';
import { plugin } from '../plugins/shoal-dns.js';

void runPluginProcess(plugin);
