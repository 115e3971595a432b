/** Containers: names and aliases of endpoints in the client's networks, and their PTRs. */
import type { Handler, QueryContext } from './chain.js';
import { answerFromMaps } from './records.js';

export function containersHandler(): Handler {
  return {
    name: 'containers',
    pure: true,
    handle: (ctx: QueryContext) => answerFromMaps(ctx.scope, ctx.question, (n) => n.names, (n) => n.ptr),
  };
}
