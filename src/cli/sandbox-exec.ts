/**
 * Hidden `shoal __sandbox-exec SPEC_JSON`: the launcher `shoal run` starts for the sandboxed
 * command. It enters the sandbox's namespaces and execs the command in place (same pid), so
 * the supervisor's child *is* the command: signals and exit status need no relaying.
 */
import * as fs from 'node:fs';

export async function run(args: string[]): Promise<number> {
  const spec = JSON.parse(args[0] ?? '{}') as import('../kernel/sandbox.js').SandboxExecSpec;
  const { execInSandbox } = await import('../kernel/sandbox.js');
  try {
    execInSandbox(spec);
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    fs.writeSync(2, `shoal: failed to start "${spec.argv?.[0]}": ${msg}\n`);
    // As shells do: 127 for a command that is not there, 126 for one that cannot run.
    return /ENOENT/.test(msg) ? 127 : 126;
  }
  return 126; // not reached: execInSandbox returns only by throwing
}
