/** Errors of the overlay data plane, with stable string codes (CNI numbers are cni/errors.ts's). */
import { ShoalError } from '../errors.js';

/**
 * A setting of the overlay cannot be used: a field's value is wrong, or the kernel refused it
 * (then its extended-ack text is the problem). `field` names the config key (`vni`, `mtu`,
 * `underlayInterface`, `underlayAddress`); the message has the CNI layer's code-7 shape.
 */
export class OverlayConfigError extends ShoalError {
  readonly field: string;
  readonly value: unknown;

  constructor(field: string, value: unknown, problem: string, options?: { cause?: unknown }) {
    const shown = value === undefined ? '' : `: ${JSON.stringify(value)}`;
    super('EINVALIDCONFIG', `invalid network config: field "${field}"${shown} ${problem}`, options);
    this.field = field;
    this.value = value;
  }
}

/** Programming peers left some operations undone; `failures` says which and why. */
export class PeerSyncError extends ShoalError {
  readonly failures: readonly string[];

  constructor(device: string, failures: readonly string[]) {
    const more = failures.length > 1 ? ` (and ${failures.length - 1} more)` : '';
    super('EPEERSYNC', `failed to program overlay peers on "${device}": ${failures[0] ?? 'unknown error'}${more}`);
    this.failures = failures;
  }
}
