#!/usr/bin/env node
// `npm run torture -- <name>...`: runs torture/<name>.mjs (all of them without a name). Each
// campaign is bounded in count and time (env knobs, listed at the top of its file), prints a
// figures table (what was tried, how many, what broke) and exits non-zero when anything broke.
import { readdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const available = readdirSync(path.join(root, 'torture')).filter((f) => f.endsWith('.mjs')).map((f) => f.slice(0, -4)).sort();
const wanted = process.argv.slice(2);
const names = wanted.length ? wanted : available;
let status = 0;
for (const name of names) {
  if (!available.includes(name)) {
    console.error(`torture: no campaign "${name}"; available: ${available.join(', ') || 'none'}`);
    status = 2;
    continue;
  }
  console.log(`\n### torture ${name}`);
  const run = spawnSync(process.execPath, [path.join(root, 'torture', `${name}.mjs`)], { stdio: 'inherit', cwd: root });
  if (run.status !== 0) status = run.status ?? 1;
}
process.exit(status);
