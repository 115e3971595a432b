/**
 * The CNI worker pool with stand-in workers (small scripts instead of the plugin bundle): the
 * queue, the timeout that answers code 11 and replaces the worker, a worker that dies.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { CniWorkerPool, tryAgain } from '../../src/daemon/cni-pool.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'shoal-cni-pool-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const logger = pino({ level: 'silent' });

/** A worker that answers after env.DELAY ms, exits on env.DIE, and hangs on env.HANG. */
const WORKER = `
const { parentPort, threadId } = require('node:worker_threads');
parentPort.on('message', (m) => {
  if (m.env.DIE) process.exit(3);
  if (m.env.HANG) return;
  setTimeout(() => parentPort.postMessage({ id: m.id, exitCode: 0, stdout: String(threadId), stderr: '' }), Number(m.env.DELAY ?? 0));
});
`;
const file = path.join(dir, 'worker.cjs');
writeFileSync(file, WORKER);
const request = (env: Record<string, string>) => ({ type: 'shoal-ipam', env: { CNI_COMMAND: 'ADD', ...env }, stdin: '{"cniVersion":"0.4.0"}' });

describe('CniWorkerPool', () => {
  it('runs requests on its workers, queueing the rest, and one busy worker holds up no others', async () => {
    const pool = new CniWorkerPool({ file, size: 2, timeoutMs: 60_000, logger });
    const hung = pool.run(request({ HANG: '1' }));
    // Served only if the other worker takes them while the first one hangs.
    const answers = await Promise.all(Array.from({ length: 4 }, () => pool.run(request({ DELAY: '5' }))));
    expect(answers.map((a) => a.exitCode)).toEqual([0, 0, 0, 0]);
    expect(new Set(answers.map((a) => a.stdout)).size).toBe(1);
    expect(pool.pending).toBe(1);
    await pool.close();
    expect(JSON.parse((await hung).stdout)).toMatchObject({ code: 11 });
  });

  it('answers a request past its timeout with code 11 in the config\'s version, and keeps serving', async () => {
    const pool = new CniWorkerPool({ file, size: 1, timeoutMs: 200, logger });
    const hung = pool.run(request({ HANG: '1' }));
    const next = pool.run(request({}));
    const res = await hung;
    expect(res.exitCode).toBe(1);
    expect(JSON.parse(res.stdout)).toMatchObject({ cniVersion: '0.4.0', code: 11, msg: expect.stringContaining('200 ms') });
    expect((await next).exitCode).toBe(0);
    await pool.close();
  });

  it('answers the request of a worker that died with code 11 and replaces the worker', async () => {
    const pool = new CniWorkerPool({ file, size: 1, timeoutMs: 5000, logger });
    const died = await pool.run(request({ DIE: '1' }));
    expect(JSON.parse(died.stdout)).toMatchObject({ code: 11 });
    expect((await pool.run(request({}))).exitCode).toBe(0);
    await pool.close();
  });

  it('stops instead of loading another build\'s code into a replacement worker', async () => {
    let stale = 0;
    const pool = new CniWorkerPool({ file, size: 1, timeoutMs: 5000, logger, sameCode: () => false, onStale: () => stale++ });
    expect(JSON.parse((await pool.run(request({ DIE: '1' }))).stdout)).toMatchObject({ code: 11 });
    await expect.poll(() => stale, { timeout: 5000 }).toBe(1);
    expect(JSON.parse((await pool.run(request({}))).stdout)).toMatchObject({ code: 11, msg: expect.stringContaining('stopping') });
  });

  it('answers queued requests with code 11 when closed', async () => {
    const pool = new CniWorkerPool({ file, size: 1, timeoutMs: 5000, logger });
    const a = pool.run(request({ HANG: '1' }));
    const b = pool.run(request({}));
    await pool.close();
    expect(JSON.parse((await a).stdout)).toMatchObject({ code: 11 });
    expect(JSON.parse((await b).stdout)).toMatchObject({ code: 11 });
    expect(JSON.parse(tryAgain(request({}), 'x').stdout)).toMatchObject({ cniVersion: '0.4.0' });
  });
});
