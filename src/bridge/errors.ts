/** Errors of the L2 plugins, with stable string codes (CNI numbers are picked in cni/errors.ts). */
import { ShoalError } from '../errors.js';

/** CHECK found the attachment different from what ADD made (a tampered or broken setup). */
export class AttachmentCheckError extends ShoalError {
  constructor(message: string) {
    super('ECHECKFAILED', message);
  }
}

/** An existing kernel object stands in the way (e.g. a non-bridge link named like the bridge). */
export class LinkConflictError extends ShoalError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ELINKCONFLICT', message, options);
  }
}

/** The IPAM answered ADD without an address for the interface. */
export class NoAddressError extends ShoalError {
  constructor(message: string) {
    super('ENOADDRESS', message);
  }
}
