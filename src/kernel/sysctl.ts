/**
 * sysctl read/write through /proc/sys, in the host or inside a network namespace.
 *
 * /proc/sys/net follows the calling *thread*'s network namespace at open time (DESIGN §6), so
 * a synchronous read or write inside withNetns sees the namespace's values; that is the only
 * reason this module enters a namespace, and it does only one synchronous open/read/write there.
 *
 * Keys: a dotted string ("net.ipv4.ip_forward") where every dot is a separator; a
 * slash-separated string ("net/ipv6/conf/eth0.100/disable_ipv6") where dots are literal, as
 * sysctl(8) accepts; or an array of segments. Interface names may contain dots, so per-interface
 * keys are best built with interfaceSysctlKey().
 */
import { closeSync, constants, openSync, readFileSync, writeSync } from 'node:fs';
import { ShoalError } from '../errors.js';
import { SysctlError } from './errors.js';
import { withNetns } from './netns.js';

export type SysctlKey = string | readonly string[];

export interface SysctlOptions {
  /** Path (or /run/netns name) of the namespace; the caller's own namespace when absent. */
  netns?: string;
}

const PROC_SYS = '/proc/sys';

/** Split a key into path segments (see the module comment for the three accepted forms). */
export function sysctlSegments(key: SysctlKey): string[] {
  const segments = typeof key === 'string' ? key.split(key.includes('/') ? '/' : '.') : [...key];
  if (segments.length === 0 || segments.some((s) => s === '' || s === '.' || s === '..' || s.includes('/') || s.includes('\0'))) {
    throw new SysctlError(`invalid sysctl key "${displayKey(key)}"`);
  }
  return segments;
}

function displayKey(key: SysctlKey): string {
  return typeof key === 'string' ? key : key.join('.');
}

/** /proc/sys/<segments...> */
export function sysctlPath(key: SysctlKey): string {
  return `${PROC_SYS}/${sysctlSegments(key).join('/')}`;
}

/** ["net", "ipv6", "conf", ifname, leaf]: safe for interface names with dots (eth0.100). */
export function interfaceSysctlKey(family: 'ipv4' | 'ipv6', ifname: string, leaf: string): string[] {
  return ['net', family, 'conf', ifname, leaf];
}

function describeErrno(err: unknown): string {
  switch ((err as NodeJS.ErrnoException).code) {
    case 'ENOENT':
      return 'no such sysctl';
    case 'EINVAL':
      return 'invalid value';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    default:
      return (err as Error).message;
  }
}

function inNetns<T>(opts: SysctlOptions | undefined, fn: () => T): T {
  return opts?.netns ? withNetns(opts.netns, fn) : fn();
}

function where(opts: SysctlOptions | undefined): string {
  return opts?.netns ? ` in "${opts.netns}"` : '';
}

/** The value with its trailing newline removed (multi-value sysctls keep their tabs). */
export function readSysctl(key: SysctlKey, opts?: SysctlOptions): string {
  const p = sysctlPath(key);
  try {
    return inNetns(opts, () => readFileSync(p, 'utf8')).replace(/\n$/, '');
  } catch (err) {
    // Our own typed errors (a missing netns, a bad key) already say what went wrong.
    if (err instanceof ShoalError) throw err;
    throw new SysctlError(`failed to read sysctl "${displayKey(key)}"${where(opts)}: ${describeErrno(err)}`, { cause: err });
  }
}

/** readSysctl parsed as an integer; SysctlError when it is not one. */
export function readSysctlInt(key: SysctlKey, opts?: SysctlOptions): number {
  const text = readSysctl(key, opts).trim();
  if (!/^-?\d+$/.test(text)) throw new SysctlError(`failed to read sysctl "${displayKey(key)}"${where(opts)}: "${text}" is not an integer`);
  return Number(text);
}

/**
 * Makes `key` hold `value`, writing only when it holds something else: reading is cheaper than
 * writing and keeps the common case (every ADD, every sync) free of side effects. A key that
 * cannot be read is written anyway, so its error is the write's, which names the value too.
 */
export function ensureSysctl(key: SysctlKey, value: string | number, opts?: SysctlOptions): void {
  try {
    if (readSysctl(key, opts).trim() === String(value)) return;
  } catch (err) {
    if (!(err instanceof SysctlError)) throw err;
  }
  writeSysctl(key, value, opts);
}

/**
 * Write a value. Opened O_WRONLY without O_CREAT/O_TRUNC: a missing key must fail, not be
 * created. The kernel validates on write(2), so EINVAL there means the value was refused.
 */
export function writeSysctl(key: SysctlKey, value: string | number, opts?: SysctlOptions): void {
  const p = sysctlPath(key);
  const text = String(value);
  if (/[\r\n\0]/.test(text)) throw new SysctlError(`failed to write sysctl "${displayKey(key)}": value may not contain line breaks`);
  try {
    inNetns(opts, () => {
      const fd = openSync(p, constants.O_WRONLY);
      try {
        writeSync(fd, text);
      } finally {
        closeSync(fd);
      }
    });
  } catch (err) {
    // Our own typed errors (a missing netns, a bad key) already say what went wrong.
    if (err instanceof ShoalError) throw err;
    throw new SysctlError(`failed to write sysctl "${displayKey(key)}" = "${text}"${where(opts)}: ${describeErrno(err)}`, { cause: err });
  }
}
