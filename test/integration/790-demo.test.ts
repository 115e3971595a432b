/**
 * The README's main job, run as CI runs it (issue 7: "CI runs the demo"). It must finish every
 * step: a name resolved by the daemon, the published port answering on the host, metrics moved,
 * and everything removed again.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe('scripts/demo.sh (the README main job)', () => {
  it('runs every step and cleans up', () => {
    const run = spawnSync('bash', ['scripts/demo.sh'], { cwd: REPO, encoding: 'utf8', timeout: 240_000 });
    const out = `${run.stdout}\n${run.stderr}`;
    expect(run.status, out).toBe(0);
    expect(out).toMatch(/Name:\s+web\./);
    expect(out.match(/hello from the web sandbox/g)?.length, out).toBe(2);
    expect(out).toMatch(/shoal_dns_requests_total\{network="demo\d+",qtype="A",rcode="NOERROR"\}\s+-> [1-9]/);
    expect(out).toContain('done: every step worked');
  }, 300_000);
});
