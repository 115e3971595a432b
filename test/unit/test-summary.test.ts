import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

// scripts/test-summary.mjs turns vitest's JSON report into CI's closing line.
const script = path.resolve(__dirname, '../../scripts/test-summary.mjs');
let dir: string;

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'shoal-summary-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

type Status = 'passed' | 'failed' | 'skipped';
function summary(files: Array<{ status: 'passed' | 'failed'; tests: Status[] }>, staticFailed = 0) {
  const all = files.flatMap((f) => f.tests);
  const report = {
    numTotalTests: all.length,
    numPassedTests: all.filter((t) => t === 'passed').length,
    numFailedTests: all.filter((t) => t === 'failed').length,
    numPendingTests: all.filter((t) => t === 'skipped').length,
    testResults: files.map((f) => ({ status: f.status, assertionResults: f.tests.map((status) => ({ status })) })),
  };
  const file = path.join(dir, 'report.json');
  writeFileSync(file, JSON.stringify(report));
  const r = spawnSync(process.execPath, [script, file, String(staticFailed)], { encoding: 'utf8' });
  return { line: r.stdout.trim(), status: r.status };
}

describe('test-summary', () => {
  it('counts passed and failed tests, plus the two static checks', () => {
    expect(summary([{ status: 'passed', tests: ['passed', 'passed'] }])).toEqual({ line: '4 passed, 0 failed', status: 0 });
    expect(summary([{ status: 'failed', tests: ['passed', 'failed'] }])).toEqual({ line: '3 passed, 1 failed', status: 1 });
    expect(summary([{ status: 'passed', tests: ['passed'] }], 1)).toEqual({ line: '2 passed, 1 failed', status: 1 });
  });

  it('counts a file whose beforeAll threw (its tests reported as skipped) as a failure, not as skips', () => {
    expect(summary([{ status: 'passed', tests: ['passed'] }, { status: 'failed', tests: ['skipped', 'skipped'] }])).toEqual({ line: '3 passed, 1 failed, 2 skipped', status: 1 });
  });

  it('counts a file that did not load as a failure; a skipped test in a passing file stays a skip', () => {
    expect(summary([{ status: 'passed', tests: ['passed'] }, { status: 'failed', tests: [] }])).toEqual({ line: '3 passed, 1 failed', status: 1 });
    expect(summary([{ status: 'passed', tests: ['passed', 'skipped'] }])).toEqual({ line: '3 passed, 0 failed, 1 skipped', status: 0 });
  });
});
