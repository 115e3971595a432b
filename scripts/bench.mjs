#!/usr/bin/env node
// `npm run bench -- <name>...`: runs bench/<name>.mjs (all of them without a name). Each
// benchmark compares Shoal with the reference tool side by side in the same run.
import { readdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const available = readdirSync(path.join(root, 'bench')).filter((f) => f.endsWith('.mjs')).map((f) => f.slice(0, -4)).sort();
const wanted = process.argv.slice(2);
const names = wanted.length ? wanted : available;
let status = 0;
for (const name of names) {
  if (!available.includes(name)) {
    console.error(`bench: no benchmark "${name}"; available: ${available.join(', ') || 'none'}`);
    status = 2;
    continue;
  }
  console.log(`\n### bench ${name}`);
  const run = spawnSync(process.execPath, [path.join(root, 'bench', `${name}.mjs`)], { stdio: 'inherit', cwd: root });
  if (run.status !== 0) status = run.status ?? 1;
}
process.exit(status);
