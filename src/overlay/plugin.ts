/**
 * shoal-vxlan: a container on an overlay network. The attachment is shoal-bridge's (MAC from the
 * address, IPAM in-process for shoal-ipam, addresses, routes, gateway addresses, masquerade, the
 * embedded portmap/discovery steps, with its rollback, DEL, CHECK and GC) with the container's
 * link a macvlan on the network's VXLAN device (attachment.ts) instead of a veth on a bridge;
 * the VXLAN device and the gateway (device.ts) are ensured before the attachment is made.
 * Remote endpoints are not this plugin's: the daemon programs them (peers.ts) from the cluster
 * store.
 *
 * Everything that can be checked without touching the kernel is checked before anything is
 * made (this plugin's fields, the bridge options, a shoal-ipam config, the netns, the underlay,
 * the MTU), so bad input leaves nothing behind. As with shoal-bridge, the shared devices (VXLAN
 * device, gateway) stay once made, even when a later step of the ADD fails: other containers of
 * the network may use them, and DEL never removes them.
 */
import { CniCode, CniError } from '../../cni/errors.js';
import type { CniRequest } from '../../cni/skel.js';
import type { CniResult } from '../../cni/types.js';
import { NetnsNotFoundError } from '../kernel/errors.js';
import { netnsExists } from '../kernel/netns.js';
import { withRtnl } from '../kernel/rtnl.js';
import { parseBridgeConf, requestedMac } from '../bridge/config.js';
import { AttachmentCheckError } from '../bridge/errors.js';
import { bridgeConfig, parseVxlanConf, parseVxlanConfForDel, type VxlanConf } from './config.js';
import { ensureOverlayDevice, overlayDeviceProblems, overlayMtu } from './device.js';
import { resolveUnderlay } from './underlay.js';
import { OVERLAY_LINK_KIND, overlayLinkCheck, overlayLinkMaker } from './attachment.js';

const bridgePlugin = () => import('../bridge/bridge-plugin.js');

function withConfig(req: CniRequest, config: CniRequest['config']): CniRequest {
  return { ...req, config };
}

/** Validates a shoal-ipam section without allocating (other IPAM types validate when run). */
async function checkIpamConfig(req: CniRequest): Promise<void> {
  if (req.config.ipam?.type !== 'shoal-ipam') return;
  const { parseIpamConfig } = await import('../ipam/config.js');
  parseIpamConfig(req.config.ipam, req.config.runtimeConfig);
}

export async function add(req: CniRequest): Promise<CniResult> {
  const conf = parseVxlanConf(req.config);
  // The bridge step's own refusals (its options, a requested MAC) before anything is made.
  parseBridgeConf(bridgeConfig(req.config, conf, conf.mtu));
  requestedMac(req);
  await checkIpamConfig(req);
  if (!netnsExists(req.netns)) throw new NetnsNotFoundError(req.netns);
  const device = withRtnl(undefined, (host) => {
    const underlay = resolveUnderlay(host, conf.underlay);
    return ensureOverlayDevice(host, { network: conf.network, vni: conf.vni, gateway: conf.bridge, underlay, mtu: conf.mtu });
  });
  const maker = overlayLinkMaker(conf.network, conf.vni, device.gateway);
  return (await bridgePlugin()).add(withConfig(req, bridgeConfig(req.config, conf, device.mtu)), maker);
}

export async function del(req: CniRequest): Promise<void> {
  const conf = parseVxlanConfForDel(req.config);
  await (await bridgePlugin()).del(withConfig(req, bridgeConfig(req.config, conf, undefined)), OVERLAY_LINK_KIND);
}

export async function check(req: CniRequest): Promise<void> {
  const conf: VxlanConf = parseVxlanConf(req.config);
  const bridge = await bridgePlugin();
  const bridgeReq = withConfig(req, bridgeConfig(req.config, conf, undefined));
  const maker = overlayLinkCheck(conf.network, conf.vni);
  // An attachment never added is unknown (code 3) even where the overlay device is missing too.
  await bridge.checkKnown(bridgeReq, maker);
  const problems = withRtnl(undefined, (host) => {
    const underlay = resolveUnderlay(host, conf.underlay);
    return overlayDeviceProblems(host, { network: conf.network, vni: conf.vni, gateway: conf.bridge, underlay });
  });
  if (problems.length > 0) throw new AttachmentCheckError(`failed to check overlay "${conf.network}": ${problems.join('; ')}`);
  await bridge.check(bridgeReq, { knownChecked: true, maker });
}

/** Ready when the IPAM is and the underlay can be found (without it no ADD can succeed). */
export async function status(req: CniRequest): Promise<void> {
  const conf = parseVxlanConf(req.config);
  try {
    withRtnl(undefined, (host) => overlayMtu(resolveUnderlay(host, conf.underlay), conf.mtu));
  } catch (err) {
    throw new CniError(CniCode.PluginNotAvailable, `overlay "${conf.network}" cannot add containers: ${err instanceof Error ? err.message : String(err)}`, undefined, { cause: err });
  }
  await (await bridgePlugin()).status(withConfig(req, bridgeConfig(req.config, conf, undefined)));
}

export async function gc(req: CniRequest): Promise<void> {
  const conf = parseVxlanConfForDel(req.config);
  await (await bridgePlugin()).gc(withConfig(req, bridgeConfig(req.config, conf, undefined)));
}
