/**
 * shoal-ipam as a CNI plugin: the CniRequest -> IpamRequest adapter and the verbs. Used by the
 * `shoal-ipam` executable and, in-process, by the L2 plugins (DESIGN §6), so both see exactly
 * the same behaviour.
 */
import { invalidConfig } from '../../cni/errors.js';
import type { CniPlugin, CniRequest } from '../../cni/skel.js';
import { ipamAdd, ipamCheck, ipamDel, ipamGc, ipamStatus, type IpamRequest } from './plugin.js';

export function ipamRequest(req: CniRequest): IpamRequest {
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

export const shoalIpamPlugin: CniPlugin = {
  name: 'shoal-ipam',
  about: 'Shoal IPAM plugin: host-local compatible address allocation on a crash-safe store',
  // host-local's CNI_ARGS: a requested address list, "IP=10.1.0.5,fd00::5".
  cniArgs: ['IP'],
  add: async (req) => ipamAdd(ipamRequest(req)),
  del: async (req) => ipamDel(ipamRequest(req)),
  check: async (req) => ipamCheck({ ...ipamRequest(req), prevResult: req.prevResult }),
  status: async (req) => ipamStatus(ipamRequest(req)),
  gc: async (req) => {
    // The skel leaves validAttachments undefined when the request has no list; for IPAM reading
    // that as "nothing is valid" would release every address of the network.
    if (req.validAttachments === undefined) throw invalidConfig('cni.dev/valid-attachments', undefined, 'is required for GC');
    const validAttachments = req.validAttachments.map((a) => ({ containerId: a.containerID, ifname: a.ifname }));
    const report = await ipamGc({ ...ipamRequest(req), validAttachments });
    if (report.released.length) req.log.info({ released: report.released }, 'released stale allocations');
  },
};
