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
import { IpAddr, IpPrefix } from '../src/addr.js';
import { CniCode, CniError, showValue } from './errors.js';
import { CNI_NAME_PATTERN, ifnameProblem } from './env.js';
import { LOG_LEVELS } from './log.js';

// ---- reusable field schemas ---------------------------------------------------------------

export const nonEmptyString = v.pipe(v.string(), v.minLength(1, 'must not be empty'));

/**
 * The longest network name: nft keeps 128 bytes of a rule comment and the longest comment
 * carrying the whole name is the DNS daemon's "dns:<network>" (src/daemon/firewall.ts).
 */
export const NETWORK_NAME_MAX = 124;

/** Network names follow the same rule as container IDs (SPEC.md), at most NETWORK_NAME_MAX long. */
export const networkName = v.pipe(
  v.string(),
  v.regex(CNI_NAME_PATTERN, 'must start with a letter or digit and contain only letters, digits, "_", "." and "-"'),
  v.maxLength(NETWORK_NAME_MAX, `is longer than ${NETWORK_NAME_MAX} characters (it is written into nftables comments)`),
);

// Addresses are parsed here, at the edge, into values (src/addr.ts); the message of a bad one
// names its problem ('"10.0.0.256" is not an IP address: part 256 is more than 255').

/** An IP address, parsed: the output is an IpAddr. */
export const ipAddr = v.pipe(
  v.string(),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const parsed = IpAddr.tryParse(dataset.value);
    if (parsed) return parsed;
    addIssue({ message: `is not an IP address: ${IpAddr.problem(dataset.value)}` });
    return NEVER;
  }),
);

/** An IP address or "" (none given; undefined in the output). */
export const optionalIpAddr = v.pipe(
  v.string(),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    if (dataset.value === '') return undefined;
    const parsed = IpAddr.tryParse(dataset.value);
    if (parsed) return parsed;
    addIssue({ message: `is not an IP address: ${IpAddr.problem(dataset.value)}` });
    return NEVER;
  }),
);

/** An IP address that stays text (passed through as written, e.g. a result's nameservers). */
export const ipAddress = v.pipe(
  v.string(),
  v.rawCheck(({ dataset, addIssue }) => {
    if (dataset.typed && !IpAddr.tryParse(dataset.value)) addIssue({ message: `is not an IP address: ${IpAddr.problem(dataset.value)}` });
  }),
);

/** An address with a prefix length, host bits allowed ("10.1.0.5/24"), parsed: an IpPrefix. */
export const cidr = v.pipe(
  v.string(),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const parsed = IpPrefix.tryParse(dataset.value);
    if (parsed) return parsed;
    addIssue({ message: `is not in CIDR notation (like "10.1.0.0/24"): ${IpPrefix.problem(dataset.value)}` });
    return NEVER;
  }),
);

/** A network: CIDR notation with no host bits set ("10.1.0.0/24", not "10.1.0.1/24"), parsed. */
export const subnet = v.pipe(
  cidr,
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    if (dataset.value.isMasked) return dataset.value;
    addIssue({ message: `has host bits set (the network is ${dataset.value.masked().toString()})` });
    return NEVER;
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

/**
 * One word of a resolv.conf line (a domain, a search domain, an option): runtimes write these
 * into the container's resolv.conf, where whitespace or a line break would add words or lines.
 */
export const resolvWord = v.pipe(
  v.string(),
  v.minLength(1, 'must not be empty'),
  v.maxLength(253, 'is longer than 253 characters'),
  // eslint-disable-next-line no-control-regex
  v.regex(/^[^\s"\\\x00-\x1f\x7f]+$/u, 'must not contain whitespace, line breaks, double quotes, backslashes or control characters'),
);

export const dnsConfig = v.looseObject({
  nameservers: v.optional(v.array(ipAddress)),
  domain: v.optional(resolvWord),
  search: v.optional(v.array(resolvWord)),
  options: v.optional(v.array(resolvWord)),
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
  /** An address, parsed; "" (every local address) becomes undefined. */
  hostIP: v.optional(optionalIpAddr),
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
