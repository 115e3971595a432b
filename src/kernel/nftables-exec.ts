/**
 * The one sanctioned exec of the kernel layer (issue 2 §3): the `nft` CLI. Synchronous, so a
 * CNI process stays simple, with a timeout so a wedged nft cannot hang a runtime's ADD.
 */
import { NftablesError } from './errors.js';

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
