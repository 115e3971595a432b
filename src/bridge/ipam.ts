/**
 * The L2 plugins' IPAM step. When `ipam.type` is `shoal-ipam` the IPAM library runs in this
 * process (DESIGN §6: a second Node start-up would cost ~60 ms per ADD); any other type is
 * executed through CNI_PATH by cni/invoke.ts, as the spec says.
 *
 * The in-process plugin is the executable's own (src/ipam/cni-plugin.ts), so both behave alike.
 */
import { delegateCheck, delegateDel, delegateGc, delegateStatus, ipamAdd, registerInProcessDelegate, type UndoStack } from '../../cni/invoke.js';
import type { CniPlugin, CniRequest } from '../../cni/skel.js';
import type { CniResult } from '../../cni/types.js';
import { NoAddressError } from './errors.js';

/** shoal-ipam as a CniPlugin, loaded only when a verb needs it. */
async function loadShoalIpam(): Promise<CniPlugin> {
  return (await import('../ipam/cni-plugin.js')).shoalIpamPlugin;
}

let registered = false;
function registerShoalIpam(): void {
  if (registered) return;
  registerInProcessDelegate('shoal-ipam', loadShoalIpam);
  registered = true;
}

/** ADD's IPAM step; the release is pushed on `undo`. A result without addresses is an error. */
export async function allocate(req: CniRequest, undo: UndoStack): Promise<CniResult> {
  registerShoalIpam();
  const result = await ipamAdd(req, undo);
  if (!result.ips?.length) throw new NoAddressError(`failed to configure "${req.ifname}": IPAM plugin "${req.config.ipam?.type ?? ''}" returned no IP configuration`);
  return result;
}

export async function release(req: CniRequest): Promise<void> {
  registerShoalIpam();
  await delegateDel(req);
}

export async function check(req: CniRequest): Promise<void> {
  registerShoalIpam();
  await delegateCheck(req);
}

export async function status(req: CniRequest): Promise<void> {
  registerShoalIpam();
  await delegateStatus(req);
}

export async function gc(req: CniRequest): Promise<void> {
  registerShoalIpam();
  await delegateGc(req);
}
