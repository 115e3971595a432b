/**
 * The torture campaigns (torture/*.mjs, `npm run torture -- <name>`) with small counts, as CI
 * runs them: every campaign must report zero breakage. The full counts are the campaigns'
 * defaults; this file keeps the whole run under about two minutes.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function campaign(name: string, knobs: Record<string, string>): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(REPO, 'torture', `${name}.mjs`)], {
      cwd: REPO,
      env: { ...process.env, ...knobs },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => resolve({ code, out }));
  });
}

async function expectNoBreakage(name: string, knobs: Record<string, string>): Promise<void> {
  const { code, out } = await campaign(name, knobs);
  expect(out, out).toContain(`TORTURE ${name} broke=0`);
  expect(code, out).toBe(0);
}

describe('torture campaigns, short', () => {
  it('configs: mutated CNI invocations per plugin, in-process and through the executables', () => expectNoBreakage('configs', { CONFIGS_COUNT: '150', CONFIGS_EXEC: '14' }), 120_000);
  it('crash: kill -9 of shoal-bridge, shoal-macvlan, a bridge, portmap, dns chain and shoal-vxlan on a two-node overlay during ADD and DEL, then DEL and GC', () => expectNoBreakage('crash', { CRASH_COUNT: '30' }), 120_000);
  it('soak: attach/detach cycles through the daemon, counts flat', () => expectNoBreakage('soak', { SOAK_CYCLES: '100', SOAK_SAMPLES: '6' }), 120_000);
  it('store: corrupt, truncated (file and WAL), read-only and full stores answer errors naming the file, no duplicate', () => expectNoBreakage('store', { STORE_ROUNDS: '2' }), 120_000);
  // DK_MAX_MS=5000: the 1 s goal is the full campaign's; here Node's own start on a loaded
  // 2-core runner is most of it. The records must all be back either way.
  it('daemon-kill: kill -9 of the daemon under DNS load, restarted, every name answers again', () => expectNoBreakage('daemon-kill', { DK_ROUNDS: '2', DK_CONTAINERS: '2', DK_MAX_MS: '5000' }), 120_000);
  it('dns: random and mutated packets and slow TCP clients from inside a network; the daemon lives and a neighbour is answered', () => expectNoBreakage('dns', { DNS_PACKETS: '20000', DNS_WARMUP: '20000', DNS_SLOW: '40', DNS_P99_MS: '1000', DNS_RSS_MIB: '256' }), 120_000);
  it('api: malformed HTTP on the daemon sockets', () => expectNoBreakage('api', { API_COUNT: '200', API_SLOW: '50' }), 120_000);
});
