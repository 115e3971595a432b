/**
 * libc bindings through koffi: the few system calls Node does not expose (socket families other
 * than inet/unix, setns, unshare, mount). Loaded on first use so that a CNI verb that never
 * touches the kernel (VERSION) never pays for it.
 */
import { koffi } from './koffi.js';
import { SyscallError } from './errors.js';

export const AF_UNIX = 1;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const AF_NETLINK = 16;
export const AF_BRIDGE = 7;
export const SOCK_DGRAM = 2;
export const SOCK_RAW = 3;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_RCVTIMEO = 20;
export const SOL_NETLINK = 270;
export const NETLINK_EXT_ACK = 11;
export const NETLINK_GET_STRICT_CHK = 12;
export const CLONE_NEWNET = 0x40000000;
export const CLONE_NEWNS = 0x00020000;
export const MS_NOSUID = 2;
export const MS_NODEV = 4;
export const MS_NOEXEC = 8;
export const MS_BIND = 4096;
export const MS_REC = 16384;
export const MS_PRIVATE = 1 << 18;
export const MS_SHARED = 1 << 20;
export const MS_SLAVE = 1 << 19;
export const MNT_DETACH = 2;

interface Libc {
  socket(domain: number, type: number, protocol: number): number;
  bind(fd: number, addr: Buffer, len: number): number;
  setsockopt(fd: number, level: number, name: number, value: Buffer, len: number): number;
  getsockname(fd: number, addr: Buffer, len: Buffer): number;
  close(fd: number): number;
  setns(fd: number, nstype: number): number;
  unshare(flags: number): number;
  mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): number;
  umount2(target: string, flags: number): number;
  gettid(): number;
  _exit(code: number): void;
}

let libc: Libc | undefined;
let errnoNames: Map<number, string> | undefined;

function load(): Libc {
  if (libc) return libc;
  const lib = koffi().load('libc.so.6');
  libc = {
    socket: lib.func('int socket(int, int, int)'),
    bind: lib.func('int bind(int, const void *, uint32_t)'),
    setsockopt: lib.func('int setsockopt(int, int, int, const void *, uint32_t)'),
    getsockname: lib.func('int getsockname(int, void *, void *)'),
    close: lib.func('int close(int)'),
    setns: lib.func('int setns(int, int)'),
    unshare: lib.func('int unshare(int)'),
    mount: lib.func('int mount(const char *, const char *, const char *, unsigned long, const char *)'),
    umount2: lib.func('int umount2(const char *, int)'),
    gettid: lib.func('int gettid()'),
    _exit: lib.func('void _exit(int)'),
  };
  return libc;
}

/** True once libc is bound (koffi loaded), so exitNow() costs no extra load. */
export function libcBound(): boolean {
  return libc !== undefined;
}

/**
 * Ends the process now with `code` through libc's _exit, skipping Node's teardown (2-3 ms of a
 * CNI process, measured). Only for callers that have written all their output synchronously and
 * run their 'exit' listeners themselves; check libcBound() first to avoid loading koffi for it.
 */
export function exitNow(code: number): void {
  load()._exit(code);
}

export function errnoName(errno: number): string {
  if (!errnoNames) {
    errnoNames = new Map();
    for (const [name, value] of Object.entries(koffi().os.errno)) {
      if (!errnoNames.has(value)) errnoNames.set(value, name);
    }
  }
  return errnoNames.get(errno) ?? `E${errno}`;
}

/** Runs a libc call that returns -1 on failure and turns errno into a SyscallError. */
function checked(syscall: string, ret: number, detail?: string): number {
  if (ret < 0) {
    const errno = koffi().errno();
    throw new SyscallError(syscall, errno, errnoName(errno), detail);
  }
  return ret;
}

export function socket(domain: number, type: number, protocol: number): number {
  return checked('socket', load().socket(domain, type | SOCK_CLOEXEC, protocol));
}

export function bind(fd: number, addr: Buffer): void {
  checked('bind', load().bind(fd, addr, addr.length));
}

export function getsockname(fd: number, size: number): Buffer {
  const addr = Buffer.alloc(size);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(size);
  checked('getsockname', load().getsockname(fd, addr, len));
  return addr.subarray(0, len.readUInt32LE());
}

export function setsockopt(fd: number, level: number, name: number, value: Buffer): void {
  checked('setsockopt', load().setsockopt(fd, level, name, value, value.length), `(level ${level}, option ${name})`);
}

export function setsockoptInt(fd: number, level: number, name: number, value: number): void {
  const buf = Buffer.alloc(4);
  buf.writeInt32LE(value);
  setsockopt(fd, level, name, buf);
}

/** SO_RCVTIMEO takes a struct timeval (two longs on x86_64/arm64). */
export function setReceiveTimeout(fd: number, ms: number): void {
  const tv = Buffer.alloc(16);
  tv.writeBigInt64LE(BigInt(Math.floor(ms / 1000)), 0);
  tv.writeBigInt64LE(BigInt((ms % 1000) * 1000), 8);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv);
}

export function close(fd: number): void {
  load().close(fd);
}

export function setns(fd: number, nstype: number, detail?: string): void {
  checked('setns', load().setns(fd, nstype), detail);
}

export function unshare(flags: number): void {
  checked('unshare', load().unshare(flags));
}

export function mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null = null): void {
  checked('mount', load().mount(source, target, fstype, flags, data), `${source ?? 'none'} on ${target}`);
}

/** umount2; returns the errno instead of throwing so callers can treat EINVAL/ENOENT as "already gone". */
export function umount2(target: string, flags: number): number {
  const ret = load().umount2(target, flags);
  return ret < 0 ? koffi().errno() : 0;
}

export function gettid(): number {
  return load().gettid();
}
