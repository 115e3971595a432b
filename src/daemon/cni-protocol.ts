/**
 * The wire protocol of `<run dir>/cni.sock`, between the CNI executables in dist/cni (a small C
 * forwarder, native/cni-forward) and the daemon (cni-server.ts). One request per connection:
 *
 *   daemon -> client   "SHOAL-CNI/1 <build id> <timeout ms> <net ns> <mnt ns> <pid ns>\n"  on accept
 *   client -> daemon   "REQ <type> <env bytes> <stdin bytes>\n" env stdin
 *   daemon -> client   "RES <exit status> <stdout bytes> <stderr bytes>\n" stdout stderr
 *
 * env is the forwarder's whole environment as NUL-terminated KEY=VALUE entries; stdin is the
 * network config exactly as the runtime wrote it. The build id is a hash of the plugin code the
 * daemon runs; the namespaces are the inodes of the daemon's network, mount and pid namespaces.
 * A forwarder of another build, or in other namespaces (whose plugin would act on another
 * "host"), hangs up before sending anything and runs its own Node plugin instead. The timeout
 * tells the forwarder how long to wait for the answer (plus a margin) before giving up with
 * code 11. Pure: no sockets here, so it is unit-tested on buffers.
 */
export const PROTOCOL = 'SHOAL-CNI/1';
/** Bounds, the same as the forwarder's (native/cni-forward/shoal_cni_forward.c). */
export const MAX_ENV_BYTES = 1 << 20;
export const MAX_STDIN_BYTES = 16 << 20;
const MAX_HEADER_BYTES = 256;
const TYPE_PATTERN = /^shoal-[a-z0-9-]{1,57}$/;

export interface CniWireRequest {
  type: string;
  env: Record<string, string>;
  stdin: string;
}

export interface CniWireResponse {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export class ProtocolError extends Error {}

export interface Namespaces {
  net: number;
  mnt: number;
  pid: number;
}

export function greeting(buildId: string, timeoutMs: number, ns: Namespaces): string {
  return `${PROTOCOL} ${buildId} ${Math.round(timeoutMs)} ${ns.net} ${ns.mnt} ${ns.pid}\n`;
}

export function encodeResponse(r: CniWireResponse): Buffer {
  const out = Buffer.from(r.stdout, 'utf8');
  const err = Buffer.from(r.stderr, 'utf8');
  return Buffer.concat([Buffer.from(`RES ${r.exitCode} ${out.length} ${err.length}\n`), out, err]);
}

/** The client's side, for tests and tools that speak the protocol from Node. */
export function encodeRequest(r: CniWireRequest): Buffer {
  const env = Buffer.from(Object.entries(r.env).map(([k, v]) => `${k}=${v}\0`).join(''), 'utf8');
  const stdin = Buffer.from(r.stdin, 'utf8');
  return Buffer.concat([Buffer.from(`REQ ${r.type} ${env.length} ${stdin.length}\n`), env, stdin]);
}

/**
 * Collects a request from a stream's chunks: `push` returns the request once it is complete,
 * undefined while more is needed, and throws ProtocolError on anything malformed or oversized.
 */
export class RequestReader {
  private chunks: Buffer[] = [];
  private size = 0;
  private header: { type: string; envBytes: number; stdinBytes: number; at: number } | undefined;

  push(chunk: Buffer): CniWireRequest | undefined {
    this.chunks.push(chunk);
    this.size += chunk.length;
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    this.chunks = [all];
    if (!this.header) {
      const nl = all.indexOf(0x0a);
      if (nl < 0) {
        if (all.length > MAX_HEADER_BYTES) throw new ProtocolError('request header too long');
        return undefined;
      }
      this.header = parseHeader(all.subarray(0, nl).toString('latin1'));
      this.header.at = nl + 1;
    }
    const { type, envBytes, stdinBytes, at } = this.header;
    const end = at + envBytes + stdinBytes;
    if (this.size < end) return undefined;
    if (this.size > end) throw new ProtocolError('more bytes than the request header announced');
    return { type, env: parseEnv(all.subarray(at, at + envBytes)), stdin: all.subarray(at + envBytes, end).toString('utf8') };
  }
}

function parseHeader(line: string): { type: string; envBytes: number; stdinBytes: number; at: number } {
  const m = /^REQ (\S+) (\d{1,9}) (\d{1,9})$/.exec(line);
  if (!m) throw new ProtocolError(`malformed request header ${JSON.stringify(line.slice(0, 80))}`);
  const [, type, env, stdin] = m;
  if (!TYPE_PATTERN.test(type!)) throw new ProtocolError(`invalid plugin type ${JSON.stringify(type)}`);
  const envBytes = Number(env);
  const stdinBytes = Number(stdin);
  if (envBytes > MAX_ENV_BYTES) throw new ProtocolError(`environment of ${envBytes} bytes is over the limit of ${MAX_ENV_BYTES}`);
  if (stdinBytes > MAX_STDIN_BYTES) throw new ProtocolError(`config of ${stdinBytes} bytes is over the limit of ${MAX_STDIN_BYTES}`);
  return { type: type!, envBytes, stdinBytes, at: 0 };
}

/**
 * NUL-terminated KEY=VALUE entries. As getenv(3) reads them: an entry without "=" is ignored and
 * the first of two with one key wins. A null-prototype object: "__proto__" is just a key here.
 */
function parseEnv(bytes: Buffer): Record<string, string> {
  const env = Object.create(null) as Record<string, string>;
  for (const entry of bytes.toString('utf8').split('\0')) {
    const eq = entry.indexOf('=');
    const key = entry.slice(0, eq);
    if (eq > 0 && !(key in env)) env[key] = entry.slice(eq + 1);
  }
  return env;
}
