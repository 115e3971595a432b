/**
 * Forward: everything the local handlers did not answer goes to the upstreams — the first
 * in-scope network's own `upstreams`, else the host's resolv.conf.
 */
import type { Handler, QueryContext } from './chain.js';
import { scopeNetwork } from './chain.js';
import type { Forwarder } from './forwarder.js';

export function forwardHandler(forwarder: Pick<Forwarder, 'forward'>): Handler {
  return {
    name: 'forward',
    pure: false,
    handle(ctx: QueryContext) {
      const own = ctx.scope.networks.find((n) => n.upstreams)?.upstreams;
      return forwarder.forward(ctx.questionBytes, ctx.question, ctx.dnssecOk, own, scopeNetwork(ctx.scope));
    },
  };
}
