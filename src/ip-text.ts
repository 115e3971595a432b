/**
 * isIP / isIPv4 / isIPv6 with node:net's semantics, without loading node:net: that module pulls
 * in the whole streams stack (~6 ms measured on this machine), and a CNI ADD needs only these
 * three predicates from it. test/unit/ip-text.test.ts checks them against node:net.
 */
const V4_PART = '(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])';
const V4 = `${V4_PART}(?:\\.${V4_PART}){3}`;
const IPV4 = new RegExp(`^${V4}$`);
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;
// A zone index as node accepts it: anything after "%" that is not empty.
const ZONE = /%[0-9a-zA-Z-.:_]+$/;

export function isIPv4(text: string): boolean {
  return IPV4.test(text);
}

export function isIPv6(text: string): boolean {
  if (text.length < 2 || text.length > 100) return false;
  let s = text;
  const zone = ZONE.exec(s);
  if (zone) s = s.slice(0, zone.index);
  // An embedded IPv4 tail counts as two groups.
  let tailGroups = 0;
  const lastColon = s.lastIndexOf(':');
  if (lastColon !== -1 && s.indexOf('.', lastColon) !== -1) {
    if (!isIPv4(s.slice(lastColon + 1))) return false;
    s = `${s.slice(0, lastColon + 1)}0`;
    tailGroups = 1;
  }
  const halves = s.split('::');
  if (halves.length > 2) return false;
  const groups = (part: string): string[] | undefined => {
    if (part === '') return [];
    const g = part.split(':');
    return g.every((x) => HEX_GROUP.test(x)) ? g : undefined;
  };
  const head = groups(halves[0]!);
  if (!head) return false;
  if (halves.length === 1) return head.length + tailGroups === 8;
  const tail = groups(halves[1]!);
  if (!tail) return false;
  // "::" stands for at least one group of zeros.
  return head.length + tail.length + tailGroups <= 7;
}

/** 4, 6, or 0 like net.isIP. */
export function isIP(text: string): 0 | 4 | 6 {
  if (isIPv4(text)) return 4;
  if (isIPv6(text)) return 6;
  return 0;
}

/** An address as its family and network-order bytes (4 or 16). */
export interface IpBytes {
  family: 4 | 6;
  bytes: Buffer;
}

/**
 * The one parser from text to bytes for the whole project (netlink attributes, IPAM arithmetic,
 * config validation and DNS all start here). Accepts what isIP accepts, including an embedded
 * IPv4 tail (::ffff:10.0.0.1); a zone index ("fe80::1%eth0") is refused: it has no byte form.
 */
export function parseIp(text: string): IpBytes | undefined {
  if (isIPv4(text)) return { family: 4, bytes: Buffer.from(text.split('.').map(Number)) };
  if (!isIPv6(text) || text.includes('%')) return undefined;
  const words: number[] = [];
  let body = text;
  const lastColon = body.lastIndexOf(':');
  let tail: number[] = [];
  if (body.indexOf('.', lastColon) !== -1) {
    const q = body.slice(lastColon + 1).split('.').map(Number) as [number, number, number, number];
    tail = [(q[0] << 8) | q[1], (q[2] << 8) | q[3]];
    body = body.slice(0, lastColon + 1);
    // "::1.2.3.4" leaves "::", "1:2:3:4:5:6:1.2.3.4" leaves a trailing ":" to drop.
    if (!body.endsWith('::')) body = body.slice(0, -1);
  }
  const [head = '', rest] = body.split('::');
  const group = (s: string) => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const left = group(head);
  const right = [...(rest === undefined ? [] : group(rest)), ...tail];
  words.push(...left);
  if (rest !== undefined) for (let i = left.length + right.length; i < 8; i++) words.push(0);
  words.push(...right);
  const bytes = Buffer.alloc(16);
  words.forEach((w, i) => bytes.writeUInt16BE(w, i * 2));
  return { family: 6, bytes };
}

/** 4 or 16 bytes to text; IPv6 in the RFC 5952 form (longest run of two or more zero groups as ::). */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  if (bytes.length !== 16) throw new TypeError(`an IP address is 4 or 16 bytes, not ${bytes.length}`);
  const groups = Array.from({ length: 8 }, (_, i) => ((bytes[i * 2] ?? 0) << 8) | (bytes[i * 2 + 1] ?? 0));
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

export function bytesToBigInt(bytes: Uint8Array): bigint {
  let value = 0n;
  for (const b of bytes) value = (value << 8n) | BigInt(b);
  return value;
}

export function bigIntToBytes(value: bigint, length: 4 | 16): Buffer {
  const out = Buffer.alloc(length);
  let v = value;
  for (let i = length - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}
