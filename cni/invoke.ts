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
import { callVerb, decodeOutcome, execPlugin } from './run.js';
import type { CniPlugin, CniRequest } from './skel.js';

// fs/promises costs ~2 ms to load; an ADD whose IPAM runs in-process never looks for a file.
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
  if (inProcess) {
    const plugin = await inProcess();
    return callVerb(plugin, { ...req, command: verb, stdin, log: req.log.child({ delegate: plugin.name }) });
  }

  const executable = await findInPath(type, req.path);
  req.log.debug({ delegate: executable, verb }, 'delegating');
  const run = await execPlugin(executable, { ...req.env, CNI_COMMAND: verb }, stdin, { stderr: req.stderr, timeoutMs: options.timeoutMs });
  const json = decodeOutcome(`IPAM plugin "${type}" ${verb}`, run);
  if (verb !== 'ADD') return undefined;
  if (json === undefined) return undefined;
  // A result declares its own version; parse it in that, then it is ours (1.1) internally.
  const version = typeof json['cniVersion'] === 'string' ? json['cniVersion'] : req.cniVersion;
  return parseResult(json, version, `result of IPAM plugin "${type}"`);
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
