/**
 * CNI error codes and the one place where Shoal's error classes become CNI numeric codes
 * (DESIGN.md §4.9: numeric codes appear only at the skel boundary).
 *
 * This module is loaded on every invocation, VERSION included, so it imports nothing heavy:
 * Shoal errors are recognised by their string `code`, not by importing their classes.
 */

/** Well-known error codes (SPEC.md "Error codes"); 1-99 are reserved, 100+ are plugin-specific. */
export const CniCode = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnvironment: 4,
  IOFailure: 5,
  DecodingFailure: 6,
  InvalidNetworkConfig: 7,
  TryAgainLater: 11,
  /** STATUS: the plugin cannot service ADD requests. */
  PluginNotAvailable: 50,
  /** STATUS: not available, and existing containers may have limited connectivity. */
  PluginNotAvailableLimitedConnectivity: 51,
  /**
   * Plugin-specific (100+, SPEC.md leaves them to plugins): a host port (or a container
   * address and port) another attachment already publishes. Not retryable: it stays taken
   * until the holder is deleted. The message names the port, protocol and holder.
   */
  PortInUse: 100,
  /** Nothing else fits (the reference skel's ErrInternal). */
  Internal: 999,
} as const;

/** An error that already carries its CNI code; plugins throw this when they know the code. */
export class CniError extends Error {
  readonly cniCode: number;
  readonly details: string | undefined;

  constructor(cniCode: number, msg: string, details?: string, options?: { cause?: unknown }) {
    super(msg, options);
    this.name = 'CniError';
    this.cniCode = cniCode;
    this.details = details;
  }
}

/** The JSON error object SPEC.md asks for on stdout. */
export interface CniErrorJson {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

/**
 * Shoal error `code` strings (src/errors.ts subclasses) that mean something specific to a
 * runtime. Anything not listed becomes 999 unless the error is marked retryable.
 */
const CODE_BY_SHOAL_CODE: Record<string, number> = {
  ENETNSNOTFOUND: CniCode.UnknownContainer,
  ECONTAINERUNKNOWN: CniCode.UnknownContainer,
  EINVALIDCONFIG: CniCode.InvalidNetworkConfig,
  ECONFIG: CniCode.InvalidNetworkConfig,
  EUNSUPPORTEDFIELD: CniCode.UnsupportedField,
  ETRYAGAIN: CniCode.TryAgainLater,
  ESTOREBUSY: CniCode.TryAgainLater,
  ESTORELOCKED: CniCode.TryAgainLater,
  ENOTAVAILABLE: CniCode.PluginNotAvailable,
  EPORTCONFLICT: CniCode.PortInUse,
};

/** errno names (SyscallError/NetlinkError `errnoName`, Node `code`) that a retry may cure. */
const TRANSIENT_ERRNOS = new Set(['EAGAIN', 'EWOULDBLOCK', 'EBUSY', 'EINTR', 'ETIMEDOUT']);
/** Node I/O error codes: the spec's "I/O failure". */
const IO_ERRNOS = new Set(['EIO', 'EPIPE', 'ECONNRESET', 'ENOSPC', 'EROFS', 'EBADF']);

interface ErrorLike {
  code?: unknown;
  errnoName?: unknown;
  retryable?: unknown;
  cause?: unknown;
  rollbackFailures?: unknown;
}

/** Picks the CNI code for any thrown value. */
export function cniCodeOf(err: unknown): number {
  if (err instanceof CniError) return err.cniCode;
  if (typeof err !== 'object' || err === null) return CniCode.Internal;
  const e = err as ErrorLike;
  if (e.retryable === true) return CniCode.TryAgainLater;
  if (typeof e.code === 'string') {
    const mapped = CODE_BY_SHOAL_CODE[e.code];
    if (mapped !== undefined) return mapped;
    if (TRANSIENT_ERRNOS.has(e.code)) return CniCode.TryAgainLater;
    if (IO_ERRNOS.has(e.code)) return CniCode.IOFailure;
  }
  if (typeof e.errnoName === 'string' && TRANSIENT_ERRNOS.has(e.errnoName)) return CniCode.TryAgainLater;
  return CniCode.Internal;
}

function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/**
 * The cause chain as text, outermost first, skipping a cause whose message the outer message
 * already contains (failedTo() embeds its cause). Never includes a stack trace.
 */
export function causeChainText(err: unknown): string | undefined {
  const parts: string[] = [];
  let outer = messageOf(err);
  let current = (err as ErrorLike | null)?.cause;
  for (let depth = 0; current !== undefined && current !== null && depth < 10; depth++) {
    const text = messageOf(current);
    if (!outer.includes(text)) parts.push(text);
    outer = text;
    current = (current as ErrorLike).cause;
  }
  return parts.length > 0 ? parts.join(': ') : undefined;
}

/** Converts anything thrown into the spec's error object, in `cniVersion`. */
export function toCniErrorJson(err: unknown, cniVersion: string): CniErrorJson {
  const code = cniCodeOf(err);
  const msg = messageOf(err) || 'unknown error';
  const detailParts: string[] = [];
  if (err instanceof CniError && err.details) detailParts.push(err.details);
  const chain = causeChainText(err);
  if (chain) detailParts.push(chain);
  const rollback = (err as ErrorLike | null)?.rollbackFailures;
  if (Array.isArray(rollback) && rollback.length > 0) {
    detailParts.push(`rollback left work undone: ${rollback.join('; ')}`);
  }
  const json: CniErrorJson = { cniVersion, code, msg };
  if (detailParts.length > 0) json.details = detailParts.join('; ');
  return json;
}

/** Code 4, naming the variable(s). */
export function invalidEnv(variables: string | string[], problem: string, details?: string): CniError {
  const names = Array.isArray(variables) ? variables.join(', ') : variables;
  return new CniError(CniCode.InvalidEnvironment, `${problem}: ${names}`, details);
}

/** Code 2: SPEC.md asks the message to contain the key and the value of the field. */
export function unsupportedField(field: string, value: unknown, why?: string): CniError {
  const suffix = why ? `: ${why}` : '';
  return new CniError(CniCode.UnsupportedField, `unsupported field "${field}" = ${showValue(value)}${suffix}`);
}

/** Code 7 naming the field path and the bad value. */
export function invalidConfig(field: string, value: unknown, problem: string): CniError {
  const what = value === undefined ? `field "${field}"` : `field "${field}": ${showValue(value)}`;
  return new CniError(CniCode.InvalidNetworkConfig, `invalid network config: ${what} ${problem}`);
}

/** A bad value as the user wrote it, cut short so one huge object cannot flood the message. */
export function showValue(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}
