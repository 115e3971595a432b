/**
 * Scopes shared by the addresses of a container attached to several networks (same container
 * id): from any of its addresses it resolves the names of all its networks, as with docker's
 * embedded DNS (its resolv.conf names the first network's gateway, and `network connect` adds a
 * network without rewriting it).
 *
 * Kept per container, so a change is applied to one container instead of recomputed for all:
 * `set` replaces what a container contributes with what its endpoints now say, whether it was
 * built whole (snapshot.ts `build`) or changed by a delta (`applyDelta`, which is handed the
 * container's endpoints after the change by records-diff.ts). Only containers on several
 * networks are held; most are on one, and cost nothing here.
 *
 * An address's extra networks are those of the containers holding it, not those of everything
 * else at its other addresses: a container's scope then depends on its own endpoints only, so
 * one container's change never reaches another's scope, and the result does not depend on the
 * order of the record set. Each table is a multiset (two such containers may share an address).
 */
import { endpointAddresses } from './network-records.js';
import type { DnsEndpoint } from './types.js';

/** A container's endpoints after a change (all of them, on every network; empty when it left). */
export type ContainerEndpoints = [containerId: string, endpoints: DnsEndpoint[]];

interface Contribution {
  /** Its addresses (canonical text, each once). */
  keys: string[];
  /** Its networks (each once). */
  networks: string[];
}

export class ContainerScopes {
  private readonly byContainer = new Map<string, Contribution>();
  /** Address -> the networks of the multi-network containers at it, one entry per container and network. */
  private readonly byAddress = new Map<string, string[]>();

  /** The networks that containers on several networks bring to `address` (undefined: none). */
  networksAt(address: string): readonly string[] | undefined {
    return this.byAddress.get(address);
  }

  /** Containers on several networks held now. */
  get size(): number {
    return this.byContainer.size;
  }

  /** Makes `endpoints` what `containerId` contributes: nothing unless they span several networks. */
  set(containerId: string, endpoints: readonly DnsEndpoint[]): void {
    const old = this.byContainer.get(containerId);
    if (old) {
      for (const k of old.keys) for (const n of old.networks) this.remove(k, n);
      this.byContainer.delete(containerId);
    }
    const networks = [...new Set(endpoints.map((e) => e.network))];
    if (networks.length < 2) return;
    const keys = [...new Set(endpoints.flatMap((e) => endpointAddresses(e)).map((a) => a.toString()))];
    for (const k of keys) {
      const list = this.byAddress.get(k);
      if (list) list.push(...networks);
      else this.byAddress.set(k, [...networks]);
    }
    this.byContainer.set(containerId, { keys, networks });
  }

  private remove(key: string, network: string): void {
    const list = this.byAddress.get(key);
    const i = list ? list.indexOf(network) : -1;
    if (!list || i < 0) return;
    if (list.length === 1) this.byAddress.delete(key);
    else list.splice(i, 1);
  }

  /** Built whole: groups only the containers found on several networks (most are on one). */
  static build(endpoints: readonly DnsEndpoint[]): ContainerScopes {
    const firstNetwork = new Map<string, string>();
    const several = new Set<string>();
    for (const e of endpoints) {
      const first = firstNetwork.get(e.containerId);
      if (first === undefined) firstNetwork.set(e.containerId, e.network);
      else if (first !== e.network) several.add(e.containerId);
    }
    const byContainer = new Map<string, DnsEndpoint[]>();
    for (const e of endpoints) {
      if (!several.has(e.containerId)) continue;
      const mine = byContainer.get(e.containerId);
      if (mine) mine.push(e);
      else byContainer.set(e.containerId, [e]);
    }
    const scopes = new ContainerScopes();
    for (const [id, eps] of byContainer) scopes.set(id, eps);
    return scopes;
  }
}
