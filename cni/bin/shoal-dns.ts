// Entry point of the `shoal-dns` CNI executable (bundled to dist/cni/shoal-dns).
// Until its own issue lands, the plugin answers VERSION and reports the other verbs as not
// implemented (see cni/stub.ts). Keep this file thin: it is all a VERSION call loads.
import { pluginMain } from '../skel.js';
import { notImplementedPlugin } from '../stub.js';

void pluginMain(notImplementedPlugin('shoal-dns'));
