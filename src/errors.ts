/**
 * Base error for everything Shoal throws on purpose. Each subclass has a stable string `code`
 * (callers branch on it, logs index on it) and keeps the underlying error as `cause`.
 * CNI numeric codes are assigned only at the skel boundary (cni/errors.ts), never here.
 */
export class ShoalError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** `failed to <verb> "<name>": <cause>` — the one message shape DESIGN.md §4.9 asks for. */
export function failedTo(verb: string, name: string, cause: unknown): string {
  return `failed to ${verb} "${name}": ${causeText(cause)}`;
}

export function causeText(cause: unknown): string {
  if (cause instanceof Error) return cause.message;
  return String(cause);
}

/**
 * CHECK of an attachment that left no trace (never added, or deleted): the CNI layer answers
 * code 3, "container unknown or does not exist", which also tells the runtime that no DEL is
 * needed. So it is thrown only when nothing of the attachment is there; one with some of its
 * parts left is a failed check instead, which the runtime cleans up with a DEL.
 */
export class AttachmentUnknownError extends ShoalError {
  constructor(message: string) {
    super('ECONTAINERUNKNOWN', message);
  }
}

/** True for a "container unknown" answer: this class, or a delegate's CNI error with code 3. */
export function isAttachmentUnknown(err: unknown): boolean {
  const e = err as { code?: unknown; cniCode?: unknown } | null;
  return e?.code === 'ECONTAINERUNKNOWN' || e?.cniCode === 3;
}
