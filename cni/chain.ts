/**
 * Running a list of plugins as a runtime chains them (SPEC.md "Network configuration lists"):
 * ADD in order, each plugin's result the next one's prevResult; DEL in reverse order; CHECK in
 * order against the final result; GC to every plugin. Shared by the CLI's conflist runner
 * (src/network/chain.ts, plugins executed) and shoal-bridge's embedded steps
 * (src/bridge/embedded.ts, plugins called in-process); how one plugin is reached is run.ts.
 *
 * Cleanup goes as far as it can: DEL and GC run every plugin even when one fails, and hand the
 * errors back for the caller to raise after its own steps.
 */
import { CniCode, CniError } from './errors.js';

export type ChainVerb = 'ADD' | 'DEL' | 'CHECK' | 'GC';

/** One plugin of a chain, as the chain sees it. */
export interface ChainLink<R> {
  /** For messages: the plugin's type. */
  name: string;
  /** Runs `verb` with `prevResult`; ADD returns the plugin's result. */
  run(verb: ChainVerb, prevResult: R | undefined): Promise<R | undefined>;
  /** DEL only: true when this plugin provably holds nothing to remove (it is then skipped). */
  nothingToDelete?(prevResult: R | undefined): Promise<boolean>;
}

/**
 * ADD through `links` in order, starting from `prevResult`; `onAdded` runs after each plugin's
 * ADD succeeded (callers register its DEL for rollback there). Returns the last result.
 */
export async function chainAdd<R>(links: readonly ChainLink<R>[], prevResult: R | undefined, onAdded?: (link: ChainLink<R>, result: R) => void): Promise<R | undefined> {
  let result = prevResult;
  for (const link of links) {
    const next = await link.run('ADD', result);
    if (next === undefined) throw new CniError(CniCode.Internal, `${link.name} ADD produced no result`);
    result = next;
    onAdded?.(link, next);
  }
  return result;
}

/** DEL in reverse order; every plugin runs; returns the errors, first one first. */
export async function chainDel<R>(links: readonly ChainLink<R>[], prevResult: R | undefined): Promise<unknown[]> {
  const errors: unknown[] = [];
  for (const link of [...links].reverse()) {
    try {
      if (await link.nothingToDelete?.(prevResult)) continue;
      await link.run('DEL', prevResult);
    } catch (err) {
      errors.push(err);
    }
  }
  return errors;
}

/** CHECK in order against the chain's final result; the first failure is the answer. */
export async function chainCheck<R>(links: readonly ChainLink<R>[], prevResult: R | undefined): Promise<void> {
  for (const link of links) await link.run('CHECK', prevResult);
}

/** GC to every plugin in order; returns the errors, first one first. */
export async function chainGc<R>(links: readonly ChainLink<R>[]): Promise<unknown[]> {
  const errors: unknown[] = [];
  for (const link of links) {
    try {
      await link.run('GC', undefined);
    } catch (err) {
      errors.push(err);
    }
  }
  return errors;
}

/** Raises the first of `errors` (a chain reports one error, as libcni does). */
export function throwFirst(errors: readonly unknown[]): void {
  if (errors.length > 0) throw errors[0];
}
