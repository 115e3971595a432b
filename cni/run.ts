/**
 * The one way Shoal runs a CNI plugin, whoever asks: the skel dispatching its own verb, a plugin
 * delegating to IPAM (invoke.ts), shoal-bridge running portmap and DNS in its own process
 * (src/bridge/embedded.ts), and the CLI running a conflist like libcni (src/network/chain.ts).
 *
 * Two ways to reach a plugin, one contract:
 * - in-process: `callVerb` calls the plugin's verb function with a request, with the spec's
 *   meaning for a verb the plugin lacks (no DEL, STATUS or GC: success; no CHECK: code 4);
 * - executable: `execPlugin` runs the file with the CNI environment and the config on stdin,
 *   and `decodeOutcome` turns its exit status and stdout into the result or the plugin's own
 *   CNI error (code and message kept), so both ways fail alike.
 * The sequencing of several plugins (ADD in order, DEL in reverse, ...) is chain.ts.
 */
import { CniCode, CniError } from './errors.js';
import type { CniPlugin, CniRequest } from './skel.js';
import type { CniResult } from './types.js';

// child_process costs ~5 ms to load; a plugin whose delegates all run in-process never execs.
const childProcess = () => process.getBuiltinModule('node:child_process');

/** Calls `req.command` on an in-process plugin. ADD must produce a result. */
export async function callVerb(plugin: CniPlugin, req: CniRequest): Promise<CniResult | undefined> {
  switch (req.command) {
    case 'ADD': {
      if (!plugin.add) throw unsupportedVerb(plugin, 'ADD');
      const result = await plugin.add(req);
      if (!result) throw new CniError(CniCode.Internal, `${plugin.name ?? 'plugin'}: ADD produced no result`);
      return result;
    }
    case 'DEL':
      await plugin.del?.(req);
      return undefined;
    case 'CHECK':
      if (!plugin.check) throw unsupportedVerb(plugin, 'CHECK');
      await plugin.check(req);
      return undefined;
    case 'STATUS':
      await plugin.status?.(req);
      return undefined;
    case 'GC':
      await plugin.gc?.(req);
      return undefined;
  }
}

function unsupportedVerb(plugin: CniPlugin, verb: string): CniError {
  return new CniError(CniCode.InvalidEnvironment, `CNI_COMMAND ${verb} is not supported by ${plugin.name ?? 'this plugin'}`);
}

export interface ExecResult {
  exitCode: number;
  stdout: string;
}

export interface ExecOptions {
  /** Where the plugin's stderr goes (default: discarded). */
  stderr?: { write(text: string): unknown };
  /** Kill the plugin after this long (default: no limit, as the reference does). */
  timeoutMs?: number;
}

/** Runs a plugin executable with `env` and `stdin`. Retries "text file busy", as the reference does. */
export async function execPlugin(file: string, env: Record<string, string | undefined>, stdin: string, options: ExecOptions = {}): Promise<ExecResult> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await execOnce(file, env, stdin, options);
    } catch (err) {
      // A plugin binary being replaced while we start it.
      if ((err as NodeJS.ErrnoException).code === 'ETXTBSY' && attempt < 5) {
        await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
        continue;
      }
      throw new CniError(CniCode.IOFailure, `failed to execute plugin ${file}: ${(err as Error).message}`, undefined, { cause: err });
    }
  }
}

function execOnce(file: string, env: Record<string, string | undefined>, stdin: string, options: ExecOptions): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = childProcess().spawn(file, [], { env, stdio: ['pipe', 'pipe', 'pipe'], timeout: options.timeoutMs, killSignal: 'SIGKILL' });
    const out: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => options.stderr?.write(chunk.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      resolve({ exitCode: code ?? (signal ? 128 : 1), stdout: Buffer.concat(out).toString('utf8') });
    });
    // A plugin that exits without reading stdin closes the pipe: not our failure.
    child.stdin.on('error', () => undefined);
    child.stdin.end(stdin);
  });
}

/** The CNI error a failed plugin printed on stdout (code, msg, details), if it printed one. */
export function reportedError(run: ExecResult): CniError | undefined {
  if (run.exitCode === 0) return undefined;
  try {
    const e = JSON.parse(run.stdout) as { code?: unknown; msg?: unknown; details?: unknown } | null;
    if (typeof e?.code === 'number' && typeof e.msg === 'string') return new CniError(e.code, e.msg, typeof e.details === 'string' ? e.details : undefined);
  } catch {
    // not JSON: the caller says what happened instead
  }
  return undefined;
}

/**
 * What an executed plugin answered: its stdout as a JSON object (undefined when it printed
 * nothing), or, when it failed, its own CNI error when it printed one, else an error that says
 * what happened. `what` names the call in messages ("IPAM plugin "x" ADD").
 */
export function decodeOutcome(what: string, run: ExecResult): Record<string, unknown> | undefined {
  const text = run.stdout.trim();
  if (run.exitCode !== 0) {
    throw reportedError(run) ?? new CniError(CniCode.Internal, `${what} failed with exit code ${run.exitCode}${text ? `: ${text.slice(0, 500)}` : ' and printed no error'}`);
  }
  if (text === '') return undefined;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new CniError(CniCode.DecodingFailure, `cannot decode the output of ${what}: ${(err as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new CniError(CniCode.DecodingFailure, `cannot decode the output of ${what}: it is not a JSON object`);
  }
  return json as Record<string, unknown>;
}
