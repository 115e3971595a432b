/**
 * DNS listener reconciliation: the daemon wants one listener per gateway address of every
 * DNS-enabled network; this adds the missing ones, removes the gone ones and never touches
 * the rest (a restart of a listener would drop queries in flight on it).
 *
 * A gateway that is not on the host yet (EADDRNOTAVAIL: the bridge plugin has not added it, or
 * the network is being recreated) stays "pending": retried on every later reconcile, logged
 * once per address until it binds.
 */
import type { Logger } from 'pino';
import { stripAddress } from '../dns/ip.js';
import type { RegistryNetwork } from '../dns/registry.js';

export interface ListenerDiff {
  add: string[];
  remove: string[];
}

/** Pure: what to add and remove to get from `current` to `desired`; unchanged ones are absent. */
export function diffListeners(current: Iterable<string>, desired: Iterable<string>): ListenerDiff {
  const cur = new Set(current);
  const want = new Set(desired);
  return {
    add: [...want].filter((a) => !cur.has(a)).sort(),
    remove: [...cur].filter((a) => !want.has(a)).sort(),
  };
}

/**
 * Pure: the addresses to listen on. Link-local IPv6 gateways need a zone to bind and containers
 * cannot use them as resolvers without one, so they are skipped.
 */
export function desiredListenAddresses(networks: readonly RegistryNetwork[]): string[] {
  const out = new Set<string>();
  for (const n of networks) {
    for (const g of n.gateways ?? []) {
      const a = stripAddress(g);
      if (a === '' || /^fe[89ab]/i.test(a)) continue;
      out.add(a);
    }
  }
  return [...out].sort();
}

export interface ListenerOps {
  add(address: string, port: number): Promise<unknown>;
  remove(address: string, port: number): Promise<unknown>;
}

function errCode(err: unknown): string | undefined {
  for (let e: unknown = err; e && typeof e === 'object'; e = (e as { cause?: unknown }).cause) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('E') && code !== 'DNS_LISTEN_FAILED') return code;
  }
  return undefined;
}

export class ListenerReconciler {
  /** Addresses with a live listener. */
  readonly active = new Set<string>();
  /** Addresses we want but could not bind yet, with the error code last seen. */
  readonly pending = new Map<string, string>();

  constructor(
    private readonly ops: ListenerOps,
    private readonly port: number,
    private readonly logger?: Logger,
  ) {}

  /** Brings the listeners to `desired`; never throws (failures become pending). */
  async reconcile(desired: readonly string[]): Promise<ListenerDiff> {
    const diff = diffListeners(this.active, desired);
    for (const address of diff.remove) {
      this.active.delete(address);
      await this.ops.remove(address, this.port).catch((err: unknown) =>
        this.logger?.warn({ event: 'dns_listener_remove_failed', address, err }, `failed to remove DNS listener "${address}"`),
      );
    }
    for (const address of this.pending.keys()) if (!desired.includes(address)) this.pending.delete(address);
    for (const address of diff.add) {
      try {
        await this.ops.add(address, this.port);
        this.active.add(address);
        if (this.pending.delete(address)) this.logger?.info({ event: 'dns_listener_recovered', address }, `DNS listener on "${address}" is up`);
      } catch (err) {
        const code = errCode(err) ?? 'error';
        // Logged once per address and error: a missing gateway is retried every second.
        if (this.pending.get(address) !== code) {
          const level = code === 'EADDRNOTAVAIL' ? 'info' : 'warn';
          this.logger?.[level]({ event: 'dns_listener_pending', address, port: this.port, code, err }, `failed to listen on "${address}:${this.port}": ${(err as Error).message ?? String(err)}; will retry`);
        }
        this.pending.set(address, code);
      }
    }
    return diff;
  }

  async closeAll(): Promise<void> {
    await this.reconcile([]);
  }
}
