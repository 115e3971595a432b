/**
 * Network config validation: the base fields every plugin gets (SPEC.md "Network
 * configuration" and CONVENTIONS.md), and helpers so each plugin declares its own options as a
 * schema and gets code-7 errors that name the field path and the bad value, e.g.
 *
 *   invalid network config: field "ipam.ranges[0][0].subnet": "10.0.0.1/24" has host bits set
 *
 * Unknown fields are tolerated (loose objects), as the spec asks. zod/mini, not zod: the full
 * build costs ~80 ms of start-up in a bundle, mini ~10 ms (measured on this machine); and this
 * module is imported lazily by the skel, never for VERSION. Plugins build their schemas with
 * `import * as z from 'zod/mini'` (never `zod`), and nothing here re-exports the namespace:
 * that would defeat tree-shaking and put all of zod, locales included, into every bundle.
 */
import { bytesToBigInt, isIP, parseIp } from '../src/ip-text.js';
import * as z from 'zod/mini';
import { CniCode, CniError, showValue } from './errors.js';
import { CNI_NAME_PATTERN, ifnameProblem } from './env.js';
import { LOG_LEVELS } from './log.js';

// ---- reusable field schemas ---------------------------------------------------------------

export const nonEmptyString = z.string().check(z.minLength(1, 'must not be empty'));

/** Network names follow the same rule as container IDs (SPEC.md). */
export const networkName = z
  .string()
  .check(z.regex(CNI_NAME_PATTERN, 'must start with a letter or digit and contain only letters, digits, "_", "." and "-"'));

export const ipAddress = z.string().check(z.refine((v) => isIP(v) !== 0, 'is not an IP address'));
export const ipv4Address = z.string().check(z.refine((v) => isIP(v) === 4, 'is not an IPv4 address'));
export const ipv6Address = z.string().check(z.refine((v) => isIP(v) === 6, 'is not an IPv6 address'));

/** An address with a prefix length, host bits allowed ("10.1.0.5/24"). */
export const cidr = z.string().check(z.refine((v) => parseCidr(v) !== undefined, 'is not in CIDR notation (like "10.1.0.0/24")'));

/** A network: CIDR notation with no host bits set ("10.1.0.0/24", not "10.1.0.1/24"). */
export const subnet = z.string().check(
  z.superRefine((v, ctx) => {
    const parsed = parseCidr(v);
    if (!parsed) ctx.addIssue({ code: 'custom', message: 'is not in CIDR notation (like "10.1.0.0/24")', input: v });
    else if (parsed.hostBitsSet) ctx.addIssue({ code: 'custom', message: 'has host bits set', input: v });
  }),
);

export const interfaceName = z.string().check(
  z.superRefine((v, ctx) => {
    const problem = ifnameProblem(v);
    if (problem) ctx.addIssue({ code: 'custom', message: `is not a valid interface name (it ${problem})`, input: v });
  }),
);

export const macAddress = z
  .string()
  .check(z.regex(/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/, 'is not a MAC address (like "02:42:ac:11:00:02")'));

export const port = z.number().check(z.int('must be a whole number'), z.gte(1, 'must be 1-65535'), z.lte(65535, 'must be 1-65535'));

// ---- the base network config -----------------------------------------------------------------

export const dnsConfig = z.looseObject({
  nameservers: z.optional(z.array(ipAddress)),
  domain: z.optional(z.string()),
  search: z.optional(z.array(z.string())),
  options: z.optional(z.array(z.string())),
});

/**
 * Fields every Shoal plugin understands. `cniVersion`/`cniVersions` are checked by the skel
 * (code 1, not 7) and `prevResult` by cni/types.ts; they are listed here so a plugin's parsed
 * config has them typed.
 */
export const baseNetConfShape = {
  cniVersion: z.string(),
  cniVersions: z.optional(z.array(z.string())),
  name: networkName,
  type: nonEmptyString,
  ipam: z.optional(z.looseObject({ type: z.optional(nonEmptyString) })),
  dns: z.optional(dnsConfig),
  args: z.optional(z.record(z.string(), z.unknown())),
  runtimeConfig: z.optional(z.record(z.string(), z.unknown())),
  capabilities: z.optional(z.record(z.string(), z.boolean())),
  prevResult: z.optional(z.unknown()),
  ipMasq: z.optional(z.boolean()),
  /** Shoal: log level for this plugin (cni/log.ts). */
  logLevel: z.optional(z.enum(LOG_LEVELS)),
  /** Shoal: a file the plugin appends its JSON logs to, besides stderr. */
  logFile: z.optional(nonEmptyString),
  /** Shoal: state directory (DESIGN.md §2), overriding SHOAL_STATE_DIR and /var/lib/shoal. */
  stateDir: z.optional(nonEmptyString),
};

export const baseNetConf = z.looseObject(baseNetConfShape);
export type NetConf = z.output<typeof baseNetConf>;

/** A plugin's config schema: the base fields plus its own (unknown fields still tolerated). */
export function pluginConfig<S extends z.core.$ZodLooseShape>(shape: S) {
  // The plugin's fields replace base fields of the same name (e.g. a required `ipam`).
  const merged = { ...baseNetConfShape, ...shape } as Omit<typeof baseNetConfShape, keyof S> & S;
  return z.looseObject(merged);
}

// ---- well-known runtimeConfig capabilities (CONVENTIONS.md), for plugins that use them ------

export const portMappingSchema = z.looseObject({
  hostPort: port,
  containerPort: port,
  protocol: z.optional(z.enum(['tcp', 'udp', 'sctp'])),
  hostIP: z.optional(z.union([ipAddress, z.literal('')])),
});

/** podman: `{"<network>": ["<alias>", ...]}`. */
export const aliasesSchema = z.record(z.string(), z.array(z.string()));

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
export function parseConfig<S extends z.ZodMiniType>(schema: S, value: unknown, where = ''): z.output<S> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((issue) => describeIssue(issue, value, where));
  const first = problems[0] ?? 'invalid value';
  const more = problems.length > 1 ? ` (and ${problems.length - 1} more problem${problems.length > 2 ? 's' : ''})` : '';
  throw new CniError(CniCode.InvalidNetworkConfig, `invalid network config: ${first}${more}`, problems.join('; '));
}

type Issue = z.core.$ZodIssue;

function describeIssue(issue: Issue, root: unknown, where: string): string {
  const path = formatPath(where, issue.path);
  const value = valueAt(root, issue.path);
  const field = path === '' ? 'the config' : `field "${path}"`;
  if (value === undefined && issue.code === 'invalid_type') return `${field} is required`;
  return `${field}: ${showValue(value)} ${problemText(issue)}`;
}

function problemText(issue: Issue): string {
  // zod/mini ships no message locale: "Invalid input" means "no custom message was given".
  const custom = issue.message && issue.message !== 'Invalid input' ? issue.message : undefined;
  if (custom) return custom;
  switch (issue.code) {
    case 'invalid_type':
      return `must be ${article(issue.expected)}`;
    case 'invalid_value':
      return `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'too_small':
      return `is too small (minimum ${String(issue.minimum)})`;
    case 'too_big':
      return `is too big (maximum ${String(issue.maximum)})`;
    case 'invalid_union':
      return 'does not match any allowed form';
    case 'invalid_key':
      return 'has an invalid key';
    default:
      return 'is invalid';
  }
}

function article(expected: string): string {
  const names: Record<string, string> = { object: 'a JSON object', array: 'a list', string: 'a string', number: 'a number' };
  return names[expected] ?? (expected === 'boolean' ? 'true or false' : expected);
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
