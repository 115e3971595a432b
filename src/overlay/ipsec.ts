/**
 * IPsec for encrypted overlay networks, as desired state diffed against the kernel (the same
 * shape as peers.ts): pure functions from (this node, its peers, the key generations) to ESP
 * transport-mode SAs and XFRM policies, the difference against what is programmed, and the
 * order to apply it in. ../cluster/ipsec.ts feeds it from etcd and applies the plan.
 *
 * Per pair of nodes (L, R), for VXLAN (UDP to port 4789) between their underlay addresses:
 * - inbound SAs R→L for every live key generation (so a peer may send with any of them);
 * - one outbound SA L→R, of the generation R has acknowledged installing (rotation: the
 *   receiver's new inbound SA always exists before the sender switches to it);
 * - an `out` and an `in` policy with an ESP template of level required (no SA: no packet).
 *
 * Key and SPI of each direction and generation are derived (HKDF-SHA256) from the generation's
 * network key, so both ends compute the same SA without sending per-pair keys anywhere, and a
 * pair's key is useless for any other pair or direction. Key bytes stay out of every text this
 * module produces (op descriptions carry SPIs only).
 */
import { hkdfSync } from 'node:crypto';

export const VXLAN_PORT = 4789;
/** reqid of Shoal's SAs and templates: how Shoal tells its XFRM objects from anyone else's. */
export const SHOAL_IPSEC_REQID = 0x5301;
/** Priority of Shoal's policies (lower wins; other IPsec users keep theirs by staying lower). */
export const SHOAL_IPSEC_PRIORITY = 0x5301;
/**
 * Bytes ESP adds in transport mode with rfc4106 AES-GCM: header 8 (SPI, sequence) + IV 8 +
 * ICV 16 + trailer 2 (pad length, next header) + up to 3 of padding = 37, rounded up to 40.
 */
export const ESP_OVERHEAD = 40;

/** One key generation of a network (keys/<network>/<gen> in etcd). */
export interface KeyGeneration {
  gen: number;
  /** 32 random bytes; never logged. */
  key: Buffer;
}

export interface SaWant {
  src: string;
  dst: string;
  spi: number;
  gen: number;
  key: Buffer;
}

export interface SaHave {
  src: string;
  dst: string;
  spi: number;
}

export interface PolicyWant {
  dir: 'in' | 'out';
  src: string;
  dst: string;
}

export interface IpsecDesired {
  sas: SaWant[];
  policies: PolicyWant[];
}

export interface IpsecCurrent {
  /** Shoal's SAs (reqid SHOAL_IPSEC_REQID). */
  sas: SaHave[];
  /** Shoal's policies (priority SHOAL_IPSEC_PRIORITY, UDP 4789). */
  policies: PolicyWant[];
}

export type IpsecOp =
  | { op: 'add-sa'; sa: SaWant }
  | { op: 'set-policy'; policy: PolicyWant }
  | { op: 'del-policy'; policy: PolicyWant }
  | { op: 'del-sa'; sa: SaHave };

/** Key (32 bytes + 4 of salt for rfc4106) and SPI of one direction of one pair in one generation. */
export function deriveSa(g: KeyGeneration, src: string, dst: string): SaWant {
  const okm = Buffer.from(hkdfSync('sha256', g.key, 'shoal-ipsec-v1', `${g.gen}|${src}>${dst}`, 40));
  // SPIs below 256 are reserved (RFC 4303); the rest of the space is ample for a few pairs.
  const spi = 0x100 + (okm.readUInt32BE(36) % (0xffffffff - 0x100));
  return { src, dst, spi, gen: g.gen, key: okm.subarray(0, 36) };
}

export interface IpsecInput {
  local: string;
  peers: readonly string[];
  /** Live generations (at most a few); empty: no SAs, only what is torn down. */
  generations: readonly KeyGeneration[];
  /** Highest generation each peer acknowledged installing inbound. */
  acked: ReadonlyMap<string, number>;
}

/** The generation this node sends to `peer` with: the newest one the peer has installed. */
export function outboundGeneration(gens: readonly KeyGeneration[], ack: number | undefined): KeyGeneration | undefined {
  const sorted = [...gens].sort((a, b) => a.gen - b.gen);
  const installed = ack === undefined ? [] : sorted.filter((g) => g.gen <= ack);
  // A peer that acknowledged nothing yet installs every live generation before it can receive
  // at all; the oldest is the one every node has had longest.
  return installed.at(-1) ?? sorted[0];
}

export function desiredIpsec(input: IpsecInput): IpsecDesired {
  const sas: SaWant[] = [];
  const policies: PolicyWant[] = [];
  if (input.generations.length === 0) return { sas, policies };
  for (const peer of [...new Set(input.peers)].sort()) {
    if (peer === input.local) continue;
    for (const g of input.generations) sas.push(deriveSa(g, peer, input.local));
    const out = outboundGeneration(input.generations, input.acked.get(peer));
    if (out) sas.push(deriveSa(out, input.local, peer));
    policies.push({ dir: 'out', src: input.local, dst: peer }, { dir: 'in', src: peer, dst: input.local });
  }
  return { sas, policies };
}

const saId = (s: SaHave): string => `${s.src}>${s.dst}#${s.spi >>> 0}`;
const polId = (p: PolicyWant): string => `${p.dir}:${p.src}>${p.dst}`;

/**
 * What turns `current` into `desired`. Order: inbound SAs, then outbound SAs (a peer can already
 * receive what this node starts sending), then policies (their SAs exist, so nothing is dropped
 * as "no SA"); removals: policies first, then outbound SAs, then inbound ones.
 */
export function diffIpsec(current: IpsecCurrent, desired: IpsecDesired, local: string): IpsecOp[] {
  const haveSa = new Set(current.sas.map(saId));
  const wantSa = new Set(desired.sas.map(saId));
  const havePol = new Set(current.policies.map(polId));
  const wantPol = new Set(desired.policies.map(polId));
  const inbound = (s: SaHave): boolean => s.dst === local;
  const adds = desired.sas.filter((s) => !haveSa.has(saId(s)));
  const dels = current.sas.filter((s) => !wantSa.has(saId(s)));
  return [
    ...adds.filter(inbound).map((sa): IpsecOp => ({ op: 'add-sa', sa })),
    ...adds.filter((s) => !inbound(s)).map((sa): IpsecOp => ({ op: 'add-sa', sa })),
    ...desired.policies.filter((p) => !havePol.has(polId(p))).map((policy): IpsecOp => ({ op: 'set-policy', policy })),
    ...current.policies.filter((p) => !wantPol.has(polId(p))).map((policy): IpsecOp => ({ op: 'del-policy', policy })),
    ...dels.filter((s) => !inbound(s)).map((sa): IpsecOp => ({ op: 'del-sa', sa })),
    ...dels.filter(inbound).map((sa): IpsecOp => ({ op: 'del-sa', sa })),
  ];
}

/** An op as text for logs and errors: addresses and SPIs, never key bytes. */
export function describeIpsecOp(o: IpsecOp): string {
  switch (o.op) {
    case 'add-sa':
      return `add ESP SA ${o.sa.src}->${o.sa.dst} spi 0x${o.sa.spi.toString(16)} (key generation ${o.sa.gen})`;
    case 'del-sa':
      return `delete ESP SA ${o.sa.src}->${o.sa.dst} spi 0x${o.sa.spi.toString(16)}`;
    case 'set-policy':
      return `set ${o.policy.dir} policy ${o.policy.src}->${o.policy.dst}`;
    case 'del-policy':
      return `delete ${o.policy.dir} policy ${o.policy.src}->${o.policy.dst}`;
  }
}

/**
 * The never-cleartext guard, as nft text for table `inet shoal-ipsec` (replaced whole): plain
 * VXLAN of an encrypted network's VNI is dropped on the way out unless its route is an IPsec
 * bundle, and on the way in unless it came out of an ESP SA. It does not depend on any XFRM
 * object, so a missing kernel module or a policy that failed to install still leaks nothing.
 * VXLAN's VNI is the 24 bits after the UDP header (8 bytes) and the VXLAN flags (4 bytes).
 */
export function guardRuleset(vnis: readonly number[]): string {
  const t = 'inet shoal-ipsec';
  // `add` first so the `delete` never fails on a node that has no table yet.
  const lines = [`add table ${t}`, `delete table ${t}`];
  if (vnis.length === 0) return lines.join('\n') + '\n';
  const set = `{ ${[...new Set(vnis)].sort((a, b) => a - b).join(', ')} }`;
  lines.push(
    `table ${t} {`,
    `  chain out {`,
    `    type filter hook postrouting priority filter; policy accept;`,
    `    udp dport ${VXLAN_PORT} @th,96,24 ${set} rt ipsec missing counter drop comment "plain VXLAN of an encrypted network"`,
    `  }`,
    `  chain in {`,
    `    type filter hook input priority filter; policy accept;`,
    `    udp dport ${VXLAN_PORT} @th,96,24 ${set} meta ipsec missing counter drop comment "plain VXLAN of an encrypted network"`,
    `  }`,
    `}`,
  );
  return lines.join('\n') + '\n';
}
