/** Custom hosts per network (the `--add-host` idea), answered after containers, before forwarding. */
import type { Handler, QueryContext } from './chain.js';
import { answerFromMaps } from './records.js';

export function hostsHandler(): Handler {
  return {
    name: 'hosts',
    pure: true,
    handle: (ctx: QueryContext) => answerFromMaps(ctx.scope, ctx.question, (n) => n.hosts, (n) => n.hostPtr),
  };
}
