#!/usr/bin/env node
// `npm run bench -- node`: the start-up floor of every plugin run, `node -e 0`, for the Node
// that runs Shoal (this one) against another Node (NODE_OTHER, default the system's
// /usr/bin/node when it is a different version), with a clean environment and with
// NODE_EXTRA_CA_CERTS set as podman passes it on (Node 20 loads the certificates eagerly).
// Rounds interleaved, order alternating; medians with the interquartile range.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';

const ROUNDS = Number(process.env.ROUNDS ?? 40);
const other = process.env.NODE_OTHER ?? '/usr/bin/node';
const nodes = [{ name: `node ${process.version}`, path: process.execPath }];
if (existsSync(other)) {
  const version = spawnSync(other, ['--version'], { encoding: 'utf8' }).stdout.trim();
  if (version && version !== process.version) nodes.push({ name: `node ${version}`, path: other });
}
// Any readable CA bundle will do: what is measured is that the variable is set.
const bundle = ['/etc/ssl/certs/ca-certificates.crt'].find(existsSync) ?? readdirSync('/etc/ssl/certs').map((f) => `/etc/ssl/certs/${f}`).find((f) => f.endsWith('.pem'));
const envs = [{ name: 'clean env', env: { PATH: process.env.PATH } }];
if (bundle) envs.push({ name: 'NODE_EXTRA_CA_CERTS', env: { PATH: process.env.PATH, NODE_EXTRA_CA_CERTS: bundle } });

const cases = nodes.flatMap((n) => envs.map((e) => ({ name: `${n.name}, ${e.name}`, node: n.path, env: e.env, times: [] })));
const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  const i = (s.length - 1) * q;
  return s[Math.floor(i)] + (s[Math.ceil(i)] - s[Math.floor(i)]) * (i - Math.floor(i));
};

for (const c of cases) spawnSync(c.node, ['-e', '0'], { env: c.env }); // warm the page cache
for (let r = 0; r < ROUNDS; r++) {
  for (const c of r % 2 ? [...cases].reverse() : cases) {
    const start = process.hrtime.bigint();
    const run = spawnSync(c.node, ['-e', '0'], { env: c.env });
    if (run.status !== 0) throw new Error(`${c.name}: exit ${run.status}`);
    c.times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
}
console.log(`node -e 0, ${ROUNDS} rounds interleaved: median [p25-p75]`);
for (const c of cases) console.log(`  ${c.name.padEnd(40)} ${quantile(c.times, 0.5).toFixed(1)} ms [${quantile(c.times, 0.25).toFixed(1)}-${quantile(c.times, 0.75).toFixed(1)}]`);
