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
