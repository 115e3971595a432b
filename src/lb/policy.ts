/**
 * Balancing policies for the proxy data path (DESIGN §4.7: the policy only picks; health lives
 * elsewhere and hands it the healthy backends). CoreDNS `forward/policy.go`, plus HAProxy's
 * leastconn and source hashing.
 *
 * Weights (slow start, `slow-start.ts`) are HAProxy's dynamic weights: rr is a smooth weighted
 * round robin (nginx's: each pick adds every weight to its backend's credit, takes the largest
 * and charges it the total; equal weights give plain rr in list order), random draws in
 * proportion, leastconn compares connections per unit of weight. source-hash ignores them, as
 * HAProxy's static algorithms do: a client's backend must not depend on the clock.
 */
import { createHash } from 'node:crypto';

export type PolicyName = 'rr' | 'random' | 'leastconn' | 'source-hash';

export interface PickContext {
  /** Client address (source-hash). */
  client?: string;
  /** Open connections per backend key (leastconn). */
  active?: ReadonlyMap<string, number>;
  /** A backend's weight in (0, 1]; absent: all 1. */
  weight?: (key: string) => number;
}

export interface Policy {
  /** One of `backends` (keys), or undefined when there is none. */
  pick(backends: readonly string[], ctx?: PickContext): string | undefined;
}

/** Smooth weighted round robin over the backends it is given; credit is kept per key. */
function weightedRoundRobin(): (b: readonly string[], weight: (key: string) => number) => string | undefined {
  const credit = new Map<string, number>();
  return (b, weight) => {
    if (b.length === 0) return undefined;
    let total = 0;
    let best: string | undefined;
    let bestCredit = -Infinity;
    for (const key of b) {
      const w = weight(key);
      total += w;
      const c = (credit.get(key) ?? 0) + w;
      credit.set(key, c);
      if (c > bestCredit) {
        best = key;
        bestCredit = c;
      }
    }
    credit.set(best!, bestCredit - total);
    // Keys no longer given would keep their credit forever: forget them when the map outgrows the list.
    if (credit.size > 2 * b.length + 8) {
      const given = new Set(b);
      for (const k of credit.keys()) if (!given.has(k)) credit.delete(k);
    }
    return best;
  };
}

const one = () => 1;

export function createPolicy(name: PolicyName, random: () => number = Math.random): Policy {
  switch (name) {
    case 'random':
      return {
        pick(b, ctx) {
          if (b.length === 0) return undefined;
          const weight = ctx?.weight;
          if (!weight) return b[Math.floor(random() * b.length)];
          const ws = b.map(weight);
          let r = random() * ws.reduce((x, y) => x + y, 0);
          for (let i = 0; i < b.length; i += 1) if ((r -= ws[i]!) < 0) return b[i];
          return b[b.length - 1];
        },
      };
    case 'leastconn': {
      // Fewest connections per unit of weight (HAProxy's fwlc); ties go weighted round-robin, so
      // an idle pool is still spread, and a ramping backend gets its share of it.
      const tieBreak = weightedRoundRobin();
      return {
        pick(b, ctx) {
          if (b.length === 0) return undefined;
          const weight = ctx?.weight ?? one;
          let best = Infinity;
          let ties: string[] = [];
          for (const key of b) {
            const load = (ctx?.active?.get(key) ?? 0) / weight(key);
            if (load < best) {
              best = load;
              ties = [key];
            } else if (load === best) ties.push(key);
          }
          return tieBreak(ties, weight);
        },
      };
    }
    case 'source-hash':
      return {
        pick(b, ctx) {
          if (b.length === 0) return undefined;
          const h = createHash('sha1').update(ctx?.client ?? '').digest().readUInt32BE(0);
          return b[h % b.length];
        },
      };
    default: {
      const next = weightedRoundRobin();
      return { pick: (b, ctx) => next(b, ctx?.weight ?? one) };
    }
  }
}
