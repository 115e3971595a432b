import { ShoalError } from '../errors.js';

/**
 * IPAM's errors. Each has a stable string code; the CNI numeric code is chosen at the skel
 * boundary (cni/errors.ts). The mapping this module expects is listed in src/ipam/README.md.
 */

/** A config field is missing, malformed or contradicts another one. `field` is a path like `ipam.ranges[0][1].rangeStart`. */
export class InvalidIpamConfigError extends ShoalError {
  readonly field: string;
  readonly value: unknown;

  constructor(field: string, value: unknown, problem: string) {
    // The same shape as the CNI layer's code-7 messages (cni/errors.ts invalidConfig).
    const shown = value === undefined ? '' : ` = ${JSON.stringify(value)}`;
    super('EINVALIDCONFIG', `invalid network config: field "${field}"${shown}: ${problem}`);
    this.field = field;
    this.value = value;
  }
}

/** A requested address is already held by another attachment. */
export class AddressInUseError extends ShoalError {
  constructor(address: string, network: string, owner: { containerId: string; ifname: string }) {
    super(
      'EADDRINUSE',
      `requested address ${address} in network "${network}" is already allocated to container ${owner.containerId} interface ${owner.ifname}`,
    );
  }
}

/** A requested address is not one this network may hand out (outside every range, a gateway, excluded). */
export class AddressNotAllocatableError extends ShoalError {
  readonly field: string;

  constructor(field: string, address: string, why: string) {
    super('EADDRNOTAVAIL', `requested address ${address} (from ${field}) cannot be allocated: ${why}`);
    this.field = field;
  }
}

/** A range set has no free address left. */
export class RangeExhaustedError extends ShoalError {
  constructor(network: string, rangeSetIndex: number, rangeSet: string) {
    super('ERANGEEXHAUSTED', `no free address left in network "${network}" range set ${rangeSetIndex} (${rangeSet})`);
  }
}

/** A cluster network has no free address in this node's blocks of `family`: a new block is needed. */
export class NodeBlocksFullError extends ShoalError {
  constructor(
    readonly network: string,
    readonly rangeSetIndex: number,
  ) {
    super('EBLOCKSFULL', `no free address left in this node's address blocks of network "${network}" range set ${rangeSetIndex}`);
  }
}

/** STATUS: the network cannot serve another ADD until addresses are released (CNI code 50). */
export class NetworkUnavailableError extends ShoalError {
  constructor(message: string) {
    super('ENOTAVAILABLE', message);
  }
}

/** ADD for a (container id, ifname) that already holds addresses in this network. */
export class DuplicateAttachmentError extends ShoalError {
  constructor(network: string, containerId: string, ifname: string, addresses: string[]) {
    super(
      'EDUPLICATEATTACHMENT',
      `container ${containerId} interface ${ifname} already holds ${addresses.join(', ')} in network "${network}"; DEL it first`,
    );
  }
}

/** CHECK: what the store holds for the attachment differs from prevResult. */
export class AllocationMismatchError extends ShoalError {
  constructor(message: string) {
    super('EALLOCATIONMISMATCH', message);
  }
}

/** GC finished but could not release some attachments; `failures` names each. */
export class GarbageCollectionError extends ShoalError {
  readonly failures: ReadonlyArray<{ containerId: string; ifname: string; error: unknown }>;

  constructor(network: string, failures: ReadonlyArray<{ containerId: string; ifname: string; error: unknown }>) {
    const first = failures[0]!;
    const firstText = first.error instanceof Error ? first.error.message : String(first.error);
    super(
      'EGCINCOMPLETE',
      `failed to release ${failures.length} stale attachment(s) in network "${network}"; first: container ${first.containerId} interface ${first.ifname}: ${firstText}`,
    );
    this.failures = failures;
  }
}
