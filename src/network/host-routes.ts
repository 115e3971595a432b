/**
 * The host's routes (every table, both families) as taken ranges for free-subnet picking and
 * overlap checks: a subnet that overlaps a route the host already has would shadow it or be
 * shadowed. Read through the kernel layer (rtnetlink dump), nothing else.
 */
import { AF_INET, AF_INET6 } from '../kernel/netlink/constants.js';
import { listRoutes } from '../kernel/route.js';
import { openRtnl } from '../kernel/rtnl.js';
import type { TakenRanges } from './manage.js';

export function hostRoutes(): TakenRanges {
  const nl = openRtnl();
  try {
    const out: TakenRanges = [];
    for (const family of [AF_INET, AF_INET6] as const) {
      for (const r of listRoutes(nl, { family, table: 0 })) {
        if (r.dst === 'default') continue;
        // Multicast and link-local ranges are not where anyone would put a network.
        if (r.dst.startsWith('ff') || r.dst.startsWith('fe80')) continue;
        out.push({ cidr: r.dst.includes('/') ? r.dst : `${r.dst}/${family === AF_INET ? 32 : 128}`, what: `host route ${r.dst}` });
      }
    }
    return out;
  } finally {
    nl.close();
  }
}
