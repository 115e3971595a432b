/**
 * Published ports of services on [::1]: the kernel cannot DNAT there (a DNATed reply to ::1 from
 * a bridge is dropped; src/portmap/loopback6.ts), so, as for containers' published ports, the
 * daemon runs a user-space proxy on [::1]:<published> (daemon/loopback-proxies.ts). Its backend
 * is the same port on 127.0.0.1, where the service's own data path (kernel or proxy) balances
 * over its replicas: one balancer, not a second one with its own view of health.
 */
import type { LoopbackProxyTarget } from '../portmap/loopback6.js';
import type { ServiceView } from './manager.js';

/** The [::1] proxies the services want: every ingress port, and a mode=host port while a local replica is up. */
export function serviceLoopbackTargets(services: readonly ServiceView[]): LoopbackProxyTarget[] {
  const out: LoopbackProxyTarget[] = [];
  for (const s of services) {
    const localUp = s.replicas.some((r) => r.local && r.health === 'up');
    for (const p of s.ports) {
      if (p.mode === 'host' && !localUp) continue;
      out.push({ key: `${p.protocol}/${p.published}`, protocol: p.protocol, hostPort: p.published, backend: { host: '127.0.0.1', port: p.published }, owner: `service:${s.name}` });
    }
  }
  return out;
}
