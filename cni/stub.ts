/**
 * The placeholder behaviour of a plugin whose own issue has not landed yet (issue 2 allows
 * this): VERSION answers normally (the skel does it), ADD, CHECK, STATUS and GC answer code 50
 * "not implemented yet", and DEL succeeds.
 *
 * Why DEL succeeds: such a plugin never completed an ADD, so it holds nothing; the spec wants
 * DEL to release what the container holds and to succeed when resources are already gone, and
 * a runtime calls DEL for every plugin in a list after a failed ADD. Failing DEL here would
 * only wedge the runtime's cleanup. (The skel still validates env, config and version first.)
 *
 * Code 50 is the spec's STATUS code for "cannot service ADD requests", which is exactly the
 * truth for STATUS; issue 2 chose the same code for the other verbs.
 */
import { CniCode, CniError } from './errors.js';
import type { CniPlugin } from './skel.js';

export function notImplementedPlugin(name: string): CniPlugin {
  const notYet = (verb: string) => async (): Promise<never> => {
    throw new CniError(
      CniCode.PluginNotAvailable,
      `${name}: ${verb} is not implemented yet`,
      `this build of ${name} answers VERSION only; ADD, CHECK, STATUS and GC arrive with the issue that implements it`,
    );
  };
  return {
    name,
    about: `Shoal CNI plugin ${name} (not implemented yet)`,
    add: notYet('ADD'),
    check: notYet('CHECK'),
    status: notYet('STATUS'),
    gc: notYet('GC'),
    del: async () => undefined,
  };
}
