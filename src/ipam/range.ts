import { IpAddr, IpPrefix, type Family } from '../addr.js';
import { InvalidIpamConfigError } from './errors.js';

/** One validated range: every bound filled in (host-local's defaults), all inside `subnet`. */
export interface IpRange {
  family: Family;
  /** Normalised: host bits are zero. */
  subnet: IpPrefix;
  start: IpAddr;
  end: IpAddr;
  gateway: IpAddr;
}

/** A range set yields one address per ADD; a config with a v4 set and a v6 set is dual stack. */
export type RangeSet = IpRange[];

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function optionalAddress(raw: Record<string, unknown>, key: string, field: string, subnet: IpPrefix): IpAddr | undefined {
  const value = raw[key];
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') throw new InvalidIpamConfigError(`${field}.${key}`, value, 'is not an IP address');
  const parsed = IpAddr.tryParse(value);
  if (!parsed) throw new InvalidIpamConfigError(`${field}.${key}`, value, `is not an IP address: ${IpAddr.problem(value)}`);
  if (parsed.family !== subnet.family)
    throw new InvalidIpamConfigError(`${field}.${key}`, value, `is IPv${parsed.family} but subnet ${subnet.toString()} is IPv${subnet.family}`);
  if (!subnet.contains(parsed)) throw new InvalidIpamConfigError(`${field}.${key}`, value, `is outside subnet ${subnet.toString()}`);
  return parsed;
}

/**
 * Validates one `{subnet, rangeStart, rangeEnd, gateway}` object found at `field` and fills in
 * the defaults host-local uses: start = network + 1, end = last address (the one before the
 * broadcast for IPv4), gateway = network + 1 (and never handed out).
 */
export function parseRange(raw: unknown, field: string): IpRange {
  if (!isObject(raw)) throw new InvalidIpamConfigError(field, raw, 'must be an object with at least "subnet"');
  const subnetText = raw['subnet'];
  if (subnetText === undefined) throw new InvalidIpamConfigError(`${field}.subnet`, subnetText, 'is required');
  if (typeof subnetText !== 'string') throw new InvalidIpamConfigError(`${field}.subnet`, subnetText, 'is not a CIDR (e.g. "10.88.0.0/16")');
  const subnet = IpPrefix.tryParse(subnetText);
  if (!subnet) throw new InvalidIpamConfigError(`${field}.subnet`, subnetText, `is not a CIDR (e.g. "10.88.0.0/16"): ${IpPrefix.problem(subnetText)}`);
  if (!subnet.isMasked) throw new InvalidIpamConfigError(`${field}.subnet`, subnetText, `has host bits set; the network is ${subnet.masked().toString()}`);
  // Need at least a network address, one host and (IPv4) a broadcast address.
  if (subnet.length > subnet.bits - 2) throw new InvalidIpamConfigError(`${field}.subnet`, subnetText, `a /${subnet.length} is too small to allocate from`);

  const network = subnet.network();
  const broadcast = subnet.last();
  const start = optionalAddress(raw, 'rangeStart', field, subnet) ?? network.next();
  const end = optionalAddress(raw, 'rangeEnd', field, subnet) ?? (subnet.family === 4 ? broadcast.prev() : broadcast);
  const gateway = optionalAddress(raw, 'gateway', field, subnet) ?? network.next();
  for (const [key, value] of [
    ['rangeStart', start],
    ['rangeEnd', end],
  ] as const) {
    if (value.equals(network)) throw new InvalidIpamConfigError(`${field}.${key}`, value.toString(), `is the network address of ${subnetText}`);
    if (subnet.family === 4 && value.equals(broadcast))
      throw new InvalidIpamConfigError(`${field}.${key}`, value.toString(), `is the broadcast address of ${subnetText}`);
  }
  if (start.compare(end) > 0) throw new InvalidIpamConfigError(`${field}.rangeStart`, start.toString(), `is after rangeEnd ${end.toString()}`);
  return { family: subnet.family, subnet, start, end, gateway };
}

export function describeRange(range: IpRange): string {
  return `${range.subnet.toString()} ${range.start.toString()}-${range.end.toString()}`;
}

export function describeRangeSet(set: RangeSet): string {
  return set.map(describeRange).join(', ');
}

function overlaps(a: IpRange, b: IpRange): boolean {
  return a.family === b.family && a.start.value <= b.end.value && b.start.value <= a.end.value;
}

/**
 * Validates `ranges` (a list of range sets) found at `field`: every set non-empty, one address
 * family per set, and no two ranges anywhere overlapping (an address in two sets could be
 * handed out twice to one attachment).
 */
export function parseRangeSets(
  raw: unknown,
  field: string,
  pathOf: (set: number, range?: number) => string = (i, j) => (j === undefined ? `${field}[${i}]` : `${field}[${i}][${j}]`),
): RangeSet[] {
  if (!Array.isArray(raw) || raw.length === 0)
    throw new InvalidIpamConfigError(field, raw, 'must be a non-empty list of range sets, e.g. [[{"subnet": "10.88.0.0/16"}]]');
  const sets = raw.map((set, i): RangeSet => {
    if (!Array.isArray(set) || set.length === 0)
      throw new InvalidIpamConfigError(pathOf(i), set, 'must be a non-empty list of ranges');
    const ranges = set.map((range, j) => parseRange(range, pathOf(i, j)));
    const family = ranges[0]!.family;
    ranges.forEach((range, j) => {
      if (range.family !== family)
        throw new InvalidIpamConfigError(`${pathOf(i, j)}.subnet`, range.subnet.toString(), `is IPv${range.family} but range set ${i} is IPv${family}`);
    });
    return ranges;
  });
  const all = sets.flatMap((set, i) => set.map((range, j) => ({ range, at: pathOf(i, j) })));
  for (let a = 0; a < all.length; a++) {
    for (let b = a + 1; b < all.length; b++) {
      if (overlaps(all[a]!.range, all[b]!.range))
        throw new InvalidIpamConfigError(all[b]!.at, describeRange(all[b]!.range), `overlaps ${all[a]!.at} (${describeRange(all[a]!.range)})`);
    }
  }
  return sets;
}

export function rangeSetContains(set: RangeSet, address: IpAddr): IpRange | undefined {
  return set.find((range) => range.family === address.family && address.value >= range.start.value && address.value <= range.end.value);
}
