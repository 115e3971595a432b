#!/usr/bin/env node
// `npm run bench -- sqlite`: better-sqlite3 against Node's built-in node:sqlite for what a CNI
// plugin does with the store on every ADD: load the driver, open the WAL database file, run one
// allocation-shaped transaction (BEGIN IMMEDIATE, read a cursor, insert a row, update the
// cursor, COMMIT), exit. Each round starts one fresh process per driver, in alternating order,
// with the same minimal environment; a bare `node -e 0` runs in the same rounds as the floor.
// Reports medians and interquartile ranges of the wall time per process.
// Shoal itself no longer depends on better-sqlite3: this bench installs the version Shoal used
// (12.6.2) into node_modules/.cache on first run, compiled against this Node.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ROUNDS = Number(process.env.ROUNDS ?? 40);
const tmp = mkdtempSync(path.join(os.tmpdir(), 'shoal-bench-sqlite-'));
const BETTER_SQLITE3 = '12.6.2';
const cacheDir = path.join(root, 'node_modules/.cache/shoal-bench-sqlite');
const betterSqlite3 = path.join(cacheDir, 'node_modules/better-sqlite3');
if (!existsSync(path.join(betterSqlite3, 'build/Release/better_sqlite3.node'))) {
  console.log(`installing better-sqlite3@${BETTER_SQLITE3} for the comparison in ${cacheDir}`);
  mkdirSync(cacheDir, { recursive: true });
  const npm = spawnSync('npm', ['install', '--prefix', cacheDir, '--no-save', '--no-audit', '--no-fund', '--loglevel=error', `better-sqlite3@${BETTER_SQLITE3}`], { stdio: 'inherit' });
  if (npm.status !== 0) process.exit(1);
}

const PRAGMAS = ['journal_mode = WAL', 'synchronous = NORMAL', 'busy_timeout = 5000', 'wal_autocheckpoint = 64'];
const SCHEMA = 'CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)';

// Both scripts run the same statements; only how the driver is loaded and opened differs.
const work = `
for (const p of ${JSON.stringify(PRAGMAS)}) db.exec('PRAGMA ' + p);
db.exec(${JSON.stringify(SCHEMA)});
const get = db.prepare('SELECT v FROM kv WHERE k = ?');
const put = db.prepare('INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)');
db.exec('BEGIN IMMEDIATE');
const cur = Number(get.get('cursor')?.v ?? 0) + 1;
put.run('ip/' + cur + '/' + process.pid, 'ctr');
put.run('cursor', String(cur));
db.exec('COMMIT');
`;
const scripts = {
  'better-sqlite3': `const Database = require(${JSON.stringify(betterSqlite3)});\nconst db = new Database(process.argv[2]);\n${work}`,
  'node:sqlite': `const { DatabaseSync } = require('node:sqlite');\nconst db = new DatabaseSync(process.argv[2]);\n${work}`,
  'node -e 0': '',
};

const env = { PATH: process.env.PATH };
const files = {};
for (const [name, text] of Object.entries(scripts)) {
  files[name] = path.join(tmp, `${name.replace(/[^a-z0-9]/gi, '_')}.cjs`);
  writeFileSync(files[name], text);
}

function once(name) {
  const db = path.join(tmp, `${name.replace(/[^a-z0-9]/gi, '_')}.db`);
  const start = process.hrtime.bigint();
  const run = spawnSync(process.execPath, [files[name], db], { env, encoding: 'utf8' });
  const elapsed = Number(process.hrtime.bigint() - start) / 1e6;
  if (run.status !== 0 || run.stderr) throw new Error(`${name}: exit ${run.status}: ${run.stderr}`);
  return elapsed;
}

const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  const i = (s.length - 1) * q;
  return s[Math.floor(i)] + (s[Math.ceil(i)] - s[Math.floor(i)]) * (i - Math.floor(i));
};

try {
  const names = Object.keys(scripts);
  for (const n of names) once(n); // warm the page cache and create the files
  const times = Object.fromEntries(names.map((n) => [n, []]));
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 ? [...names].reverse() : names;
    for (const n of order) times[n].push(once(n));
  }
  console.log(`node ${process.version}, ${ROUNDS} rounds, interleaved; wall time per process (median [p25-p75])`);
  const floor = quantile(times['node -e 0'], 0.5);
  for (const n of names) {
    const t = times[n];
    const med = quantile(t, 0.5);
    const extra = n === 'node -e 0' ? '' : `  (+${(med - floor).toFixed(1)} ms over node -e 0)`;
    console.log(`  ${n.padEnd(15)} ${med.toFixed(1)} ms [${quantile(t, 0.25).toFixed(1)}-${quantile(t, 0.75).toFixed(1)}]${extra}`);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
