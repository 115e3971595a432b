/**
 * Delegation to the IPAM plugin (SPEC.md "IP Allocation"): the executable named by
 * `ipam.type`, found in CNI_PATH, run with the same environment (CNI_COMMAND set per verb) and
 * the full network config on stdin; its stderr is passed through, its result parsed into the
 * internal shape and its error re-raised with its own code and message.
 *
 * DESIGN.md §6: a second Node start-up inside one ADD costs ~60 ms, so an IPAM type registered
 * with registerInProcessDelegate() (shoal-ipam, by its issue) is called in this process instead.
 *
 * withRollback() gives ADD an undo stack: "if a later step of ADD fails, DEL the IPAM before
 * returning the error" (DESIGN.md §4.2).
 */
import { constants } from 'node:fs';
import { join } from 'node:path';
import { CniCode, CniError, invalidEnv } from './errors.js';
import { parseResult, type CniResult } from './types.js';
import type { CniPlugin, CniRequest } from './skel.js';

// child_process and fs/promises cost ~5 ms and ~2 ms to load; an ADD whose IPAM runs in-process
// never execs, so they are loaded on first use only.
const childProcess = () => process.getBuiltinModule('node:child_process');
const fsPromises = () => process.getBuiltinModule('node:fs/promises');

type DelegatedVerb = 'ADD' | 'DEL' | 'CHECK' | 'STATUS' | 'GC';

export interface DelegateOptions {
  /** The plugin type to run; defaults to the config's `ipam.type`. */
  type?: string;
  /** stdin for the delegate; defaults to the config this plugin received, unchanged. */
  stdin?: string;
  /** Kill the delegate after this long (default: no limit, as the reference does). */
  timeoutMs?: number;
}

const inProcessDelegates = new Map<string, () => Promise<CniPlugin>>();

/** Makes delegation to `type` call `load()`'s plugin in-process instead of executing it. */
export function registerInProcessDelegate(type: string, load: () => Promise<CniPlugin>): void {
  inProcessDelegates.set(type, load);
}

export async function delegateAdd(req: CniRequest, options: DelegateOptions = {}): Promise<CniResult> {
  const result = await delegate('ADD', req, options);
  if (!result) throw new CniError(CniCode.Internal, `IPAM plugin "${delegateType(req, options)}" returned no result for ADD`);
  return result;
}

export async function delegateDel(req: CniRequest, options: DelegateOptions = {}): Promise<void> {
  await delegate('DEL', req, options);
}

export async function delegateCheck(req: CniRequest, options: DelegateOptions = {}): Promise<void> {
  await delegate('CHECK', req, options);
}

export async function delegateStatus(req: CniRequest, options: DelegateOptions = {}): Promise<void> {
  await delegate('STATUS', req, options);
}

export async function delegateGc(req: CniRequest, options: DelegateOptions = {}): Promise<void> {
  await delegate('GC', req, options);
}

function delegateType(req: CniRequest, options: DelegateOptions): string {
  const type = options.type ?? req.config.ipam?.type;
  if (!type) {
    throw new CniError(CniCode.InvalidNetworkConfig, 'invalid network config: field "ipam.type" is required to delegate to an IPAM plugin');
  }
  return type;
}

async function delegate(verb: DelegatedVerb, req: CniRequest, options: DelegateOptions): Promise<CniResult | undefined> {
  const type = delegateType(req, options);
  const stdin = options.stdin ?? req.stdin;
  const inProcess = inProcessDelegates.get(type);
  if (inProcess) return callInProcess(await inProcess(), verb, req, stdin);

  const executable = await findInPath(type, req.path);
  req.log.debug({ delegate: executable, verb }, 'delegating');
  const run = await execPlugin(executable, { ...req.env, CNI_COMMAND: verb }, stdin, req.stderr, options.timeoutMs);
  if (run.exitCode !== 0) throw delegateError(type, verb, run);
  if (verb !== 'ADD') return undefined;
  let json: unknown;
  try {
    json = JSON.parse(run.stdout);
  } catch (err) {
    throw new CniError(CniCode.DecodingFailure, `cannot decode the result of IPAM plugin "${type}" ADD: ${(err as Error).message}`);
  }
  // A result declares its own version; parse it in that, then it is ours (1.1) internally.
  const version = typeof (json as { cniVersion?: unknown })?.cniVersion === 'string' ? (json as { cniVersion: string }).cniVersion : req.cniVersion;
  return parseResult(json, version, `result of IPAM plugin "${type}"`);
}

async function callInProcess(plugin: CniPlugin, verb: DelegatedVerb, req: CniRequest, stdin: string): Promise<CniResult | undefined> {
  const sub: CniRequest = { ...req, command: verb, stdin, log: req.log.child({ delegate: plugin.name }) };
  switch (verb) {
    case 'ADD':
      if (!plugin.add) throw new CniError(CniCode.Internal, `in-process delegate ${plugin.name ?? ''} has no ADD`);
      return plugin.add(sub);
    case 'DEL':
      return void (await plugin.del?.(sub));
    case 'CHECK':
      return void (await plugin.check?.(sub));
    case 'STATUS':
      return void (await plugin.status?.(sub));
    case 'GC':
      return void (await plugin.gc?.(sub));
  }
}

/**
 * The first regular, executable file named `type` in `dirs` (the reference's FindInPath).
 * Not found: code 5, naming the type and every directory searched.
 */
export async function findInPath(type: string, dirs: readonly string[]): Promise<string> {
  if (type.includes('/')) throw new CniError(CniCode.InvalidNetworkConfig, `invalid network config: plugin type ${JSON.stringify(type)} must be a file name, not a path`);
  if (dirs.length === 0) throw invalidEnv('CNI_PATH', `cannot find plugin "${type}": CNI_PATH is empty`);
  for (const dir of dirs) {
    const candidate = join(dir, type);
    try {
      if ((await fsPromises().stat(candidate)).isFile()) {
        await fsPromises().access(candidate, constants.X_OK);
        return candidate;
      }
    } catch {
      // missing or not executable here: keep looking, as the reference does
    }
  }
  throw new CniError(CniCode.IOFailure, `failed to find plugin "${type}" in CNI_PATH (searched ${dirs.join(', ')})`);
}

export interface ExecResult {
  exitCode: number;
  stdout: string;
}

/** Runs a plugin executable; stderr streams straight to `stderr`. Retries "text file busy". */
export async function execPlugin(
  file: string,
  env: Record<string, string | undefined>,
  stdin: string,
  stderr: { write(text: string): unknown },
  timeoutMs?: number,
): Promise<ExecResult> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await execOnce(file, env, stdin, stderr, timeoutMs);
    } catch (err) {
      // The reference retries ETXTBSY: a plugin binary being replaced while we start it.
      if ((err as NodeJS.ErrnoException).code === 'ETXTBSY' && attempt < 5) {
        await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
        continue;
      }
      throw new CniError(CniCode.IOFailure, `failed to execute plugin ${file}: ${(err as Error).message}`, undefined, { cause: err });
    }
  }
}

function execOnce(
  file: string,
  env: Record<string, string | undefined>,
  stdin: string,
  stderr: { write(text: string): unknown },
  timeoutMs?: number,
): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = childProcess().spawn(file, [], { env, stdio: ['pipe', 'pipe', 'pipe'], timeout: timeoutMs });
    const out: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.write(chunk.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      resolve({ exitCode: code ?? (signal ? 128 : 1), stdout: Buffer.concat(out).toString('utf8') });
    });
    // A delegate that exits without reading stdin closes the pipe: not our failure.
    child.stdin.on('error', () => undefined);
    child.stdin.end(stdin);
  });
}

/** The delegate's own error when it printed one, else a clear account of what happened. */
function delegateError(type: string, verb: string, run: ExecResult): CniError {
  try {
    const parsed = JSON.parse(run.stdout) as { code?: unknown; msg?: unknown; details?: unknown };
    if (typeof parsed.code === 'number' && typeof parsed.msg === 'string') {
      return new CniError(parsed.code, parsed.msg, typeof parsed.details === 'string' ? parsed.details : undefined);
    }
  } catch {
    // not JSON: fall through
  }
  const output = run.stdout.trim();
  return new CniError(
    CniCode.Internal,
    `IPAM plugin "${type}" ${verb} failed with exit code ${run.exitCode}${output ? `: ${output.slice(0, 500)}` : ' and printed no error'}`,
  );
}

// ---- rollback --------------------------------------------------------------------------------

export interface UndoStack {
  /** Registers how to undo a step that just succeeded; undone in reverse order on failure. */
  push(what: string, undo: () => unknown): void;
}

/**
 * Runs `steps`; if they throw, runs every registered undo (newest first), then rethrows the
 * original error. An undo that fails is logged and recorded on the error as `rollbackFailures`
 * (cni/errors.ts adds it to `details`); it never hides the original error.
 */
export async function withRollback<T>(
  steps: (undo: UndoStack) => Promise<T>,
  log?: { warn(obj: Record<string, unknown>, msg?: string): void },
): Promise<T> {
  const stack: { what: string; undo: () => unknown }[] = [];
  try {
    return await steps({ push: (what, undo) => stack.push({ what, undo }) });
  } catch (err) {
    const failures: string[] = [];
    for (const step of stack.reverse()) {
      try {
        await step.undo();
      } catch (undoErr) {
        const text = `${step.what}: ${undoErr instanceof Error ? undoErr.message : String(undoErr)}`;
        failures.push(text);
        log?.warn({ step: step.what, err: text }, 'rollback step failed');
      }
    }
    if (failures.length > 0 && typeof err === 'object' && err !== null) {
      Object.defineProperty(err, 'rollbackFailures', { value: failures, enumerable: false, configurable: true });
    }
    throw err;
  }
}

/** ADD's IPAM step: allocate through the delegate and register its release on `undo`. */
export async function ipamAdd(req: CniRequest, undo: UndoStack, options: DelegateOptions = {}): Promise<CniResult> {
  const result = await delegateAdd(req, options);
  undo.push(`release IPAM allocation (${delegateType(req, options)})`, () => delegateDel(req, options));
  return result;
}
