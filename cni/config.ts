/**
 * Network config validation: the base fields every plugin gets (SPEC.md "Network
 * configuration" and CONVENTIONS.md), and helpers so each plugin declares its own options as a
 * schema and gets code-7 errors that name the field path and the bad value, e.g.
 *
 *   invalid network config: field "ipam.ranges[0][0].subnet": "10.0.0.1/24" has host bits set
 *
 * Unknown fields are tolerated (loose objects), as the spec asks. valibot, not zod: every CNI
 * ADD builds these schemas in a fresh process, and valibot's are plain objects (this module's
 * schemas and one parse: ~1.2 ms with valibot, ~5.4 ms with zod/mini, measured on this
 * machine). Plugins build their schemas with `import * as v from 'valibot'`; every check
 * carries its own message, and describeIssue() phrases valibot's type issues.
 */
import * as v from 'valibot';
import { bytesToBigInt, isIP, parseIp } from '../src/ip-text.js';
import { CniCode, CniError, showValue } from './errors.js';
import { CNI_NAME_PATTERN, ifnameProblem } from './env.js';
import { LOG_LEVELS } from './log.js';

// ---- reusable field schemas ---------------------------------------------------------------

export const nonEmptyString = v.pipe(v.string(), v.minLength(1, 'must not be empty'));

/** Network names follow the same rule as container IDs (SPEC.md). */
export const networkName = v.pipe(
  v.string(),
  v.regex(CNI_NAME_PATTERN, 'must start with a letter or digit and contain only letters, digits, "_", "." and "-"'),
);

export const ipAddress = v.pipe(v.string(), v.check((s) => isIP(s) !== 0, 'is not an IP address'));
export const ipv4Address = v.pipe(v.string(), v.check((s) => isIP(s) === 4, 'is not an IPv4 address'));
export const ipv6Address = v.pipe(v.string(), v.check((s) => isIP(s) === 6, 'is not an IPv6 address'));

/** An address with a prefix length, host bits allowed ("10.1.0.5/24"). */
export const cidr = v.pipe(v.string(), v.check((s) => parseCidr(s) !== undefined, 'is not in CIDR notation (like "10.1.0.0/24")'));

/** A network: CIDR notation with no host bits set ("10.1.0.0/24", not "10.1.0.1/24"). */
export const subnet = v.pipe(
  v.string(),
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    const parsed = parseCidr(dataset.value);
    if (!parsed) addIssue({ message: 'is not in CIDR notation (like "10.1.0.0/24")' });
    else if (parsed.hostBitsSet) addIssue({ message: 'has host bits set' });
  }),
);

export const interfaceName = v.pipe(
  v.string(),
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    const problem = ifnameProblem(dataset.value);
    if (problem) addIssue({ message: `is not a valid interface name (it ${problem})` });
  }),
);

export const macAddress = v.pipe(v.string(), v.regex(/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/, 'is not a MAC address (like "02:42:ac:11:00:02")'));

/** A whole number in [min, max], every problem with the same message. */
export function intRange(min: number, max: number, message: string) {
  return v.pipe(v.number(), v.integer('must be a whole number'), v.minValue(min, message), v.maxValue(max, message));
}

export const port = intRange(1, 65535, 'must be 1-65535');

// ---- the base network config -----------------------------------------------------------------

export const dnsConfig = v.looseObject({
  nameservers: v.optional(v.array(ipAddress)),
  domain: v.optional(v.string()),
  search: v.optional(v.array(v.string())),
  options: v.optional(v.array(v.string())),
});

/**
 * Fields every Shoal plugin understands. `cniVersion`/`cniVersions` are checked by the skel
 * (code 1, not 7) and `prevResult` by cni/types.ts; they are listed here so a plugin's parsed
 * config has them typed.
 */
export const baseNetConfShape = {
  cniVersion: v.string(),
  cniVersions: v.optional(v.array(v.string())),
  name: networkName,
  type: nonEmptyString,
  ipam: v.optional(v.looseObject({ type: v.optional(nonEmptyString) })),
  dns: v.optional(dnsConfig),
  args: v.optional(v.record(v.string(), v.unknown())),
  runtimeConfig: v.optional(v.record(v.string(), v.unknown())),
  capabilities: v.optional(v.record(v.string(), v.boolean())),
  prevResult: v.optional(v.unknown()),
  ipMasq: v.optional(v.boolean()),
  /** Shoal: log level for this plugin (cni/log.ts). */
  logLevel: v.optional(v.picklist(LOG_LEVELS)),
  /** Shoal: a file the plugin appends its JSON logs to, besides stderr. */
  logFile: v.optional(nonEmptyString),
  /** Shoal: state directory (DESIGN.md §2), overriding SHOAL_STATE_DIR and /var/lib/shoal. */
  stateDir: v.optional(nonEmptyString),
};

export const baseNetConf = v.looseObject(baseNetConfShape);
export type NetConf = v.InferOutput<typeof baseNetConf>;

type Shape = Record<string, v.GenericSchema>;

/** A plugin's config schema: the base fields plus its own (unknown fields still tolerated). */
export function pluginConfig<S extends Shape>(shape: S) {
  // The plugin's fields replace base fields of the same name (e.g. a required `ipam`).
  const merged = { ...baseNetConfShape, ...shape } as Omit<typeof baseNetConfShape, keyof S> & S;
  return v.looseObject(merged);
}

// ---- well-known runtimeConfig capabilities (CONVENTIONS.md), for plugins that use them ------

export const portMappingSchema = v.looseObject({
  hostPort: port,
  containerPort: port,
  protocol: v.optional(v.picklist(['tcp', 'udp', 'sctp'])),
  hostIP: v.optional(v.union([ipAddress, v.literal('')])),
});

/** podman: `{"<network>": ["<alias>", ...]}`. */
export const aliasesSchema = v.record(v.string(), v.array(v.string()));

// ---- parsing with actionable messages ---------------------------------------------------------

/** Parses the base network config; code 7 naming the field and value on failure. */
export function parseNetConf(config: unknown): NetConf {
  return parseConfig(baseNetConf, config);
}

/**
 * Validates `value` against `schema`. On failure throws code 7 whose message names the first
 * bad field and its value; `details` lists every problem. `where` prefixes paths (e.g. "ipam"
 * when validating only the ipam object).
 */
export function parseConfig<S extends v.GenericSchema>(schema: S, value: unknown, where = ''): v.InferOutput<S> {
  const parsed = v.safeParse(schema, value);
  if (parsed.success) return parsed.output;
  const problems = parsed.issues.map((issue) => describeIssue(issue, value, where));
  const first = problems[0] ?? 'invalid value';
  const more = problems.length > 1 ? ` (and ${problems.length - 1} more problem${problems.length > 2 ? 's' : ''})` : '';
  throw new CniError(CniCode.InvalidNetworkConfig, `invalid network config: ${first}${more}`, problems.join('; '));
}

type Issue = v.GenericIssue;

function describeIssue(issue: Issue, root: unknown, where: string): string {
  const keys = (issue.path ?? []).map((item) => item.key as PropertyKey);
  const path = formatPath(where, keys);
  const value = valueAt(root, keys);
  const field = path === '' ? 'the config' : `field "${path}"`;
  if (value === undefined && issue.kind === 'schema') return `${field} is required`;
  return `${field}: ${showValue(value)} ${problemText(issue)}`;
}

/** Type names valibot reports in `expected`, as a user reads them. */
const TYPE_NAMES: Record<string, string> = {
  Object: 'a JSON object',
  Array: 'a list',
  string: 'a string',
  number: 'a number',
  boolean: 'true or false',
};

function problemText(issue: Issue): string {
  // Validations always carry Shoal's own message; schema (type) issues get one phrased here.
  if (issue.kind !== 'schema') return issue.message;
  switch (issue.type) {
    case 'picklist':
    case 'literal':
      return `must be one of ${(issue.expected ?? '').split(' | ').join(', ')}`;
    case 'union':
      return 'does not match any allowed form';
    default:
      return `must be ${TYPE_NAMES[issue.expected ?? ''] ?? issue.expected ?? 'something else'}`;
  }
}

/** ["ipam", "ranges", 0, 0, "subnet"] -> `ipam.ranges[0][0].subnet`; odd keys are quoted. */
export function formatPath(where: string, path: readonly PropertyKey[]): string {
  let out = where;
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else if (/^[A-Za-z_$][\w$]*$/.test(String(key))) out += out === '' ? String(key) : `.${String(key)}`;
    else out += `[${JSON.stringify(String(key))}]`;
  }
  return out;
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let current = root;
  for (const key of path) {
    if (typeof current !== 'object' || current === null) return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}

// ---- CIDR arithmetic (enough for validation; allocation lives in src/ipam) -----------------

interface ParsedCidr {
  family: 4 | 6;
  prefix: number;
  hostBitsSet: boolean;
}

export function parseCidr(text: string): ParsedCidr | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const ip = text.slice(0, slash);
  const prefixText = text.slice(slash + 1);
  const family = isIP(ip);
  if (family === 0 || !/^\d{1,3}$/.test(prefixText)) return undefined;
  const prefix = Number(prefixText);
  const width = family === 4 ? 32 : 128;
  if (prefix > width) return undefined;
  const parsed = parseIp(ip);
  if (!parsed) return undefined;
  const value = bytesToBigInt(parsed.bytes);
  const hostMask = (1n << BigInt(width - prefix)) - 1n;
  return { family: family === 4 ? 4 : 6, prefix, hostBitsSet: (value & hostMask) !== 0n };
}
