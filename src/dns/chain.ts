/**
 * The handler chain (CoreDNS's plugin chain, reduced): each handler answers a query or passes
 * it on by returning undefined. Pure handlers (their answer depends only on the snapshot, the
 * client's scope and the question) come first, and their combined outcome is memoized on the
 * snapshot, so a repeated local query costs one Map lookup and no encoding.
 */
import type { RecordSnapshot, Scope } from './snapshot.js';
import { RCODE, type HandlerResult, type Question } from './types.js';

export interface QueryContext {
  question: Question;
  /** Question section bytes with the name lower-cased (what a forwarder sends upstream). */
  questionBytes: Buffer;
  dnssecOk: boolean;
  scope: Scope;
  snapshot: RecordSnapshot;
}

export type MaybePromise<T> = T | Promise<T>;

export interface Handler {
  readonly name: string;
  /** True when the answer depends only on snapshot, scope and question (memoizable). */
  readonly pure: boolean;
  handle(ctx: QueryContext): MaybePromise<HandlerResult | undefined>;
}

/** The network to charge a query to in metrics: the first one in the client's scope. */
export function scopeNetwork(scope: Scope): string {
  return scope.networks[0]?.name ?? 'none';
}

export class HandlerChain {
  readonly handlers: readonly Handler[];
  private readonly pureCount: number;

  constructor(handlers: Handler[]) {
    const firstImpure = handlers.findIndex((h) => !h.pure);
    if (firstImpure >= 0 && handlers.slice(firstImpure).some((h) => h.pure)) {
      throw new Error('pure DNS handlers must precede impure ones');
    }
    this.handlers = handlers;
    this.pureCount = firstImpure < 0 ? handlers.length : firstImpure;
  }

  resolve(ctx: QueryContext): MaybePromise<HandlerResult> {
    const q = ctx.question;
    const memoType = q.class === 1 ? q.type : q.type + q.class * 0x10000;
    let local = ctx.snapshot.cachedAnswer(ctx.scope, memoType, q.name);
    if (local === undefined) {
      local = null;
      for (let i = 0; i < this.pureCount; i += 1) {
        const r = (this.handlers[i] as Handler).handle(ctx) as HandlerResult | undefined;
        if (r) {
          local = r;
          break;
        }
      }
      if (!q.opaque) ctx.snapshot.rememberAnswer(ctx.scope, memoType, q.name, local);
    }
    if (local) return local;
    return this.runFrom(this.pureCount, ctx);
  }

  private runFrom(index: number, ctx: QueryContext): MaybePromise<HandlerResult> {
    for (let i = index; i < this.handlers.length; i += 1) {
      const r = (this.handlers[i] as Handler).handle(ctx);
      if (r instanceof Promise) {
        return r.then((v) => v ?? this.runFrom(i + 1, ctx));
      }
      if (r) return r;
    }
    return { kind: 'rcode', rcode: RCODE.REFUSED, network: scopeNetwork(ctx.scope) };
  }
}
