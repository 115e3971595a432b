/**
 * Balancing policies for the proxy data path (DESIGN §4.7: the policy only picks; health lives
 * elsewhere and hands it the healthy backends). CoreDNS `forward/policy.go`, plus HAProxy's
 * leastconn and source hashing.
 */
import { createHash } from 'node:crypto';

export type PolicyName = 'rr' | 'random' | 'leastconn' | 'source-hash';

export interface PickContext {
  /** Client address (source-hash). */
  client?: string;
  /** Open connections per backend key (leastconn). */
  active?: ReadonlyMap<string, number>;
}

export interface Policy {
  /** One of `backends` (keys), or undefined when there is none. */
  pick(backends: readonly string[], ctx?: PickContext): string | undefined;
}

export function createPolicy(name: PolicyName, random: () => number = Math.random): Policy {
  switch (name) {
    case 'random':
      return { pick: (b) => (b.length ? b[Math.floor(random() * b.length)] : undefined) };
    case 'leastconn':
      // Ties go round-robin, so an idle pool is still spread (HAProxy does the same).
      return (() => {
        let next = 0;
        return {
          pick(b, ctx) {
            if (b.length === 0) return undefined;
            let best: string | undefined;
            let bestCount = Infinity;
            for (let i = 0; i < b.length; i += 1) {
              const key = b[(next + i) % b.length]!;
              const n = ctx?.active?.get(key) ?? 0;
              if (n < bestCount) {
                best = key;
                bestCount = n;
              }
            }
            next = (next + 1) % b.length;
            return best;
          },
        };
      })();
    case 'source-hash':
      return {
        pick(b, ctx) {
          if (b.length === 0) return undefined;
          const h = createHash('sha1').update(ctx?.client ?? '').digest().readUInt32BE(0);
          return b[h % b.length];
        },
      };
    default: {
      let next = 0;
      return {
        pick(b) {
          if (b.length === 0) return undefined;
          const key = b[next % b.length];
          next = (next + 1) % b.length;
          return key;
        },
      };
    }
  }
}
