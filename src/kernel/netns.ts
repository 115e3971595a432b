/**
 * Network namespaces: create and delete named ones the way `ip netns add/delete` does (a file
 * under /run/netns with the namespace bind-mounted onto it), and enter one briefly to open a
 * socket there.
 *
 * Why the window is so narrow (DESIGN §4.3, §6): Linux keeps the network namespace per
 * *thread*, and `setns` here runs on Node's main thread. While the main thread sits in a
 * container's namespace, anything it creates lands there: sockets, and — if the libuv threadpool
 * has not started yet — every pool thread, forever. So `withNetns` runs a synchronous function
 * only, refuses a Promise (its continuations would run after we switched back, or worse, its
 * synchronous part would be the only thing protected), and always switches back in `finally`.
 * Only sockets created synchronously inside the window land in the namespace; `dgram.bind`,
 * `server.listen(port, host)` and `net.connect` defer the socket() call and land in the host.
 *
 * Long-lived processes (the daemon) must `await warmThreadpool()` at start-up, before the first
 * window, so that libuv's pool threads are born in the host namespace. Never start a Worker
 * inside a window. A short-lived CNI process that only does synchronous work does not need it.
 *
 * Paths accepted anywhere a path is taken: /run/netns/<name> files, and runtime-provided paths
 * such as /proc/<pid>/ns/net or a bind mount elsewhere (CNI_NETNS).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { failedTo } from '../errors.js';
import { NetnsError, NetnsNotFoundError, SyscallError } from './errors.js';
import * as ffi from './ffi.js';

export const NETNS_RUN_DIR = '/run/netns';
/** The calling thread's own netns; /proc/self would name the thread-group leader instead. */
const THREAD_NETNS = '/proc/thread-self/ns/net';
/** statfs(2) f_type of the namespace filesystem: every namespace file lives on it. */
const NSFS_MAGIC = 0x6e736673;
/**
 * libuv opens every file O_CLOEXEC anyway; spelled out so an fd handed to setns or a netlink
 * helper never leaks into a child (`nft`, an IPAM plugin). Node does not export O_CLOEXEC.
 */
const O_RDONLY_CLOEXEC = fs.constants.O_RDONLY | 0o2000000;

/** /run/netns/<name>, after checking the name cannot escape the directory. */
export function netnsPath(name: string): string {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    throw new NetnsError(name, `invalid network namespace name "${name}"`);
  }
  return path.join(NETNS_RUN_DIR, name);
}

/** A bare name means /run/netns/<name>; anything with a slash is taken as a path. */
function resolve(nameOrPath: string): string {
  return nameOrPath.includes('/') ? nameOrPath : netnsPath(nameOrPath);
}

function errnoOf(err: unknown): string | undefined {
  if (err instanceof SyscallError) return err.errnoName;
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/** True when `p` is a namespace file (nsfs), i.e. a live namespace, not a leftover plain file. */
export function netnsExists(p: string): boolean {
  try {
    return fs.statfsSync(resolve(p)).type === NSFS_MAGIC;
  } catch {
    return false;
  }
}

/** Names of the namespaces under /run/netns (empty when the directory does not exist). */
export function listNetns(): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(NETNS_RUN_DIR);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return [];
    throw new NetnsError(NETNS_RUN_DIR, failedTo('list network namespaces in', NETNS_RUN_DIR, err), { cause: err });
  }
  return names.filter((n) => netnsExists(path.join(NETNS_RUN_DIR, n))).sort();
}

/** Inode of the calling thread's netns: equal inodes mean the same namespace. */
export function currentNetnsInode(): number {
  return fs.statSync(THREAD_NETNS).ino;
}

/** Inode of the namespace at `p` (NetnsNotFoundError when it is not one). */
export function netnsInode(p: string): number {
  const resolved = resolve(p);
  if (!netnsExists(resolved)) throw new NetnsNotFoundError(resolved);
  return fs.statSync(resolved).ino;
}

/**
 * An O_RDONLY|O_CLOEXEC fd on the namespace at `p`; the caller closes it (ffi.close or
 * fs.closeSync). NetnsNotFoundError when the path is missing or is not a namespace file.
 */
export function openNetnsFd(p: string): number {
  const resolved = resolve(p);
  if (!netnsExists(resolved)) throw new NetnsNotFoundError(resolved);
  try {
    return fs.openSync(resolved, O_RDONLY_CLOEXEC);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') throw new NetnsNotFoundError(resolved, { cause: err });
    throw new NetnsError(resolved, failedTo('open network namespace', resolved, err), { cause: err });
  }
}

function openThreadNetns(): number {
  return fs.openSync(THREAD_NETNS, O_RDONLY_CLOEXEC);
}

/**
 * Switch the main thread back to `origFd`. If this fails the process would keep running inside
 * a container's namespace, which is worse than dying: callers must not catch this one.
 */
function switchBack(origFd: number, target: string): void {
  try {
    ffi.setns(origFd, ffi.CLONE_NEWNET, '(back to the original netns)');
  } catch (err) {
    throw new NetnsError(target, `failed to leave network namespace "${target}": ${String(err)}; the process is in the wrong namespace`, { cause: err });
  }
}

/**
 * Run `fn` synchronously with the main thread inside the namespace at `p`, and always switch
 * back. Use it only to create sockets (netlink, raw) or read /proc/sys/net; do no async work in
 * `fn`. A thenable result is refused: we switch back and throw.
 */
export function withNetns<T>(p: string, fn: () => T): T {
  const resolved = resolve(p);
  const targetFd = openNetnsFd(resolved);
  let origFd: number;
  try {
    origFd = openThreadNetns();
  } catch (err) {
    fs.closeSync(targetFd);
    throw new NetnsError(resolved, failedTo('open the current network namespace before entering', resolved, err), { cause: err });
  }
  try {
    try {
      ffi.setns(targetFd, ffi.CLONE_NEWNET, resolved);
    } catch (err) {
      // EINVAL: the file is a namespace, but not a network one (e.g. /proc/<pid>/ns/mnt).
      if (errnoOf(err) === 'EINVAL') throw new NetnsNotFoundError(resolved, { cause: err });
      throw new NetnsError(resolved, failedTo('enter network namespace', resolved, err), { cause: err });
    }
    let result: T;
    try {
      result = fn();
    } finally {
      switchBack(origFd, resolved);
    }
    if (isThenable(result)) {
      // Keep a rejection of the refused promise from surfacing as an unhandled rejection.
      result.then(undefined, () => undefined);
      throw new NetnsError(resolved, `failed to run in network namespace "${resolved}": the function returned a Promise; only synchronous work may run inside a namespace window`);
    }
    return result;
  } finally {
    fs.closeSync(origFd);
    fs.closeSync(targetFd);
  }
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return (typeof v === 'object' || typeof v === 'function') && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

/**
 * /run/netns must be a shared mount point so a namespace mounted there is visible to other
 * mount namespaces (runtimes that unshare their mount ns), as iproute2 arranges it: try to make
 * it shared; if it is not a mount point yet (EINVAL), bind it onto itself and try again.
 */
function ensureRunDir(): void {
  fs.mkdirSync(NETNS_RUN_DIR, { recursive: true, mode: 0o755 });
  try {
    ffi.mount('none', NETNS_RUN_DIR, 'none', ffi.MS_SHARED | ffi.MS_REC);
    return;
  } catch (err) {
    if (errnoOf(err) !== 'EINVAL') throw err;
  }
  ffi.mount(NETNS_RUN_DIR, NETNS_RUN_DIR, 'none', ffi.MS_BIND | ffi.MS_REC);
  ffi.mount('none', NETNS_RUN_DIR, 'none', ffi.MS_SHARED | ffi.MS_REC);
}

/**
 * Create the named namespace, like `ip netns add <name>`, and return its path. On any failure
 * nothing is left behind and the main thread is back in its original namespace.
 */
export function createNetns(name: string): string {
  const target = netnsPath(name);
  try {
    ensureRunDir();
  } catch (err) {
    throw new NetnsError(name, failedTo('prepare', NETNS_RUN_DIR, err), { cause: err });
  }
  try {
    // Mode 0 and O_EXCL as iproute2 does: the file is only a mount point, and an existing name
    // must fail rather than replace someone else's namespace.
    fs.closeSync(fs.openSync(target, fs.constants.O_RDONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0));
  } catch (err) {
    const reason = errnoOf(err) === 'EEXIST' ? 'it already exists' : err;
    throw new NetnsError(name, failedTo('create network namespace', name, reason), { cause: err });
  }
  let origFd: number | undefined;
  try {
    origFd = openThreadNetns();
    ffi.unshare(ffi.CLONE_NEWNET);
    try {
      // Pin the new namespace: without a reference it dies as soon as we switch back.
      ffi.mount(THREAD_NETNS, target, 'none', ffi.MS_BIND);
    } finally {
      switchBack(origFd, name);
    }
  } catch (err) {
    ffi.umount2(target, ffi.MNT_DETACH);
    fs.rmSync(target, { force: true });
    if (err instanceof NetnsError) throw err;
    throw new NetnsError(name, failedTo('create network namespace', name, err), { cause: err });
  } finally {
    if (origFd !== undefined) fs.closeSync(origFd);
  }
  return target;
}

/**
 * Delete a namespace made by createNetns (a name or a path under /run/netns): detach the mount
 * and unlink the file. Missing is success (DEL never fails on "already gone"). Paths a runtime
 * owns (/proc/<pid>/ns/net, other bind mounts) are refused: they are not ours to remove.
 */
export function deleteNetns(nameOrPath: string): void {
  const target = resolve(nameOrPath);
  if (path.dirname(path.resolve(target)) !== NETNS_RUN_DIR) {
    throw new NetnsError(target, `failed to delete network namespace "${target}": only namespaces under ${NETNS_RUN_DIR} are deleted`);
  }
  const errno = ffi.umount2(target, ffi.MNT_DETACH);
  // EINVAL: not a mount point (a half-made leftover); ENOENT: already gone.
  if (errno !== 0 && errno !== 22 && errno !== 2) {
    throw new NetnsError(target, failedTo('unmount network namespace', target, `${ffi.errnoName(errno)}`));
  }
  try {
    fs.unlinkSync(target);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return;
    throw new NetnsError(target, failedTo('delete network namespace', target, err), { cause: err });
  }
}

/**
 * Start libuv's threadpool now, from the host namespace: libuv creates all pool threads on the
 * first piece of async work, and they keep the namespace of the thread that was current then.
 */
export async function warmThreadpool(): Promise<void> {
  await fs.promises.access('/');
}
