/**
 * The skel's I/O for a real plugin process (it lives here, not in cni/, because a fast exit
 * goes through the system-call addon: cni/ is the protocol library and never touches the OS): fds 0, 1 and 2 used synchronously.
 *
 * Why not process.stdin/stdout: for a pipe (how every runtime runs a plugin) they are
 * net.Socket objects, and touching them loads Node's net and stream machinery, several ms of
 * a VERSION call that otherwise loads almost nothing. Synchronous reads and writes also mean
 * nothing is left buffered when the process exits right after answering.
 */
import { closeSync, fstatSync, openSync, read, readSync, stat, writeSync } from 'node:fs';
import { exitNow } from './ffi.js';
import { sysLoaded } from './sys.js';
import { pluginMain, type CniIO, type CniPlugin } from '../../cni/skel.js';

/** How long VERSION waits for an optional config on stdin before answering without one. */
const VERSION_STDIN_WAIT_MS = 1000;
const CHUNK = 64 * 1024;

export function processIO(): CniIO {
  return {
    env: process.env,
    stdin: (optional) => readStdin(optional),
    stdout: { write: (text: string) => writeAll(1, text) },
    stderr: { write: (text: string) => writeAll(2, text) },
    // Exit even if a stray handle would keep the event loop alive: a hanging plugin blocks the
    // container runtime. Everything was written synchronously already, and the store's commits
    // are in its WAL (safe as kill -9 is), so once the 'exit' listeners have run (the launcher
    // writes its code cache there) a plugin that loaded the system-call addon skips Node's teardown.
    exit: (code) => {
      if (sysLoaded()) {
        process.exitCode = code;
        process.emit('exit', code);
        exitNow(code);
      }
      process.exit(code);
    },
    // DESIGN.md §6: libuv starts its thread pool on the first async fs call. Make that call here,
    // in the host namespaces, before any verb code can enter a container namespace. (The
    // callback form: fs/promises costs several ms more on first use, measured.)
    beforeVerb: () => new Promise<void>((resolve) => stat('/', () => resolve())),
  };
}

function writeAll(fd: number, text: string): void {
  const buffer = Buffer.from(text, 'utf8');
  for (let offset = 0; offset < buffer.length; ) {
    try {
      offset += writeSync(fd, buffer, offset);
    } catch (err) {
      // A non-blocking fd that is momentarily full: try again.
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
    }
  }
}

async function readStdin(optional: boolean): Promise<string> {
  const info = fstatSync(0);
  // A terminal (someone running the executable by hand) or /dev/null: no config. Reading a
  // terminal would wait for the user; the answer "stdin is empty" is more helpful.
  if (info.isCharacterDevice()) return '';
  // A pipe that may never close (VERSION's config is optional): read on the thread pool with
  // a deadline instead of blocking the process forever.
  if (optional && (info.isFIFO() || info.isSocket())) return readWithDeadline(VERSION_STDIN_WAIT_MS);
  return readAllSync();
}

function readAllSync(): string {
  const chunks: Buffer[] = [];
  for (;;) {
    const chunk = Buffer.allocUnsafe(CHUNK);
    let n: number;
    try {
      n = readSync(0, chunk, 0, CHUNK, null);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN') return readNonBlocking(chunks);
      if (code === 'EOF') break;
      throw err;
    }
    if (n === 0) break;
    chunks.push(chunk.subarray(0, n));
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** A non-blocking stdin (rare: an inherited O_NONBLOCK pipe): reopen it blocking. */
function readNonBlocking(already: Buffer[]): string {
  const fd = openSync('/proc/self/fd/0', 'r');
  try {
    const chunks = [...already];
    for (;;) {
      const chunk = Buffer.allocUnsafe(CHUNK);
      const n = readSync(fd, chunk, 0, CHUNK, null);
      if (n === 0) break;
      chunks.push(chunk.subarray(0, n));
    }
    return Buffer.concat(chunks).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

function readWithDeadline(ms: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => resolve(''), ms); // nobody is sending a config
    const next = (): void => {
      const chunk = Buffer.allocUnsafe(CHUNK);
      read(0, chunk, 0, CHUNK, null, (err, n) => {
        if (err) {
          clearTimeout(timer);
          reject(err);
        } else if (n === 0) {
          clearTimeout(timer);
          resolve(Buffer.concat(chunks).toString('utf8'));
        } else {
          chunks.push(chunk.subarray(0, n));
          next();
        }
      });
    };
    next();
  });
}

/** The entry point of a plugin executable: one CNI invocation on this process's fds, then exit. */
export function runPluginProcess(plugin: CniPlugin): Promise<number> {
  return pluginMain(plugin, processIO());
}
