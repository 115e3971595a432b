/**
 * The few system calls Node does not expose (socket families other than inet/unix, setns,
 * unshare, mount), through Shoal's addon (./sys.ts). Loaded on first use so that a CNI verb that
 * never touches the kernel (VERSION) never pays for it.
 */
import { SyscallError } from './errors.js';
import { sys } from './sys.js';

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

/**
 * Ends the process now with `code` through libc's _exit, skipping Node's teardown (2-3 ms of a
 * CNI process, measured). Only for callers that have written all their output synchronously and
 * run their 'exit' listeners themselves; check sysLoaded() first to avoid loading the addon for it.
 */
export function exitNow(code: number): never {
  return sys().exit(code);
}

export function errnoName(errno: number): string {
  return sys().errnoName(errno) ?? `E${errno}`;
}

/** Turns the addon's "result or -errno" into the result or a SyscallError. */
export function checked(syscall: string, ret: number, detail?: string): number {
  if (ret < 0) throw new SyscallError(syscall, -ret, errnoName(-ret), detail);
  return ret;
}

export function socket(domain: number, type: number, protocol: number): number {
  return checked('socket', sys().socket(domain, type | SOCK_CLOEXEC, protocol));
}

export function bind(fd: number, addr: Buffer): void {
  checked('bind', sys().bind(fd, addr));
}

export function getsockname(fd: number, size: number): Buffer {
  const addr = Buffer.alloc(size);
  return addr.subarray(0, checked('getsockname', sys().getsockname(fd, addr)));
}

const SO_PEERCRED = 17;

/** The credentials of the process at the other end of a unix socket (SO_PEERCRED). */
export function peerCredentials(fd: number): { pid: number; uid: number; gid: number } {
  const ucred = Buffer.alloc(12);
  checked('getsockopt(SO_PEERCRED)', sys().getsockopt(fd, SOL_SOCKET, SO_PEERCRED, ucred));
  return { pid: ucred.readInt32LE(0), uid: ucred.readUInt32LE(4), gid: ucred.readUInt32LE(8) };
}

export function setsockopt(fd: number, level: number, name: number, value: Buffer): void {
  checked('setsockopt', sys().setsockopt(fd, level, name, value), `(level ${level}, option ${name})`);
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
  sys().close(fd);
}

export function setns(fd: number, nstype: number, detail?: string): void {
  checked('setns', sys().setns(fd, nstype), detail);
}

export function unshare(flags: number): void {
  checked('unshare', sys().unshare(flags));
}

export function mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null = null): void {
  checked('mount', sys().mount(source, target, fstype, flags, data), `${source ?? 'none'} on ${target}`);
}

/** umount2; returns the errno instead of throwing so callers can treat EINVAL/ENOENT as "already gone". */
export function umount2(target: string, flags: number): number {
  const ret = sys().umount2(target, flags);
  return ret < 0 ? -ret : 0;
}
