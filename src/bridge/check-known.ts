import type { CniRequest } from '../../cni/skel.js';
import { AttachmentUnknownError, isAttachmentUnknown } from '../errors.js';
import { AttachmentCheckError } from './errors.js';
import * as ipam from './ipam.js';

/** What a link plugin looked for in the kernel before checking the attachment in detail. */
export interface KernelTraces {
  /** Any kernel part of the attachment is there (its interface, its host veth). */
  present: boolean;
  /** What was looked for and not found, in words, for the message ("no interface "eth0" in ..."). */
  missing: string[];
}

/**
 * The first step of CHECK for bridge, macvlan, ipvlan and vxlan: an attachment with no trace at
 * all (no kernel part and, with an IPAM, no address) is unknown, CNI code 3, with a message
 * listing what is missing. One with some part left is checked in detail by the caller and fails
 * with the specific problem: code 3 would tell the runtime it need not DEL it. Runs the IPAM's
 * CHECK, whose "holds no addresses" is code 3 too and is turned into a failed check here when
 * the kernel still has the attachment's links.
 */
export async function checkAttachmentKnown(req: CniRequest, traces: KernelTraces): Promise<void> {
  const who = `container ${req.containerId} interface "${req.ifname}" of network "${req.config.name}"`;
  const unknown = (more: string[]) => new AttachmentUnknownError(`failed to check ${who}: it is not attached (${[...traces.missing, ...more].join('; ')})`);
  if (!req.config.ipam?.type) {
    if (!traces.present) throw unknown([]);
    return;
  }
  try {
    await ipam.check(req);
  } catch (err) {
    if (!isAttachmentUnknown(err)) throw err;
    if (traces.present) throw new AttachmentCheckError(`failed to check ${who}: its links exist but ${(err as Error).message}`);
    throw unknown(['no address allocated to it']);
  }
}
