/**
 * koffi, loaded the short way. koffi's entry point finds the C library of the running Node by
 * parsing the ELF headers of the node binary, walks candidate paths and loads node:util for
 * deprecation shims: ~10 ms of every CNI plugin start-up (measured: 13 ms through the entry,
 * 3.5 ms for the addon alone). Shoal uses none of the shims, so it loads the glibc build of the
 * addon from koffi's platform package (an exact-version optional dependency of koffi, which npm
 * hoists next to it), and takes the entry point whenever that fails: musl, another platform, or
 * another layout. The package is required by name from here on purpose: resolving 'koffi'
 * itself goes through its package.json "exports", whose resolver costs ~4 ms to load.
 */
import type KoffiModule from 'koffi';
import { createRequire } from 'node:module';

export type Koffi = typeof KoffiModule;

let loaded: Koffi | undefined;

export function koffi(): Koffi {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  try {
    loaded = require(`@koromix/koffi-${process.platform}-${process.arch}/${process.platform}_${process.arch}/koffi.node`) as Koffi;
  } catch {
    loaded = require('koffi') as Koffi;
  }
  return loaded;
}
