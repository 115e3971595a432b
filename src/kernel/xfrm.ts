/**
 * IPsec state (SAs) and policies over NETLINK_XFRM: what `ip xfrm state/policy` does, for the
 * encrypted overlay (../overlay/ipsec.ts). Only what Shoal needs: ESP transport-mode SAs with an
 * AEAD (rfc4106 AES-GCM) and extended sequence numbers, and policies with one ESP template.
 *
 * Struct layouts are the kernel's uapi (include/uapi/linux/xfrm.h) on 64-bit little-endian:
 * xfrm_usersa_info is 224 bytes, xfrm_userpolicy_info 168, xfrm_user_tmpl 64; addresses are
 * 16-byte xfrm_address_t with an IPv4 address in the first 4 bytes.
 *
 * Key material passes through here into the kernel and is never part of an error text or a
 * decoded SA: `XfrmState` read back carries no key.
 */
import { attr, AttrSet, type Attr } from './netlink/codec.js';
import { NLM_F_CREATE, NLM_F_EXCL } from './netlink/constants.js';
import { bytesToIp, ipFamily, ipToBytes } from './netlink/inet.js';
import { NetlinkSocket } from './netlink/socket.js';
import { withNetns } from './netns.js';
import { NetlinkError } from './errors.js';

export const NETLINK_XFRM = 6;
const XFRM_MSG_NEWSA = 0x10;
const XFRM_MSG_DELSA = 0x11;
const XFRM_MSG_GETSA = 0x12;
const XFRM_MSG_NEWPOLICY = 0x13;
const XFRM_MSG_DELPOLICY = 0x14;
const XFRM_MSG_GETPOLICY = 0x15;
/** NEWPOLICY refuses an existing (selector, dir); UPDPOLICY adds or replaces. */
const XFRM_MSG_UPDPOLICY = 0x19;

const XFRMA_TMPL = 5;
const XFRMA_ALG_AEAD = 18;
const XFRMA_REPLAY_ESN_VAL = 23;

const XFRM_STATE_ESN = 128;
const IPPROTO_ESP = 50;
export const IPPROTO_UDP = 17;
const XFRM_INF = 0xffffffffffffffffn;

const SELECTOR_LEN = 56;
const USERSA_INFO_LEN = 224;
const USERSA_ID_LEN = 24;
const USERPOLICY_INFO_LEN = 168;
const USERPOLICY_ID_LEN = 64;
const USER_TMPL_LEN = 64;

export type XfrmDir = 'in' | 'out' | 'fwd';
const DIR: Record<XfrmDir, number> = { in: 0, out: 1, fwd: 2 };

/** One netlink XFRM socket bound to one netns (like Rtnl for rtnetlink). */
export interface Xfrm {
  readonly sock: NetlinkSocket;
  readonly where: string;
  close(): void;
}

export function openXfrm(netnsPath?: string): Xfrm {
  const open = (): NetlinkSocket => NetlinkSocket.open(undefined, NETLINK_XFRM);
  const sock = netnsPath === undefined ? open() : withNetns(netnsPath, open);
  return { sock, where: netnsPath === undefined ? 'host' : `netns ${netnsPath}`, close: () => sock.close() };
}

export function withXfrm<T>(netnsPath: string | undefined, fn: (x: Xfrm) => T): T {
  const x = openXfrm(netnsPath);
  try {
    return fn(x);
  } finally {
    x.close();
  }
}

/** A traffic selector: UDP (or any) from src to dst, host addresses only. */
export interface XfrmSelector {
  src: string;
  dst: string;
  proto?: number;
  dport?: number;
}

export interface XfrmSaSpec {
  src: string;
  dst: string;
  spi: number;
  reqid: number;
  /** rfc4106(gcm(aes)) key with its 4-byte salt at the end (20 or 36 bytes). */
  key: Buffer;
  /** Replay window in packets (ESN bitmap), a multiple of 32. */
  replayWindow?: number;
}

/** An SA as read back (no key material). */
export interface XfrmState {
  src: string;
  dst: string;
  spi: number;
  reqid: number;
  proto: number;
  esn: boolean;
  aead: string | undefined;
}

export interface XfrmPolicySpec {
  dir: XfrmDir;
  sel: XfrmSelector;
  priority: number;
  /** allow with an ESP transport template (level required), or block. */
  action: 'allow' | 'block';
  reqid?: number;
}

export interface XfrmPolicy {
  dir: XfrmDir;
  sel: Required<XfrmSelector>;
  priority: number;
  action: 'allow' | 'block';
  reqid: number | undefined;
}

function addr16(ip: string): Buffer {
  const b = Buffer.alloc(16);
  ipToBytes(ip).copy(b);
  return b;
}

function addrText(b: Buffer, family: number): string {
  return bytesToIp(family === 10 ? b.subarray(0, 16) : b.subarray(0, 4));
}

function encodeSelector(s: XfrmSelector): Buffer {
  const b = Buffer.alloc(SELECTOR_LEN);
  const family = ipFamily(s.dst);
  const bits = family === 10 ? 128 : 32;
  addr16(s.dst).copy(b, 0);
  addr16(s.src).copy(b, 16);
  if (s.dport !== undefined) {
    b.writeUInt16BE(s.dport, 32);
    b.writeUInt16BE(0xffff, 34);
  }
  b.writeUInt16LE(family, 40);
  b.writeUInt8(bits, 42);
  b.writeUInt8(bits, 43);
  b.writeUInt8(s.proto ?? 0, 44);
  return b;
}

function decodeSelector(b: Buffer): Required<XfrmSelector> {
  const family = b.readUInt16LE(40);
  return { dst: addrText(b.subarray(0, 16), family), src: addrText(b.subarray(16, 32), family), dport: b.readUInt16BE(32), proto: b.readUInt8(44) };
}

/** No byte or packet limit; time limits 0 mean none (XFRM_INF there would expire at once). */
function writeLifetimeCfg(b: Buffer, off: number): void {
  b.writeBigUInt64LE(XFRM_INF, off);
  b.writeBigUInt64LE(XFRM_INF, off + 8);
  b.writeBigUInt64LE(XFRM_INF, off + 16);
  b.writeBigUInt64LE(XFRM_INF, off + 24);
}

/** XFRM_MSG_NEWSA header and attributes (exported for unit tests). */
export function saMessage(spec: XfrmSaSpec): { header: Buffer; attrs: Attr[] } {
  if (spec.key.length !== 20 && spec.key.length !== 36) throw new TypeError('an rfc4106 key is 20 or 36 bytes (key and salt)');
  const family = ipFamily(spec.dst);
  const h = Buffer.alloc(USERSA_INFO_LEN);
  // Selector left empty: a transport-mode SA serves whatever its policy sends through it.
  addr16(spec.dst).copy(h, 56);
  h.writeUInt32BE(spec.spi >>> 0, 72);
  h.writeUInt8(IPPROTO_ESP, 76);
  addr16(spec.src).copy(h, 80);
  writeLifetimeCfg(h, 96);
  h.writeUInt32LE(spec.reqid, 208);
  h.writeUInt16LE(family, 212);
  h.writeUInt8(0, 214); // XFRM_MODE_TRANSPORT
  h.writeUInt8(0, 215); // replay_window must be 0 with ESN: the ESN attribute carries it
  h.writeUInt8(XFRM_STATE_ESN, 216);

  const aead = Buffer.alloc(72 + spec.key.length);
  aead.write('rfc4106(gcm(aes))', 0, 'ascii');
  aead.writeUInt32LE(spec.key.length * 8, 64);
  aead.writeUInt32LE(128, 68); // ICV bits
  spec.key.copy(aead, 72);

  const window = spec.replayWindow ?? 128;
  const bmpLen = Math.ceil(window / 32);
  const esn = Buffer.alloc(24 + bmpLen * 4);
  esn.writeUInt32LE(bmpLen, 0);
  esn.writeUInt32LE(window, 20);
  return { header: h, attrs: [attr.bytes(XFRMA_ALG_AEAD, aead), attr.bytes(XFRMA_REPLAY_ESN_VAL, esn)] };
}

/** XFRM_MSG_NEWPOLICY header and attributes (exported for unit tests). */
export function policyMessage(spec: XfrmPolicySpec): { header: Buffer; attrs: Attr[] } {
  const h = Buffer.alloc(USERPOLICY_INFO_LEN);
  encodeSelector(spec.sel).copy(h, 0);
  writeLifetimeCfg(h, 56);
  h.writeUInt32LE(spec.priority, 152);
  h.writeUInt8(DIR[spec.dir], 160);
  h.writeUInt8(spec.action === 'block' ? 1 : 0, 161);
  if (spec.action === 'block') return { header: h, attrs: [] };
  const family = ipFamily(spec.sel.dst);
  const t = Buffer.alloc(USER_TMPL_LEN);
  // The template names the tunnel ends; in transport mode those are the selector's hosts.
  addr16(spec.sel.dst).copy(t, 0);
  t.writeUInt8(IPPROTO_ESP, 20);
  t.writeUInt16LE(family, 24);
  addr16(spec.sel.src).copy(t, 28);
  t.writeUInt32LE(spec.reqid ?? 0, 44);
  t.writeUInt8(0, 48); // transport
  t.writeUInt8(0, 50); // optional = 0: level required, no SA means no packet
  t.writeUInt32LE(0xffffffff, 52);
  t.writeUInt32LE(0xffffffff, 56);
  t.writeUInt32LE(0xffffffff, 60);
  return { header: h, attrs: [attr.bytes(XFRMA_TMPL, t)] };
}

function what(verb: string, label: string, x: Xfrm): string {
  return `failed to ${verb} "${label}" in ${x.where}`;
}

const saLabel = (s: { src: string; dst: string; spi: number }): string => `ESP SA ${s.src}->${s.dst} spi 0x${(s.spi >>> 0).toString(16)}`;
const polLabel = (p: { dir: XfrmDir; sel: XfrmSelector }): string => `policy ${p.dir} ${p.sel.src}->${p.sel.dst}`;

/** Adds an SA (fails with EEXIST if its dst/spi is taken). The key never reaches an error text. */
export function addSa(x: Xfrm, spec: XfrmSaSpec): void {
  const { header, attrs } = saMessage(spec);
  x.sock.request({ type: XFRM_MSG_NEWSA, flags: NLM_F_CREATE | NLM_F_EXCL, header, attrs }, what('add', saLabel(spec), x));
}

export function deleteSa(x: Xfrm, sa: { src: string; dst: string; spi: number }): void {
  const h = Buffer.alloc(USERSA_ID_LEN);
  addr16(sa.dst).copy(h, 0);
  h.writeUInt32BE(sa.spi >>> 0, 16);
  h.writeUInt16LE(ipFamily(sa.dst), 20);
  h.writeUInt8(IPPROTO_ESP, 22);
  x.sock.request({ type: XFRM_MSG_DELSA, flags: 0, header: h, attrs: [] }, what('delete', saLabel(sa), x));
}

/** Every ESP SA in the netns (the caller keeps those it owns, by reqid). */
export function listSas(x: Xfrm): XfrmState[] {
  const replies = x.sock.dump({ type: XFRM_MSG_GETSA, flags: 0, header: Buffer.alloc(USERSA_ID_LEN) }, `failed to list XFRM states in ${x.where}`);
  const out: XfrmState[] = [];
  for (const m of replies) {
    if (m.type !== XFRM_MSG_NEWSA || m.payload.length < USERSA_INFO_LEN) continue;
    const p = m.payload;
    const family = p.readUInt16LE(212);
    const a = new AttrSet(p.subarray(USERSA_INFO_LEN));
    const aead = a.get(XFRMA_ALG_AEAD);
    out.push({
      dst: addrText(p.subarray(56, 72), family),
      spi: p.readUInt32BE(72),
      proto: p.readUInt8(76),
      src: addrText(p.subarray(80, 96), family),
      reqid: p.readUInt32LE(208),
      esn: (p.readUInt8(216) & XFRM_STATE_ESN) !== 0,
      aead: aead ? aead.subarray(0, 64).toString('ascii').replace(/\0.*$/s, '') : undefined,
    });
  }
  return out;
}

/** Adds or replaces the policy of (selector, dir). */
export function setPolicy(x: Xfrm, spec: XfrmPolicySpec): void {
  const { header, attrs } = policyMessage(spec);
  x.sock.request({ type: XFRM_MSG_UPDPOLICY, flags: 0, header, attrs }, what('set', polLabel(spec), x));
}

export function deletePolicy(x: Xfrm, p: { dir: XfrmDir; sel: XfrmSelector }): void {
  const h = Buffer.alloc(USERPOLICY_ID_LEN);
  encodeSelector(p.sel).copy(h, 0);
  h.writeUInt8(DIR[p.dir], 60);
  x.sock.request({ type: XFRM_MSG_DELPOLICY, flags: 0, header: h, attrs: [] }, what('delete', polLabel(p), x));
}

export function listPolicies(x: Xfrm): XfrmPolicy[] {
  const replies = x.sock.dump({ type: XFRM_MSG_GETPOLICY, flags: 0, header: Buffer.alloc(USERPOLICY_ID_LEN) }, `failed to list XFRM policies in ${x.where}`);
  const out: XfrmPolicy[] = [];
  for (const m of replies) {
    if (m.type !== XFRM_MSG_NEWPOLICY || m.payload.length < USERPOLICY_INFO_LEN) continue;
    const p = m.payload;
    const dir = (['in', 'out', 'fwd'] as const)[p.readUInt8(160)];
    if (!dir) continue; // socket policies
    const tmpl = new AttrSet(p.subarray(USERPOLICY_INFO_LEN)).get(XFRMA_TMPL);
    out.push({
      dir,
      sel: decodeSelector(p.subarray(0, SELECTOR_LEN)),
      priority: p.readUInt32LE(152),
      action: p.readUInt8(161) === 1 ? 'block' : 'allow',
      reqid: tmpl && tmpl.length >= USER_TMPL_LEN ? tmpl.readUInt32LE(44) : undefined,
    });
  }
  return out;
}

/** Runs a delete and reports false when the object was already gone. */
export function ignoreGone(fn: () => void): boolean {
  try {
    fn();
    return true;
  } catch (err) {
    if (err instanceof NetlinkError && (err.errnoName === 'ENOENT' || err.errnoName === 'ESRCH')) return false;
    throw err;
  }
}
