/**
 * Loads Shoal's system-call addon (native/shoal-sys, built by `npm run build`). Its functions
 * return the call's result or -errno; src/kernel/ffi.ts turns that into SyscallErrors.
 * Resolved as the `shoal-sys` package (a file: dependency, so node_modules/shoal-sys links to
 * native/shoal-sys) from wherever this code runs: the sources, dist/ bundles, or copies of them.
 */
import { findPackageFile } from '../package-file.js';

const ADDON = 'build/shoal_sys.node';

export interface Sys {
  socket(domain: number, type: number, protocol: number): number;
  bind(fd: number, addr: Buffer): number;
  setsockopt(fd: number, level: number, name: number, value: Buffer): number;
  /** Fills addr; returns the address length. */
  getsockname(fd: number, addr: Buffer): number;
  /** Fills value with the option; returns its length. */
  getsockopt(fd: number, level: number, name: number, value: Buffer): number;
  close(fd: number): number;
  setns(fd: number, nstype: number): number;
  unshare(flags: number): number;
  mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): number;
  umount2(target: string, flags: number): number;
  exit(code: number): never;
  errnoName(errno: number): string | undefined;
  sethostname(name: string): number;
  fcntl(fd: number, cmd: number, arg: number): number;
  resetSignals(): number;
  execvpe(file: string, argv: string[], envp: string[]): number;
  /** libnftables in-process: [status, stdout, stderr], null when the library is absent. */
  nftRun?(commands: string, json: boolean, dryRun: boolean): [number, string, string] | null;
}

let loaded: Sys | undefined;

export function sysLoaded(): boolean {
  return loaded !== undefined;
}

export function sys(): Sys {
  if (loaded) return loaded;
  const file = findPackageFile(import.meta.url, 'shoal-sys', ADDON);
  if (file === undefined) throw new Error(`failed to find the shoal-sys addon (${ADDON} of native/shoal-sys): run "npm ci" and "npm run build"`);
  const module = { exports: {} as Sys };
  try {
    // process.dlopen is what require() does for a .node file, minus the module bookkeeping.
    process.dlopen(module, file);
  } catch (err) {
    throw new Error(`failed to load the shoal-sys addon "${file}": ${(err as Error).message}; run "npm run build"`, { cause: err });
  }
  loaded = module.exports;
  return loaded;
}
