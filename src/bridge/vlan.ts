/**
 * A bridge `vlan` or `vlanTrunk` needs the bridge to filter VLANs. Whether it can is the
 * kernel's to say (some kernels are built without it), not a fact to hard-code: ADD asks it on a
 * short-lived bridge of its own and passes on the kernel's refusal. When the kernel agrees, the
 * answer is still a refusal, and an honest one: shoal-bridge does not program VLANs yet, and
 * ignoring the option would put the container on the untagged network the user did not ask for.
 */
import { unsupportedField } from '../../cni/errors.js';
import { bridgeVlanFilteringRefusal } from '../kernel/link.js';
import type { Rtnl } from '../kernel/rtnl.js';
import type { BridgeConf } from './config.js';
import { temporaryLinkName } from './names.js';

/** Throws code 2 naming the field when the config asks for a VLAN; returns otherwise. */
export function refuseVlan(host: Rtnl, conf: Pick<BridgeConf, 'vlan'>): void {
  if (!conf.vlan) return;
  const refusal = bridgeVlanFilteringRefusal(host, temporaryLinkName('vlp'));
  const why = refusal
    ? `the kernel refuses VLAN filtering on bridges (${refusal.kernelMessage ?? refusal.errnoName})`
    : 'shoal-bridge does not program VLANs yet (this kernel would filter them)';
  throw unsupportedField(conf.vlan.field, conf.vlan.value, why);
}
