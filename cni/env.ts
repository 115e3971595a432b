/**
 * The CNI_* environment: which variables each verb needs (SPEC.md "Parameters" and each
 * verb's "Required environment parameters"), their validation, and CNI_ARGS parsing.
 */
import { CniCode, CniError, invalidEnv } from './errors.js';

export const VERBS = ['ADD', 'DEL', 'CHECK', 'STATUS', 'GC', 'VERSION'] as const;
export type Verb = (typeof VERBS)[number];

/**
 * Required variables per verb. CNI_NETNS is optional for DEL (the spec: "when CNI_NETNS is not
 * provided, clean up as much as possible and succeed"). CNI_PATH is optional except for GC;
 * STATUS needs only CNI_COMMAND. CNI_ARGS is always optional.
 */
const REQUIRED: Record<Verb, readonly string[]> = {
  ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
  CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
  DEL: ['CNI_CONTAINERID', 'CNI_IFNAME'],
  GC: ['CNI_PATH'],
  STATUS: [],
  VERSION: [],
};

export type Env = Record<string, string | undefined>;

export interface CniEnv {
  command: Verb;
  containerId: string;
  netns: string;
  ifname: string;
  /** CNI_ARGS as given; parse it with parseCniArgs. */
  args: string;
  /** CNI_PATH split on ":"; empty entries dropped. */
  path: string[];
}

/** Reads and checks the variables `CNI_COMMAND` asks for; code 4 naming every missing one. */
export function readCniEnv(env: Env): CniEnv {
  const command = env.CNI_COMMAND ?? '';
  if (command === '') throw invalidEnv('CNI_COMMAND', 'required environment variables missing');
  if (!(VERBS as readonly string[]).includes(command)) {
    throw invalidEnv('CNI_COMMAND', `unknown CNI_COMMAND ${JSON.stringify(command)}; expected one of ${VERBS.join(', ')}`);
  }
  const verb = command as Verb;
  const missing = REQUIRED[verb].filter((name) => !env[name]);
  if (missing.length > 0) throw invalidEnv(missing, 'required environment variables missing');

  const parsed: CniEnv = {
    command: verb,
    containerId: env.CNI_CONTAINERID ?? '',
    netns: env.CNI_NETNS ?? '',
    ifname: env.CNI_IFNAME ?? '',
    args: env.CNI_ARGS ?? '',
    path: (env.CNI_PATH ?? '').split(':').filter((dir) => dir !== ''),
  };
  if (verb === 'ADD' || verb === 'CHECK' || verb === 'DEL') {
    validateContainerId(parsed.containerId);
    validateIfname(parsed.ifname);
  }
  return parsed;
}

/**
 * SPEC.md: "Must start with an alphanumeric character, optionally followed by any combination
 * of one or more alphanumeric characters, underscore (_), dot (.) or hyphen (-)." The same
 * rule applies to the network name.
 */
export const CNI_NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export function validateContainerId(id: string): void {
  if (!CNI_NAME_PATTERN.test(id)) {
    throw invalidEnv(
      'CNI_CONTAINERID',
      'invalid container ID (it must start with a letter or digit, then only letters, digits, "_", "." or "-")',
      `CNI_CONTAINERID=${JSON.stringify(id)}`,
    );
  }
}

/** Linux IFNAMSIZ is 16 including the terminating NUL: at most 15 bytes. */
export const MAX_IFNAME_BYTES = 15;

/** Why `name` is not a usable Linux interface name, or undefined when it is. */
export function ifnameProblem(name: string): string | undefined {
  if (name === '') return 'is empty';
  if (Buffer.byteLength(name) > MAX_IFNAME_BYTES) return `is longer than ${MAX_IFNAME_BYTES} bytes`;
  if (name === '.' || name === '..') return 'must not be "." or ".."';
  if (/[/:\s]/u.test(name)) return 'must not contain "/", ":" or whitespace';
  // Linux would take these, but the name is written into nftables rules and comments (as a
  // quoted string, which nft cannot escape) and into logs: refused here, before anything is made.
  // eslint-disable-next-line no-control-regex
  if (/["\\\x00-\x1f\x7f]/.test(name)) return 'must not contain double quotes, backslashes or control characters';
  return undefined;
}

export function validateIfname(name: string): void {
  const problem = ifnameProblem(name);
  if (problem) throw invalidEnv('CNI_IFNAME', `invalid interface name (it ${problem})`, `CNI_IFNAME=${JSON.stringify(name)}`);
}

/**
 * Parses CNI_ARGS ("K=V;K=V"). `known` lists the keys the plugin understands; any other key is
 * code 2 naming it, unless the runtime sent IgnoreUnknown=1 (or true), as podman does.
 * `IgnoreUnknown` itself is always known and is not returned.
 */
export function parseCniArgs(raw: string, known: readonly string[] = []): Record<string, string> {
  const args: Record<string, string> = {};
  const pairs: [string, string][] = [];
  for (const pair of raw.split(';')) {
    if (pair === '') continue; // tolerate "A=1;" and an empty CNI_ARGS
    const eq = pair.indexOf('=');
    if (eq <= 0) {
      throw invalidEnv('CNI_ARGS', `invalid CNI_ARGS pair ${JSON.stringify(pair)} (expected KEY=VALUE separated by ";")`);
    }
    pairs.push([pair.slice(0, eq), pair.slice(eq + 1)]);
  }
  const ignoreUnknownText = pairs.find(([k]) => k === 'IgnoreUnknown')?.[1];
  const ignoreUnknown = ignoreUnknownText !== undefined && parseArgBool(ignoreUnknownText, 'IgnoreUnknown');
  const unknown: string[] = [];
  for (const [key, value] of pairs) {
    if (key === 'IgnoreUnknown') continue;
    if (known.includes(key)) args[key] = value;
    else if (!ignoreUnknown) unknown.push(`${key}=${value}`);
  }
  if (unknown.length > 0) {
    throw new CniError(
      CniCode.UnsupportedField,
      `unknown CNI_ARGS ${unknown.map((u) => JSON.stringify(u)).join(', ')}; this plugin understands ${
        known.length > 0 ? known.join(', ') : 'none'
      } (send IgnoreUnknown=1 to skip unknown keys)`,
    );
  }
  return args;
}

function parseArgBool(value: string, key: string): boolean {
  const v = value.toLowerCase();
  if (v === '1' || v === 'true') return true;
  if (v === '0' || v === 'false') return false;
  throw invalidEnv('CNI_ARGS', `CNI_ARGS ${key}=${JSON.stringify(value)} is not a boolean (use 1, 0, true or false)`);
}
