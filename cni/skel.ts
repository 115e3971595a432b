/**
 * The CNI dispatcher: reads the CNI_* environment and stdin, checks versions, validates the
 * network config, calls the plugin's verb function and prints its result or a spec error.
 * All I/O is injectable so the protocol is unit-tested without processes (DESIGN.md §4.1).
 *
 * Start-up matters (DESIGN.md §6): this module and what it imports statically are all a
 * VERSION call loads. The config schemas (valibot) and result code are imported only for the other
 * verbs, pino only when something is logged, and a plugin's own code only inside its verb
 * function.
 */
import { CniCode, CniError, toCniErrorJson } from './errors.js';
import { readCniEnv, parseCniArgs, type Env, type Verb } from './env.js';
import { createLogger, type CniLogger, type LogSink } from './log.js';
import type { CniResult, GcAttachment } from './types.js';
import {
  LATEST_VERSION,
  SUPPORTED_VERSIONS,
  requireVerbAllowed,
  selectVersion,
  versionReply,
  type VersionInfo,
} from './version.js';
import type { NetConf } from './config.js';
import { callVerb } from './run.js';

/** Everything a verb function gets. */
export interface CniRequest {
  command: Exclude<Verb, 'VERSION'>;
  /** The version this invocation speaks; results are printed in it. */
  cniVersion: string;
  /** Empty for STATUS and GC. */
  containerId: string;
  /** Empty when not given (allowed for DEL, STATUS, GC). */
  netns: string;
  /** Empty for STATUS and GC. */
  ifname: string;
  /** CNI_ARGS, holding only the keys the plugin declared in `cniArgs`. */
  args: Record<string, string>;
  /** CNI_PATH split into directories. */
  path: string[];
  /** The network config after base validation; plugin-specific fields are kept unvalidated. */
  config: NetConf;
  /** stdin exactly as received: delegation passes it on unchanged. */
  stdin: string;
  /** `prevResult` converted to the internal (1.1) shape, whatever version it came in. */
  prevResult?: CniResult;
  /** GC only: attachments the runtime still considers valid; undefined when it sent no list. */
  validAttachments?: GcAttachment[];
  /** The environment this process got; delegated plugins get the same. */
  env: Env;
  /** Where delegated plugins' stderr goes. */
  stderr: LogSink;
  log: CniLogger;
}

export interface CniPlugin {
  /** The executable's type name, used in logs and messages ("shoal-bridge"). */
  name?: string;
  /** Printed on stderr when the executable is run without CNI_COMMAND. */
  about?: string;
  versionInfo?: VersionInfo;
  /** CNI_ARGS keys this plugin understands; others are code 2 unless IgnoreUnknown=1. */
  cniArgs?: readonly string[];
  /** Must return the result; it is printed in the config's cniVersion. */
  add?(req: CniRequest): Promise<CniResult>;
  /** Missing: success (a plugin without DEL holds nothing to release). */
  del?(req: CniRequest): Promise<void>;
  /** Missing: code 4 (CHECK not supported by this plugin). */
  check?(req: CniRequest): Promise<void>;
  /** Missing: success (ready whenever it can be executed). */
  status?(req: CniRequest): Promise<void>;
  /** Missing: success (nothing to collect). */
  gc?(req: CniRequest): Promise<void>;
}

export interface CniIO {
  env: Env;
  /** stdin's text, or a reader; `optional` is true for VERSION, where stdin may never close. */
  stdin: string | ((optional: boolean) => Promise<string>);
  stdout: LogSink;
  stderr: LogSink;
  exit(code: number): void | Promise<void>;
  /** Called once before a verb function runs (the real process warms libuv's pool there). */
  beforeVerb?: () => Promise<void>;
}

/** Runs one CNI invocation and exits with 0 or 1. Resolves with the exit code. */
export async function pluginMain(plugin: CniPlugin, io: CniIO): Promise<number> {
  const state: { version: string; log: CniLogger | undefined } = { version: LATEST_VERSION, log: undefined };
  let exitCode = 0;
  try {
    const output = await dispatch(plugin, io, state);
    if (output !== undefined) io.stdout.write(output);
  } catch (err) {
    const json = toCniErrorJson(err, state.version);
    io.stdout.write(`${JSON.stringify(json)}\n`);
    state.log ??= createLogger({ stderr: io.stderr, bindings: { plugin: plugin.name } });
    state.log.error({ code: json.code, details: json.details }, json.msg);
    exitCode = 1;
  }
  await state.log?.flush();
  await io.exit(exitCode);
  return exitCode;
}

async function dispatch(plugin: CniPlugin, io: CniIO, state: { version: string; log: CniLogger | undefined }): Promise<string | undefined> {
  const info = plugin.versionInfo ?? { supportedVersions: SUPPORTED_VERSIONS };
  if (!io.env.CNI_COMMAND && plugin.about) {
    io.stderr.write(`${plugin.about}\nCNI protocol versions supported: ${info.supportedVersions.join(', ')}\n`);
  }
  const env = readCniEnv(io.env);
  // Started now, awaited before the verb: libuv's thread pool comes up on another CPU while this
  // thread reads stdin and loads the config schemas and the verb's code (~4 ms, measured).
  const warm = env.command === 'VERSION' ? undefined : io.beforeVerb?.();
  const stdin = await readStdin(io, env.command === 'VERSION');

  if (env.command === 'VERSION') {
    const requested = stdin.trim() === '' ? undefined : decodeConfig(stdin).cniVersion;
    return `${JSON.stringify(versionReply(info, requested))}\n`;
  }

  const raw = decodeConfig(stdin);
  if (typeof raw.cniVersion === 'string' && info.supportedVersions.includes(raw.cniVersion)) state.version = raw.cniVersion;
  const log = createLogger({
    level: typeof raw.logLevel === 'string' ? raw.logLevel : undefined,
    file: typeof raw.logFile === 'string' ? raw.logFile : undefined,
    stderr: io.stderr,
    bindings: { plugin: plugin.name, command: env.command, containerId: env.containerId || undefined, ifname: env.ifname || undefined },
  });
  state.log = log;

  const cniVersion = selectVersion(raw, info);
  state.version = cniVersion;
  requireVerbAllowed(env.command, cniVersion);

  // Loaded only past VERSION: the schemas and the result code cost start-up time.
  const [{ parseNetConf }, { formatResult, parseGcAttachments, parseResult }] = await Promise.all([
    import('./config.js'),
    import('./types.js'),
  ]);
  const config = parseNetConf(raw);
  const args = parseCniArgs(env.args, plugin.cniArgs);
  const req: CniRequest = {
    command: env.command,
    cniVersion,
    containerId: env.containerId,
    netns: env.netns,
    ifname: env.ifname,
    args,
    path: env.path,
    config,
    stdin,
    env: io.env,
    stderr: io.stderr,
    log,
  };
  if (raw.prevResult !== undefined && raw.prevResult !== null) req.prevResult = parseResult(raw.prevResult, cniVersion);
  if (env.command === 'CHECK' && req.prevResult === undefined) {
    throw new CniError(CniCode.InvalidNetworkConfig, 'invalid network config: field "prevResult" is required for CHECK');
  }
  if (env.command === 'GC') {
    const attachments = parseGcAttachments(raw);
    if (attachments) req.validAttachments = attachments;
  }

  await warm;
  log.debug({ cniVersion }, 'invoked');
  const result = await callVerb(plugin, req);
  return result === undefined ? undefined : `${JSON.stringify(formatResult(result, cniVersion))}\n`;
}

/** stdin as a JSON object; code 6 when it is not one. */
function decodeConfig(text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    const why = text.trim() === '' ? 'stdin is empty' : err instanceof Error ? err.message : String(err);
    throw new CniError(CniCode.DecodingFailure, `cannot decode the network config on stdin as JSON: ${why}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new CniError(CniCode.DecodingFailure, 'cannot decode the network config on stdin: it is not a JSON object');
  }
  // JSON.parse takes any depth, but the schema checks and result conversion recurse: 100,000
  // nested arrays overflowed the stack there and came out as code 999 (torture configs).
  if (nestingDepth(value, MAX_CONFIG_DEPTH) > MAX_CONFIG_DEPTH) {
    throw new CniError(CniCode.DecodingFailure, `cannot decode the network config on stdin: it is nested deeper than ${MAX_CONFIG_DEPTH} levels`);
  }
  return value as Record<string, unknown>;
}

/** Far above any real config (a prevResult inside a chained config is about 6 deep). */
export const MAX_CONFIG_DEPTH = 64;

/** The nesting depth of a parsed JSON value, counted without recursion; stops past `limit`. */
export function nestingDepth(value: unknown, limit: number): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    deepest = Math.max(deepest, depth);
    if (deepest > limit) return deepest;
    for (const child of Object.values(v)) stack.push([child, depth + 1]);
  }
  return deepest;
}

async function readStdin(io: CniIO, optional: boolean): Promise<string> {
  if (typeof io.stdin === 'string') return io.stdin;
  try {
    return await io.stdin(optional);
  } catch (err) {
    throw new CniError(CniCode.IOFailure, `cannot read the network config from stdin: ${err instanceof Error ? err.message : String(err)}`);
  }
}
