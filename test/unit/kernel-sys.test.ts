import { readFileSync, readlinkSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SyscallError } from '../../src/kernel/errors.js';
import * as ffi from '../../src/kernel/ffi.js';
import { sys } from '../../src/kernel/sys.js';

const EBADF = 9;
const EAFNOSUPPORT = 97;
const F_GETFD = 1;

describe('shoal-sys addon', () => {
  it('loads once, from native/shoal-sys', () => {
    expect(sys()).toBe(sys());
    const maps = readFileSync('/proc/self/maps', 'utf8');
    expect(maps).toMatch(/\/native\/shoal-sys\/build\/shoal_sys\.node\n/);
  });

  it('returns -errno for a failed call, and ffi turns it into a SyscallError with the errno name', () => {
    expect(sys().close(-1)).toBe(-EBADF);
    expect(sys().fcntl(-1, F_GETFD, 0)).toBe(-EBADF);
    let thrown: unknown;
    try {
      ffi.socket(4242, ffi.SOCK_DGRAM, 0);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(SyscallError);
    expect(thrown).toMatchObject({ syscall: 'socket', errno: EAFNOSUPPORT, errnoName: 'EAFNOSUPPORT' });
    expect(ffi.errnoName(2)).toBe('ENOENT');
    expect(ffi.errnoName(100000)).toBe('E100000');
  });

  it('opens, binds and names a netlink socket, close-on-exec', () => {
    const fd = ffi.socket(ffi.AF_NETLINK, ffi.SOCK_RAW, 0);
    try {
      expect(readlinkSync(`/proc/self/fd/${fd}`)).toMatch(/^socket:/);
      expect(sys().fcntl(fd, F_GETFD, 0) & 1).toBe(1);
      ffi.setsockoptInt(fd, ffi.SOL_SOCKET, ffi.SO_RCVBUF, 1 << 16);
      const addr = Buffer.alloc(12);
      addr.writeUInt16LE(ffi.AF_NETLINK, 0);
      ffi.bind(fd, addr);
      const bound = ffi.getsockname(fd, 12);
      expect(bound.length).toBe(12);
      expect(bound.readUInt16LE(0)).toBe(ffi.AF_NETLINK);
      // The kernel assigns the port id (0 asked for it); for the first socket it is the pid.
      expect(bound.readUInt32LE(4)).not.toBe(0);
    } finally {
      ffi.close(fd);
    }
    expect(sys().close(fd)).toBe(-EBADF);
  });

  it('rejects arguments of the wrong kind with a TypeError instead of calling', () => {
    const s = sys() as unknown as Record<string, (...args: unknown[]) => unknown>;
    expect(() => s.setns!('3', 0)).toThrow(TypeError);
    expect(() => s.setns!(3)).toThrow(/missing argument/);
    expect(() => s.bind!(3, 'not a buffer')).toThrow(/expected a Buffer/);
    expect(() => s.umount2!('/tmp/a\0b', 0)).toThrow(/NUL byte/);
    expect(() => s.execvpe!('true', ['true', 7], [])).toThrow(/expected a string/);
  });

  it('reports a failed exec as -errno and stays in this process', () => {
    expect(sys().execvpe('/nonexistent/shoal-no-such-program', ['x'], [])).toBe(-2);
  });
});
