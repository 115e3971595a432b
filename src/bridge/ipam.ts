/**
 * The L2 plugins' IPAM step. When `ipam.type` is `shoal-ipam` the IPAM library runs in this
 * process (DESIGN §6: a second Node start-up would cost ~60 ms per ADD); any other type is
 * executed through CNI_PATH by cni/invoke.ts, as the spec says.
 *
 * The adapter below mirrors cni/bin/shoal-ipam.ts (CniRequest -> IpamRequest), so the in-process
 * call sees exactly what the executable would.
 */
import { invalidConfig } from '../../cni/errors.js';
import { delegateCheck, delegateDel, delegateGc, delegateStatus, ipamAdd, registerInProcessDelegate, type UndoStack } from '../../cni/invoke.js';
import type { CniPlugin, CniRequest } from '../../cni/skel.js';
import type { CniResult } from '../../cni/types.js';
import type { IpamRequest } from '../ipam/plugin.js';
import { NoAddressError } from './errors.js';

function ipamRequest(req: CniRequest): IpamRequest {
  const request: IpamRequest = {
    containerId: req.containerId,
    ifname: req.ifname,
    network: req.config.name,
    ipam: req.config.ipam,
    runtimeConfig: req.config.runtimeConfig,
    args: req.config.args,
    cniArgs: req.args,
  };
  if (req.netns) request.netns = req.netns;
  if (req.config.stateDir) request.stateDir = req.config.stateDir;
  return request;
}

/** shoal-ipam as a CniPlugin, loaded only when a verb needs it. */
async function loadShoalIpam(): Promise<CniPlugin> {
  const ipam = await import('../ipam/plugin.js');
  return {
    name: 'shoal-ipam',
    add: async (req) => ipam.ipamAdd(ipamRequest(req)),
    del: async (req) => ipam.ipamDel(ipamRequest(req)),
    check: async (req) => ipam.ipamCheck({ ...ipamRequest(req), prevResult: req.prevResult }),
    status: async (req) => ipam.ipamStatus(ipamRequest(req)),
    gc: async (req) => {
      // As the executable: a GC without the list must not read as "nothing is valid".
      if (req.validAttachments === undefined) throw invalidConfig('cni.dev/valid-attachments', undefined, 'is required for GC');
      const validAttachments = req.validAttachments.map((a) => ({ containerId: a.containerID, ifname: a.ifname }));
      const report = await ipam.ipamGc({ ...ipamRequest(req), validAttachments });
      if (report.released.length) req.log.info({ released: report.released }, 'released stale allocations');
    },
  };
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
