/**
 * The one sanctioned exec of the kernel layer (issue 2 §3): the `nft` CLI. Synchronous, so a
 * CNI process stays simple, with a timeout so a wedged nft cannot hang a runtime's ADD.
 *
 * A long-lived process (the daemon's CNI workers) calls `useLibnftables()` once: the same
 * commands then run in-process through libnftables, the library the `nft` command is built on
 * (native/shoal-sys `nftRun`), instead of a process start per transaction (DESIGN §6: the nft
 * process was ~30 ms of an ADD with masquerade). Same text in, same output; kernel errors read
 * the same, though a parse error names the input "internal" where nft says "/dev/stdin".
 */
import { NftablesError } from './errors.js';
import { sys } from './sys.js';

let inProcess = false;

/** Runs later nft commands through libnftables when this Node's addon can load it; true if so. */
export function useLibnftables(): boolean {
  const fn = sys().nftRun;
  inProcess = fn !== undefined && fn('list tables', false, true) !== null;
  return inProcess;
}

/** `nft [-j] [-c] -f -` with input, or `nft [-j] <command words>`, as libnftables runs them. */
function runInProcess(args: readonly string[], input: string | undefined): NftResult | undefined {
  let json = false;
  let dryRun = false;
  let rest = [...args];
  for (;;) {
    if (rest[0] === '-j') json = true;
    else if (rest[0] === '-c') dryRun = true;
    else break;
    rest = rest.slice(1);
  }
  const fromStdin = rest.length === 2 && rest[0] === '-f' && rest[1] === '-';
  if (!fromStdin && rest.some((a) => a.startsWith('-'))) return undefined; // an option we do not map: the CLI
  const out = sys().nftRun!(fromStdin ? (input ?? '') : rest.join(' '), json, dryRun);
  if (out === null) return undefined;
  const [status, stdout, stderr] = out;
  return { status, stdout, stderr };
}

const NFT_TIMEOUT_MS = 10_000;

/** Loaded on first use: child_process costs ~5 ms, and many ADDs never run nft. */
const childProcess = () => process.getBuiltinModule('node:child_process');

export interface NftResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** Run `nft <args>` with optional stdin; returns the exit status (callers decide what it means). */
export function runNft(args: readonly string[], input?: string): NftResult {
  if (inProcess) {
    const res = runInProcess(args, input);
    if (res) return res;
  }
  const res = childProcess().spawnSync('nft', args, {
    input: input ?? '',
    encoding: 'utf8',
    timeout: NFT_TIMEOUT_MS,
    maxBuffer: 64 * 1024 * 1024,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  if (res.error) {
    const code = (res.error as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'nft is not installed (Debian package "nftables")' : res.error.message;
    throw new NftablesError(`failed to run "nft ${args.join(' ')}": ${why}`, '', { cause: res.error });
  }
  if (res.signal) {
    throw new NftablesError(`failed to run "nft ${args.join(' ')}": killed by ${res.signal}`, res.stderr ?? '');
  }
  return { status: res.status ?? 1, stdout: res.stdout ?? '', stderr: res.stderr ?? '' };
}
