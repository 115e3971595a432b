// Entry point of the `shoal-ipam` CNI executable (bundled to dist/cni/shoal-ipam): the skel
// does the protocol, src/ipam/plugin.ts does the work. The IPAM code (and better-sqlite3) is
// imported inside each verb, so VERSION loads only this file and the skel.
import { invalidConfig } from '../errors.js';
import { pluginMain, type CniRequest } from '../skel.js';
import type { IpamRequest } from '../../src/ipam/plugin.js';

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

const ipam = () => import('../../src/ipam/plugin.js');

void pluginMain({
  name: 'shoal-ipam',
  about: 'Shoal IPAM plugin: host-local compatible address allocation on a crash-safe store',
  // host-local's CNI_ARGS: a requested address list, "IP=10.1.0.5,fd00::5".
  cniArgs: ['IP'],
  add: async (req) => (await ipam()).ipamAdd(ipamRequest(req)),
  del: async (req) => (await ipam()).ipamDel(ipamRequest(req)),
  check: async (req) => (await ipam()).ipamCheck({ ...ipamRequest(req), prevResult: req.prevResult }),
  status: async (req) => (await ipam()).ipamStatus(ipamRequest(req)),
  gc: async (req) => {
    // The skel reads a missing list as "none valid"; for IPAM that would release every address
    // of the network on a malformed request, so insist on the key being there.
    if (req.config['cni.dev/valid-attachments'] === undefined && req.config['cni.dev/attachments'] === undefined) {
      throw invalidConfig('cni.dev/valid-attachments', undefined, 'is required for GC');
    }
    const validAttachments = (req.validAttachments ?? []).map((a) => ({ containerId: a.containerID, ifname: a.ifname }));
    const report = await (await ipam()).ipamGc({ ...ipamRequest(req), validAttachments });
    if (report.released.length) req.log.info({ released: report.released }, 'released stale allocations');
  },
});
