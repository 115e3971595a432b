// Entry point of the `shoal-portmap` CNI executable (bundled to dist/cni/shoal-portmap).
// Until its own issue lands, the plugin answers VERSION and reports the other verbs as not
// implemented (see cni/stub.ts). Keep this file thin: it is all a VERSION call loads.
import { pluginMain } from '../skel.js';
import { notImplementedPlugin } from '../stub.js';

void pluginMain(notImplementedPlugin('shoal-portmap'));
