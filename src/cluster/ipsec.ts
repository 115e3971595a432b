/**
 * The daemon's side of encrypted overlay networks (DESIGN §7): on every cluster refresh and on
 * a rotation timer, brings this node's XFRM state and the never-cleartext guard to what etcd
 * says. One IPsec setup per pair of nodes carries the VXLAN of every encrypted network between
 * them (XFRM selectors cannot see a VNI), keyed from the key lineage of the encrypted network
 * whose name sorts first; the nftables guard is per VNI, so plain networks are untouched.
 *
 * Order on each pass: guard first (so nothing of an encrypted VNI can leave in clear while the
 * rest is programmed), then SAs and policies (../overlay/ipsec.ts), then the acknowledgement of
 * the newest generation whose inbound SAs are all in place (./keys.ts).
 *
 * A policy is only set for a peer whose SAs went in: on a kernel without ESP or AES-GCM the
 * pair then has no policy, and the guard drops the encrypted network's VXLAN (fail closed)
 * while plain overlay networks between the same nodes keep working.
 */
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { runNft } from '../kernel/nftables-exec.js';
import { addSa, deletePolicy, deleteSa, ignoreGone, IPPROTO_UDP, listPolicies, listSas, setPolicy, withXfrm, type Xfrm } from '../kernel/xfrm.js';
import { withRtnl } from '../kernel/rtnl.js';
import { resolveUnderlay, vxlanOverhead } from '../overlay/underlay.js';
import { deriveSa, ESP_OVERHEAD, describeIpsecOp, desiredIpsec, diffIpsec, guardRuleset, SHOAL_IPSEC_PRIORITY, SHOAL_IPSEC_REQID, VXLAN_PORT, type IpsecCurrent, type IpsecOp, type PolicyWant } from '../overlay/ipsec.js';
import type { Store } from '../store/store.js';
import { ensureKeys, keyAckKey, readAcks, readKeys, removeKeys } from './keys.js';
import { DEFAULT_ROTATION_SECONDS, type ClusterNetwork } from './networks.js';
import type { ClusterSession } from './session.js';

export interface OverlayIpsecOptions {
  session: ClusterSession;
  etcd: Store;
  advertiseAddr: string;
  registry: Registry;
  logger: Logger;
}

const sel = (p: PolicyWant) => ({ src: p.src, dst: p.dst, proto: IPPROTO_UDP, dport: VXLAN_PORT });

export class OverlayIpsec {
  private networks: ClusterNetwork[] = [];
  private running: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private timerEvery = 0;
  private closed = false;
  private guardText: string | undefined;
  private ackedGen: string | undefined;
  private lastProblems = '';
  private sas = 0;
  private readonly rotations: Counter;

  constructor(private readonly o: OverlayIpsecOptions) {
    this.rotations = new Counter({ name: 'shoal_overlay_key_rotations_total', help: 'Key generations this node wrote for encrypted overlay networks after the first', registers: [o.registry] });
    const gauge: Gauge<'network'> = new Gauge({
      name: 'shoal_overlay_ipsec_sas',
      help: "Shoal's IPsec SAs on this node carrying the encrypted overlay network's VXLAN",
      labelNames: ['network'],
      registers: [o.registry],
      collect: (): void => {
        gauge.reset();
        for (const n of this.networks) if (n.encrypted) gauge.set({ network: n.name }, this.sas);
      },
    });
  }

  /** Re-programs for `networks` (every cluster network; plain ones are ignored). Serialized; never rejects. */
  update(networks: ClusterNetwork[]): Promise<void> {
    if (this.closed) return this.running;
    this.networks = networks;
    this.armTimer();
    this.running = this.running.then(() => this.pass()).catch((err: unknown) => {
      this.o.logger.warn({ event: 'overlay_ipsec_failed', err: (err as Error).message }, `failed to program IPsec for the encrypted overlay networks: ${(err as Error).message}`);
    });
    return this.running;
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.closed = true;
  }

  /** Removes a deleted network's keys from etcd. */
  forget(network: string): Promise<void> {
    return removeKeys(this.o.etcd, network);
  }

  private lineage(): ClusterNetwork | undefined {
    return this.networks.filter((n) => n.encrypted).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))[0];
  }

  private rotationMs(): number {
    return (this.lineage()?.rotationSeconds ?? DEFAULT_ROTATION_SECONDS) * 1000;
  }

  /** Checks for a due rotation a few times per interval (every node may write it; one wins). */
  private armTimer(): void {
    const every = Math.max(1000, Math.min(30_000, Math.floor(this.rotationMs() / 5)));
    const want = this.lineage() ? every : 0;
    if (want === this.timerEvery) return;
    if (this.timer) clearInterval(this.timer);
    this.timerEvery = want;
    this.timer = want ? setInterval(() => void this.update(this.networks), want) : undefined;
    this.timer?.unref();
  }

  private async pass(): Promise<void> {
    const encrypted = this.networks.filter((n) => n.encrypted);
    // Without the guard, the XFRM policies must hold the line alone: they go in even for peers
    // whose SAs failed (a required template without an SA drops), plain networks or not.
    let guarded = true;
    try {
      this.applyGuard(encrypted.map((n) => n.vni));
    } catch (err) {
      guarded = false;
      if (encrypted.length > 0) this.o.logger.warn({ event: 'overlay_ipsec_guard_failed', err: (err as Error).message }, `${(err as Error).message}; relying on XFRM policies alone`);
    }
    const lineage = this.lineage();
    const local = this.o.advertiseAddr;
    let generations: Awaited<ReturnType<typeof readKeys>> = [];
    let acked = new Map<string, number>();
    let peers: string[] = [];
    if (lineage) {
      const before = (await readKeys(this.o.etcd, lineage.name)).at(-1)?.gen ?? 0;
      if (await ensureKeys(this.o.etcd, lineage.name, this.rotationMs())) {
        if (before > 0) this.rotations.inc();
        this.o.logger.info({ event: 'overlay_key_written', network: lineage.name, generation: before + 1 }, `wrote key generation ${before + 1} of encrypted overlay network "${lineage.name}"`);
      }
      generations = await readKeys(this.o.etcd, lineage.name);
      acked = await readAcks(this.o.etcd, lineage.name);
      peers = (await this.o.session.nodes()).filter((n) => !n.self && n.address).map((n) => n.address);
    }
    const byAddr = new Map((await this.o.session.nodes()).map((n) => [n.address, n.name]));
    const ackByAddr = new Map([...byAddr].flatMap(([addr, name]) => (acked.has(name) ? [[addr, acked.get(name)!] as const] : [])));
    const desired = desiredIpsec({ local, peers, generations, acked: ackByAddr });
    const problems: string[] = [];
    const current = withXfrm(undefined, (x) => {
      const plan = diffIpsec(readCurrent(x), desired, local);
      problems.push(...applyOps(x, plan, guarded));
      return readCurrent(x);
    });
    this.sas = current.sas.length;
    const text = problems.join('; ');
    if (text !== this.lastProblems && problems.length) {
      this.o.logger.warn({ event: 'overlay_ipsec_incomplete', problems }, `IPsec for the encrypted overlay is incomplete; its traffic to those peers is dropped, never sent in clear: ${text}`);
    }
    this.lastProblems = text;
    if (lineage) await this.acknowledge(lineage.name, generations, peers, current);
  }

  /** Publishes the newest generation whose inbound SAs from every peer are installed. */
  private async acknowledge(network: string, generations: Array<{ gen: number; key: Buffer }>, peers: string[], current: IpsecCurrent): Promise<void> {
    const have = new Set(current.sas.map((s) => `${s.src}>${s.dst}#${s.spi >>> 0}`));
    const local = this.o.advertiseAddr;
    const complete = generations.filter((g) => peers.every((p) => have.has(`${p}>${local}#${deriveSa(g, p, local).spi >>> 0}`)));
    const gen = complete.at(-1)?.gen;
    if (gen === undefined) return;
    const value = `${network}/${gen}`;
    if (value === this.ackedGen) return;
    await this.o.session.lease.put(keyAckKey(network, this.o.session.node), String(gen));
    this.ackedGen = value;
  }

  private applyGuard(vnis: number[]): void {
    const text = guardRuleset(vnis);
    if (text === this.guardText) return;
    const res = runNft(['-f', '-'], text);
    if (res.status !== 0) throw new Error(`failed to install the encrypted-overlay guard (nftables table inet shoal-ipsec): ${res.stderr.trim()}`);
    this.guardText = text;
  }
}

/**
 * The MTU of an encrypted network on this node when `--mtu` was not given: the underlay's,
 * minus VXLAN and minus ESP, so that an encrypted frame never needs fragmenting.
 */
export function encryptedMtu(advertiseAddr: string): number {
  const underlay = withRtnl(undefined, (nl) => resolveUnderlay(nl, { address: advertiseAddr }));
  return underlay.mtu - vxlanOverhead(underlay.family) - ESP_OVERHEAD;
}

/** Shoal's XFRM objects in this netns: SAs by reqid, policies by priority and VXLAN selector. */
function readCurrent(x: Xfrm): IpsecCurrent {
  const sas = listSas(x)
    .filter((s) => s.reqid === SHOAL_IPSEC_REQID)
    .map((s) => ({ src: s.src, dst: s.dst, spi: s.spi }));
  const policies = listPolicies(x)
    .filter((p) => p.priority === SHOAL_IPSEC_PRIORITY && p.sel.proto === IPPROTO_UDP && p.sel.dport === VXLAN_PORT && (p.dir === 'in' || p.dir === 'out'))
    .map((p): PolicyWant => ({ dir: p.dir as 'in' | 'out', src: p.sel.src, dst: p.sel.dst }));
  return { sas, policies };
}

/**
 * Applies `plan`, every op attempted; while the guard is up, a peer whose SA failed gets no
 * policy (its encrypted VNIs are dropped by the guard, plain ones flow). Returns the failures.
 */
function applyOps(x: Xfrm, plan: IpsecOp[], guarded: boolean): string[] {
  const failures: string[] = [];
  const broken = new Set<string>();
  for (const o of plan) {
    try {
      switch (o.op) {
        case 'add-sa':
          addSa(x, { src: o.sa.src, dst: o.sa.dst, spi: o.sa.spi, reqid: SHOAL_IPSEC_REQID, key: o.sa.key });
          break;
        case 'set-policy': {
          const peer = o.policy.dir === 'out' ? o.policy.dst : o.policy.src;
          if (guarded && broken.has(peer)) continue;
          setPolicy(x, { dir: o.policy.dir, sel: sel(o.policy), priority: SHOAL_IPSEC_PRIORITY, action: 'allow', reqid: SHOAL_IPSEC_REQID });
          break;
        }
        case 'del-policy':
          ignoreGone(() => deletePolicy(x, { dir: o.policy.dir, sel: sel(o.policy) }));
          break;
        case 'del-sa':
          ignoreGone(() => deleteSa(x, o.sa));
          break;
      }
    } catch (err) {
      // One of the two ends is this node; only the peer's entry is ever looked up.
      if (o.op === 'add-sa') broken.add(o.sa.src).add(o.sa.dst);
      failures.push(`${describeIpsecOp(o)}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return failures;
}
