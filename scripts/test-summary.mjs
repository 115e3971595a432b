#!/usr/bin/env node
// Reads vitest's JSON report and prints the closing line CI reads: `N passed, N failed`.
// Static checks (typecheck, lint) that failed are counted as failed tests so a red typecheck
// can never hide behind a green test run. A missing or unreadable report is a failure.
import { readFileSync } from 'node:fs';

const [reportPath, staticFailedArg = '0'] = process.argv.slice(2);
const staticFailed = Number(staticFailedArg) || 0;
const staticPassed = 2 - staticFailed;

let report;
try {
  report = JSON.parse(readFileSync(reportPath, 'utf8'));
} catch (err) {
  console.error(`test-summary: cannot read vitest report "${reportPath}": ${err.message}`);
  console.log(`${staticPassed} passed, ${staticFailed + 1} failed`);
  process.exit(1);
}

const passed = report.numPassedTests + staticPassed;
// Files that failed without a failing test count once each: a file that did not load, or one
// whose beforeAll/afterAll threw (vitest reports its tests as skipped: they never ran or passed
// before the teardown failed). A missing tool makes the podman suites fail this way, on purpose.
const brokenSuites = (report.testResults ?? []).filter((s) => s.status === 'failed' && !(s.assertionResults ?? []).some((a) => a.status === 'failed')).length;
const failed = report.numFailedTests + brokenSuites + staticFailed;
const skipped = report.numPendingTests + (report.numTodoTests ?? 0);
if (report.numTotalTests === 0) {
  console.error('test-summary: vitest ran no test');
  console.log(`${passed} passed, ${failed + 1} failed`);
  process.exit(1);
}
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 ? 1 : 0);
