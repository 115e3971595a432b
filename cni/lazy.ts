import type { CniPlugin, CniRequest } from './skel.js';

type VerbName = 'add' | 'del' | 'check' | 'status' | 'gc';
type Verbs = Pick<CniPlugin, VerbName>;

/**
 * The verb functions of a plugin whose code is imported on first use, so an executable's entry
 * point stays thin: a VERSION call loads none of it. `verbs` names the ones the plugin has (a
 * verb left out keeps the skel's meaning for a missing one: DEL/STATUS/GC succeed, CHECK is 4).
 */
export function lazyVerbs(load: () => Promise<Verbs>, verbs: readonly VerbName[]): Verbs {
  const out: Verbs = {};
  for (const verb of verbs) {
    out[verb] = (async (req: CniRequest) => {
      const fn = (await load())[verb];
      if (!fn) throw new Error(`the plugin has no ${verb.toUpperCase()}`);
      return fn(req);
    }) as never;
  }
  return out;
}
