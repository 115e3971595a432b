/**
 * The networks' own domains are ours: a name under an in-scope network's domain that neither
 * containers nor hosts know is NXDOMAIN here, not a query leaked to the upstream resolvers.
 */
import type { Handler, QueryContext } from './chain.js';
import { RCODE } from './types.js';

export function zoneHandler(): Handler {
  return {
    name: 'zone',
    pure: true,
    handle(ctx: QueryContext) {
      const name = ctx.question.name;
      for (const net of ctx.scope.networks) {
        const d = net.domain;
        if (d && (name === d || (name.length > d.length && name.endsWith(d) && name.charCodeAt(name.length - d.length - 1) === 46))) {
          return { kind: 'local', rcode: name === d ? RCODE.NOERROR : RCODE.NXDOMAIN, records: [], network: net.name };
        }
      }
      return undefined;
    },
  };
}
