/**
 * A CNI worker thread of the daemon (bundled to dist/cni/lib/shoal-cni-worker.js, started by
 * cni-pool.ts). It runs one request at a time through the skel (`pluginMain`) and the very plugin
 * definitions the Node executables run (cni/plugins/), so both paths answer alike; only the I/O
 * differs: the request's environment and stdin in, stdout/stderr text and the exit status out.
 *
 * Why a thread (DESIGN §6): a plugin enters the container's network namespace (setns) to open
 * its sockets there, and Linux keeps the namespace per thread. Here it is this worker's thread
 * that switches, never the daemon's main thread serving DNS and metrics. Staying warm across
 * requests (loaded code, JIT, the open store) is the point of the daemon path.
 *
 * Per request the thread's `process.env` (each worker has its own copy) becomes the runtime's
 * environment, as the executable would see it: code that reads process.env (state dir, run dir)
 * reads the runtime's values. SHOAL_CNI_FORWARD=0 is added so that a plugin this request execs
 * (an IPAM delegate through CNI_PATH) runs as a process of its own instead of queueing behind
 * this very request on the daemon's socket.
 */
import { parentPort } from 'node:worker_threads';
import { pluginMain, type CniPlugin } from '../../cni/skel.js';
import { useLibnftables } from '../kernel/nftables-exec.js';
import { runDeferredCheckpoints, setStoreDefaults } from '../store/open.js';
import { plugin as bridge } from '../../cni/plugins/shoal-bridge.js';
import { plugin as dns } from '../../cni/plugins/shoal-dns.js';
import { plugin as ipam } from '../../cni/plugins/shoal-ipam.js';
import { plugin as ipvlan } from '../../cni/plugins/shoal-ipvlan.js';
import { plugin as macvlan } from '../../cni/plugins/shoal-macvlan.js';
import { plugin as portmap } from '../../cni/plugins/shoal-portmap.js';
import { plugin as vxlan } from '../../cni/plugins/shoal-vxlan.js';
import type { CniWireRequest, CniWireResponse } from './cni-protocol.js';

const PLUGINS: Record<string, CniPlugin> = {
  'shoal-bridge': bridge,
  'shoal-dns': dns,
  'shoal-ipam': ipam,
  'shoal-ipvlan': ipvlan,
  'shoal-macvlan': macvlan,
  'shoal-portmap': portmap,
  'shoal-vxlan': vxlan,
};

export interface WorkerRequest extends CniWireRequest {
  id: number;
}
export interface WorkerResponse extends CniWireResponse {
  id: number;
}

/** Runs one request; never rejects (a failure is the skel's CNI error on stdout). */
export async function runRequest(req: CniWireRequest): Promise<CniWireResponse> {
  const plugin = PLUGINS[req.type];
  if (!plugin) {
    const msg = `no Shoal CNI plugin of type ${JSON.stringify(req.type)}`;
    return { exitCode: 1, stdout: `${JSON.stringify({ cniVersion: '1.1.0', code: 4, msg })}\n`, stderr: `${msg}\n` };
  }
  const env = { ...req.env, SHOAL_CNI_FORWARD: '0' };
  replaceProcessEnv(env);
  let stdout = '';
  let stderr = '';
  let exitCode = 1;
  await pluginMain(plugin, {
    env,
    stdin: req.stdin,
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
    exit: (code) => {
      exitCode = code;
    },
  });
  return { exitCode, stdout, stderr };
}

function replaceProcessEnv(env: Record<string, string>): void {
  for (const key of Object.keys(process.env)) delete process.env[key];
  Object.assign(process.env, env);
}

/**
 * Loads every plugin's code before the first request, so that one does not pay for it. The
 * loaders are the verbs' own lazy imports; a STATUS with an empty config would do more.
 */
async function preload(): Promise<void> {
  await Promise.all([
    import('../bridge/bridge-plugin.js'),
    import('../bridge/sublink-plugin.js'),
    import('../ipam/cni-plugin.js'),
    import('../dns/registry-plugin.js'),
    import('../portmap/plugin.js'),
    import('../overlay/plugin.js'),
    import('../../cni/config.js'),
    import('../../cni/types.js'),
  ]);
}

if (parentPort) {
  const port = parentPort;
  // nftables in-process (libnftables), not an nft process per masquerade or portmap change.
  useLibnftables();
  // This thread stays up, so the WAL checkpoint after a request's commits can wait until the
  // runtime has its answer (SqliteStore.runDeferredCheckpoint); the commits are durable before.
  setStoreDefaults({ deferCheckpoint: true });
  port.on('message', (msg: WorkerRequest) => {
    void runRequest(msg)
      .catch((err: unknown): CniWireResponse => {
        const text = `failed to run ${msg.type}: ${(err as Error).message}`;
        return { exitCode: 1, stdout: `${JSON.stringify({ cniVersion: '1.1.0', code: 999, msg: text })}\n`, stderr: `${text}\n` };
      })
      .then((res) => port.postMessage({ ...res, id: msg.id } satisfies WorkerResponse))
      .then(runDeferredCheckpoints)
      .catch(() => undefined);
  });
  void preload().then(
    () => port.postMessage({ ready: true }),
    (err: unknown) => port.postMessage({ ready: false, error: (err as Error).message }),
  );
}
