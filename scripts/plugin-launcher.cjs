#!/usr/bin/env node
// Launcher of a Shoal CNI plugin, written by scripts/build.mjs as dist/cni/shoal-node/<type> with
// the two constants below filled in; the plugin itself is the bundle dist/cni/lib/<type>.js.
// dist/cni/<type> (native/cni-forward) hands requests to the daemon and execs this file when no
// daemon answers.
//
// Why a launcher: a runtime starts a fresh Node for every ADD and DEL, and compiling the bundle's
// functions is a large part of what such a process does after Node's own start-up (~13 ms of an
// ADD here). V8 can serialise the code it compiled; fed back, the next process skips that work.
// So the bundle is compiled through vm.Script with the V8 code cache that an earlier run of the
// same verb of the same build left beside it, and when there was none (or V8 refused it: another
// Node, other V8 flags) this run leaves one after it succeeded. The cache is named after the build
// (a hash of the bundle: V8 itself only checks the source length) and written by rename, so a
// concurrent run reads a whole file or none. A directory that cannot be written only costs speed.
// SHOAL_CODE_CACHE=off skips it; SHOAL_CODE_CACHE=debug reports on stderr what happened.
// A bundle must not import() anything outside itself: Node 20 loses a script's dynamic-import
// hook when the script is restored from a code cache (test 002 checks the bundles).
'use strict';
// One libuv thread, not four: a plugin makes one async call (the pool warm-up in the skel), and
// every thread costs creating and tearing down (~2 ms of an ADD, measured).
if (process.env.UV_THREADPOOL_SIZE === undefined) process.env.UV_THREADPOOL_SIZE = '1';
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');

const BUNDLE = '__BUNDLE__';
const BUILD = '__BUILD__';

const lib = path.join(__dirname, '..', 'lib');
const file = path.join(lib, BUNDLE);
const mode = process.env.SHOAL_CODE_CACHE;
const verb = /^[A-Z]{1,16}$/.test(process.env.CNI_COMMAND ?? '') ? process.env.CNI_COMMAND : 'NONE';
const cacheFile = path.join(lib, `${BUNDLE}.${verb}.${BUILD}.v8cache`);

let cachedData;
if (mode !== 'off') {
  try {
    cachedData = fs.readFileSync(cacheFile);
  } catch {
    cachedData = undefined;
  }
}
// latin1, not utf8: esbuild writes ASCII only (charset "ascii", its default, escapes the rest),
// and latin1 skips UTF-8 decoding of the whole bundle. The build wrote the bundle as CommonJS's
// wrapper function already: concatenating it here would make V8 copy the whole text once more
// (every fresh page costs ~12 us on this VM; 1.6-2.9 ms per ADD, measured).
const source = fs.readFileSync(file, 'latin1');
const script = new vm.Script(source, {
  filename: file,
  cachedData,
});
const state = cachedData === undefined ? 'absent' : script.cachedDataRejected ? 'rejected' : 'accepted';
if (mode === 'debug') process.stderr.write(`shoal code cache: ${state} ${cacheFile}\n`);

if (mode !== 'off' && state !== 'accepted') {
  process.once('exit', (code) => {
    if (code !== 0) return;
    const tmp = `${cacheFile}.${process.pid}.tmp`;
    try {
      fs.writeFileSync(tmp, script.createCachedData(), { mode: 0o644 });
      fs.renameSync(tmp, cacheFile);
      if (mode === 'debug') process.stderr.write(`shoal code cache: wrote ${cacheFile}\n`);
    } catch {
      try {
        fs.rmSync(tmp, { force: true });
      } catch {
        // Nothing written, nothing to remove.
      }
    }
  });
}

script.runInThisContext().call(module.exports, module.exports, require, module, file, path.dirname(file));
