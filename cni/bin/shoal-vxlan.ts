// Entry point of the `shoal-vxlan` CNI executable (bundled to dist/cni/shoal-vxlan).
// Until its own issue lands, the plugin answers VERSION and reports the other verbs as not
// implemented (see cni/stub.ts). Keep this file thin: it is all a VERSION call loads.
import { runPluginProcess } from '../../src/kernel/process-io.js';
import { notImplementedPlugin } from '../stub.js';

void runPluginProcess(notImplementedPlugin('shoal-vxlan'));
