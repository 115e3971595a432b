import { randomBytes } from 'node:crypto';

/**
 * Unique names for kernel objects made by tests. Interface names are limited to 15 bytes, so
 * the result is `<prefix><6 hex><counter>`; keep `prefix` to 5 characters or fewer. Every test
 * file picks its own prefix, and the random part keeps parallel runs (and a crashed earlier
 * run's leftovers) apart.
 */
let counter = 0;
const runId = randomBytes(3).toString('hex');

export function uniqueName(prefix: string): string {
  if (prefix.length > 5) throw new Error(`test name prefix "${prefix}" is longer than 5 characters`);
  counter += 1;
  return `${prefix}${runId}${counter.toString(36)}`;
}

/** The run-wide random part, for globbing leftovers of this process in teardown. */
export function testRunId(): string {
  return runId;
}
