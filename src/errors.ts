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
