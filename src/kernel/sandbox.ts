/**
 * Turning the current process into a sandboxed command: private mount and UTS namespaces, the
 * sandbox's resolv.conf / hosts / hostname bind-mounted over the host's, the network namespace
 * entered, then execvpe. Used only by the CLI's hidden launcher (`shoal __sandbox-exec`), a
 * short-lived process whose whole job is this, so switching namespaces on the main thread for
 * good is exactly what is wanted here (unlike withNetns windows, DESIGN §4.3).
 *
 * Why these calls work in a multi-threaded Node process: unshare(CLONE_NEWNS|CLONE_NEWUTS) and
 * setns(CLONE_NEWNET) change only the calling (main) thread, and execve keeps exactly that
 * thread's namespaces while discarding the other threads. Through Shoal's addon rather than
 * util-linux `unshare`/`nsenter` so no second program (and no second start-up) is involved.
 */
import * as fs from 'node:fs';
import * as ffi from './ffi.js';
import { openNetnsFd } from './netns.js';
import { sys } from './sys.js';

export const CLONE_NEWUTS = 0x04000000;
const F_SETFD = 2;
const F_GETFL = 3;
const F_SETFL = 4;
const O_NONBLOCK = 0o4000;

/**
 * Node marks fds 0-2 close-on-exec at start-up (and may make them non-blocking): the command
 * must get them as a shell would hand them over.
 */
function inheritStdio(): void {
  for (const fd of [0, 1, 2]) {
    sys().fcntl(fd, F_SETFD, 0);
    const fl = sys().fcntl(fd, F_GETFL, 0);
    if (fl >= 0 && fl & O_NONBLOCK) sys().fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  }
}

export interface SandboxExecSpec {
  /** Netns path to enter; undefined keeps the current one (--network host). */
  netns?: string;
  /** Files bind-mounted over host paths inside the private mount namespace. */
  binds: Array<{ source: string; target: string }>;
  hostname?: string;
  argv: string[];
  env: Record<string, string>;
  cwd?: string;
}

/**
 * Prepares the namespaces and execs the command; returns only by throwing. A missing bind
 * target on the host is skipped (nothing may be created on the host's filesystem).
 */
export function execInSandbox(spec: SandboxExecSpec): never {
  const netnsFd = spec.netns ? openNetnsFd(spec.netns) : undefined;
  ffi.unshare(ffi.CLONE_NEWNS | CLONE_NEWUTS);
  // Private, recursively: our bind mounts must not propagate back to the host's mount table.
  ffi.mount('none', '/', null, ffi.MS_REC | ffi.MS_PRIVATE);
  for (const b of spec.binds) {
    if (!fs.existsSync(b.target)) continue;
    ffi.mount(b.source, b.target, null, ffi.MS_BIND);
  }
  if (spec.hostname !== undefined) ffi.checked('sethostname', sys().sethostname(spec.hostname), spec.hostname);
  if (netnsFd !== undefined) {
    ffi.setns(netnsFd, ffi.CLONE_NEWNET, spec.netns);
    fs.closeSync(netnsFd);
    // sysfs shows the network devices of the netns it was mounted from (DESIGN §6), so the
    // host's /sys would list the host's links inside the sandbox. A fresh sysfs mounted after
    // setns shows the sandbox's own, as a container runtime arranges it. It hides the host's
    // submounts of /sys (cgroup, bpf) in the sandbox only: the mount namespace is private.
    ffi.mount('sysfs', '/sys', 'sysfs', ffi.MS_NOSUID | ffi.MS_NODEV | ffi.MS_NOEXEC);
  }
  if (spec.cwd) process.chdir(spec.cwd);
  // Node ignores SIGPIPE and an exec'd program inherits ignored signals: restore the default,
  // and unblock every signal, so the command behaves as if started from a shell.
  ffi.checked('sigprocmask', sys().resetSignals());
  inheritStdio();
  const env = Object.entries(spec.env).map(([k, v]) => `${k}=${v}`);
  ffi.checked('execvp', sys().execvpe(spec.argv[0]!, spec.argv, env), spec.argv[0]!);
  throw new Error('execvpe returned without an error');
}
