#!/usr/bin/env node
// `npm run torture -- store`: the store under damage. shoal-ipam and shoal-bridge ADDs (the
// executables) against a corrupt database file (random bytes written over it), a truncated one,
// a full disk (a small tmpfs mounted here) and a read-only state dir (a read-only bind mount:
// root ignores mode bits). Asserted: a CNI error JSON (never 999 without a word, never a stack
// trace) whose message names the database file or its directory; no address printed twice; and
// a daemon started on a corrupt store exits once with a message naming the file (no crash loop)
// or keeps running.
// Knobs: STORE_ROUNDS (rounds per damage, default 20), STORE_SKIP=wal (leave out the truncated
// WAL), TORTURE_SEED.
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { DatabaseSync } from 'node:sqlite';
import { Figures, STACK_FRAME, knob, privatePlugins, root, runTag, seeded, sleep } from './lib/common.mjs';
import { execPlugin } from './lib/cni-exec.mjs';
import { startDaemon } from './lib/daemon.mjs';

const ROUNDS = knob('STORE_ROUNDS', 20);
const random = seeded();
const figures = new Figures('store');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'shoal-torture-store-'));
const bin = path.join(root, 'node_modules/.cache', `shoal-torture-store-bin-${process.pid}`);
const mounts = [];

const ipamConfig = (stateDir) => ({ cniVersion: '1.1.0', name: `tq${runTag}`, type: 'shoal-ipam', ipam: { type: 'shoal-ipam', subnet: '10.185.40.0/24', stateDir } });
const env = (command, id, stateDir) => ({ PATH: process.env.PATH, SHOAL_RUN_DIR: path.join(tmp, 'run'), SHOAL_STATE_DIR: stateDir, CNI_COMMAND: command, CNI_CONTAINERID: id, CNI_NETNS: '/nonexistent', CNI_IFNAME: 'eth0', CNI_PATH: bin });

/** A fresh state dir holding a healthy store with a few allocations; returns the printed addresses. */
async function healthy(dir, { checkpoint = true } = {}) {
  mkdirSync(dir, { recursive: true });
  const printed = [];
  for (let i = 0; i < 3; i++) {
    const r = await execPlugin(path.join(bin, 'shoal-ipam'), env('ADD', `ok${i}`, dir), ipamConfig(dir));
    if (r.code !== 0) throw new Error(`healthy ADD failed: ${r.stdout}`);
    printed.push(r.json.ips[0].address);
  }
  // The plugins leave through _exit, so their commits sit in the WAL; damage to the main file
  // means something only once they are checkpointed into it.
  if (checkpoint) {
    const db = new DatabaseSync(path.join(dir, 'shoal.db'));
    db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
    db.close();
  }
  return printed;
}

/** Judges a failed (or successful) ADD on a damaged store. */
function judge(what, r, names, printed) {
  if (r.code === 0) {
    const a = r.json?.ips?.[0]?.address;
    if (printed.includes(a)) return `${what}: ${a} handed out twice`;
    printed.push(a);
    return undefined;
  }
  if (r.signal) return `${what}: killed by ${r.signal}`;
  if (!r.json || typeof r.json.code !== 'number') return `${what}: no CNI error JSON: ${r.stdout.slice(0, 200)} ${r.stderr.slice(-300)}`;
  if (STACK_FRAME.test(r.stdout)) return `${what}: stack trace: ${r.stdout.slice(0, 300)}`;
  const text = `${r.json.msg} ${r.json.details ?? ''}`;
  if (!names.some((n) => text.includes(n))) return `${what}: code ${r.json.code} does not name ${names[0]}: ${text.slice(0, 300)}`;
  return undefined;
}

async function damage(name, apply, rounds = ROUNDS, options = {}) {
  let broke = 0;
  const codes = new Map();
  for (let i = 0; i < rounds; i++) {
    const slug = name.replace(/[^a-z0-9]+/g, '-');
    const dir = path.join(tmp, `${slug}-${i}`);
    const printed = await healthy(dir, options);
    const file = path.join(dir, 'shoal.db');
    const names = apply(dir, file);
    for (const id of ['a', 'b']) {
      const r = await execPlugin(path.join(bin, 'shoal-ipam'), env('ADD', `d${i}${id}`, dir), ipamConfig(dir));
      codes.set(r.json?.code ?? r.code, (codes.get(r.json?.code ?? r.code) ?? 0) + 1);
      const problem = judge(`${name} round ${i}`, r, names, printed);
      if (problem) {
        broke += 1;
        figures.fail(problem);
      }
    }
    undo();
  }
  const answers = `answers: ${[...codes].map(([c, n]) => `${c === 0 ? 'ok' : `code ${c}`} x${n}`).join(', ')}`;
  figures.row(`ADD on ${name}`, rounds * 2, broke, options.note ? `${answers}; ${options.note()}` : answers);
}

function undo() {
  for (const m of mounts.splice(0).reverse()) spawnSync('umount', ['-l', m]);
}

async function main() {
  console.log(`store: seed ${random.seed}, ${ROUNDS} rounds per damage`);
  privatePlugins(['shoal-ipam'], bin);
  try {
    await damage('a corrupt database (random bytes over pages)', (dir, file) => {
      const size = statSync(file).size;
      const fd = openSync(file, 'r+');
      // Over the header or anywhere in the file.
      for (let k = 0; k < 1 + random.int(4); k++) writeSync(fd, random.bytes(64 + random.int(4096)), 0, undefined, random.next() < 0.3 ? 0 : random.int(size));
      closeSync(fd);
      return [file];
    });
    await damage('a truncated database file', (dir, file) => {
      truncateSync(file, random.int(statSync(file).size));
      return [file];
    });
    // The plugins leave through _exit without closing the store. A WAL cut short loses the
    // commits in it without a trace (SQLite stops at the first frame that does not check out,
    // and a cut at a frame boundary looks like a WAL that held fewer commits), so the store
    // checkpoints after every write (src/store/sqlite.ts checkpointAfterCommit) and no commit
    // lives only in the WAL at rest. How many bytes the WAL held when it was cut is reported:
    // 0 means the damage had nothing left to destroy. STORE_SKIP=wal leaves it out.
    if (!(process.env.STORE_SKIP ?? '').split(',').includes('wal')) {
      const held = [];
      await damage('a truncated WAL', (dir, file) => {
        const size = statSync(`${file}-wal`, { throwIfNoEntry: false })?.size ?? 0;
        held.push(size);
        if (size > 0) truncateSync(`${file}-wal`, random.int(size));
        return [file];
      }, ROUNDS, { checkpoint: false, note: () => `WAL at rest before the cut: ${held.filter((n) => n > 0).length} of ${held.length} non-empty, largest ${Math.max(0, ...held)} bytes` });
    }
    await damage('a database that is a directory', (dir, file) => {
      rmSync(file, { force: true });
      for (const side of ['-wal', '-shm']) rmSync(`${file}${side}`, { force: true });
      mkdirSync(file);
      return [file];
    }, Math.min(ROUNDS, 3));
    await damage('a read-only state dir', (dir) => {
      spawnSync('mount', ['--bind', dir, dir]);
      spawnSync('mount', ['-o', 'remount,bind,ro', dir]);
      mounts.push(dir);
      return [dir];
    }, Math.min(ROUNDS, 5));
    await damage('a full disk (tmpfs)', (dir) => {
      // The store moves onto a small tmpfs, which is then filled up.
      const disk = path.join(tmp, `disk-${mounts.length}-${random.int(1e9)}`);
      mkdirSync(disk);
      spawnSync('cp', ['-a', `${dir}/.`, `${disk}-copy`]);
      spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir]);
      mounts.push(dir);
      spawnSync('cp', ['-a', `${disk}-copy/.`, dir]);
      try {
        writeFileSync(path.join(dir, 'filler'), Buffer.alloc(2 << 20));
      } catch {
        // ENOSPC: the point.
      }
      return [dir, 'no space', 'full'];
    }, Math.min(ROUNDS, 5));

    // A daemon on a corrupt store: it exits once naming the file, or runs; it does not loop.
    const dir = path.join(tmp, 'daemon');
    await healthy(dir);
    const fd = openSync(path.join(dir, 'shoal.db'), 'r+');
    writeSync(fd, random.bytes(4096), 0, undefined, 0);
    closeSync(fd);
    let outcome;
    try {
      const d = await startDaemon({ run: path.join(tmp, 'drun'), state: dir, args: ['--dns-port', '18582'], waitMs: 8000 });
      await sleep(1000);
      outcome = d.alive() ? 'runs' : 'exited after starting';
      await d.stop();
    } catch (err) {
      outcome = String(err.message);
    }
    const named = outcome === 'runs' || outcome.includes(path.join(dir, 'shoal.db'));
    figures.row('daemon started on a corrupt store', 1, named ? 0 : 1, named ? (outcome === 'runs' ? 'keeps running' : 'exits once, naming the file') : outcome.slice(-300));
  } finally {
    undo();
    rmSync(bin, { recursive: true, force: true });
    rmSync(tmp, { recursive: true, force: true });
    figures.print();
  }
  process.exit(figures.broke ? 1 : 0);
}

await main();
