/**
 * A DNS worker thread: a whole ShoalDns (snapshot, handler chain, forwarder, cache) whose
 * listeners bind with SO_REUSEPORT next to the other workers' (worker-pool.ts). It builds its
 * own snapshot from the record set the main thread shares and applies the deltas that follow
 * to it, counts into plain numbers that the main thread collects on every scrape, and sends
 * its log events to the main thread's logger.
 * Built as its own bundle (dist/bin/dns-worker.js) by scripts/build.mjs.
 */
import { deserialize } from 'node:v8';
import { parentPort, workerData } from 'node:worker_threads';
import type { Logger } from 'pino';
import { ShoalDns } from './index.js';
import { CountsAccumulator } from './metrics-sink.js';
import type { DnsRecordsInput } from './types.js';
import type { FromWorker, ToWorker, WorkerData } from './worker-protocol.js';

const port = parentPort;
if (!port) throw new Error('dns worker: not started as a worker thread');
const data = workerData as WorkerData;
const post = (m: FromWorker): void => port.postMessage(m);

/** The subset of pino the DNS modules call, forwarded to the main thread. */
function relayLogger(): Logger {
  const at =
    (level: 'debug' | 'info' | 'warn' | 'error') =>
    (fields: Record<string, unknown>, msg = ''): void => {
      const f: Record<string, unknown> = { ...fields, worker: data.index };
      if (f.err instanceof Error) f.err = { message: f.err.message, code: (f.err as { code?: string }).code, stack: f.err.stack };
      post({ type: 'log', level, fields: f, msg });
    };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } as unknown as Logger;
}

const counts = new CountsAccumulator();
const dns = new ShoalDns({ ...data.options, logger: relayLogger(), metricsSink: counts, reusePort: true });
const gauges = () => ({ cacheEntries: dns.cache.size, forwardsInFlight: dns.forwarder.inFlight });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function handle(m: ToWorker): Promise<void> {
  switch (m.type) {
    case 'records': {
      const t0 = performance.now();
      const input = deserialize(new Uint8Array(m.records, 0, m.length)) as DnsRecordsInput;
      const snap = dns.loadRecords(input);
      const recordCounts = [...snap.networks.values()].map((n): [string, number] => [n.name, n.recordCount]);
      post({ type: 'applied', version: m.version, recordCounts, ms: performance.now() - t0 });
      return;
    }
    case 'delta': {
      const t0 = performance.now();
      const snap = dns.applyDelta(m.delta);
      const recordCounts = [...snap.networks.values()].map((n): [string, number] => [n.name, n.recordCount]);
      post({ type: 'applied', version: m.version, recordCounts, ms: performance.now() - t0 });
      return;
    }
    case 'listen': {
      const l = await dns.addListener(m.address, m.port);
      post({ type: 'reply', id: m.id, ok: true, port: l.port });
      return;
    }
    case 'unlisten':
      await dns.removeListener(m.address, m.port);
      post({ type: 'reply', id: m.id, ok: true });
      return;
    case 'counts':
      post({ type: 'reply', id: m.id, ok: true, counts: counts.take(gauges()) });
      return;
    case 'close': {
      await dns.close();
      const deadline = Date.now() + m.graceMs;
      while (dns.forwarder.inFlight > 0 && Date.now() < deadline) await sleep(10);
      post({ type: 'reply', id: m.id, ok: true, counts: counts.take(gauges()) });
      return;
    }
    case 'crash':
      setImmediate(() => {
        throw new Error('dns worker: crash requested');
      });
  }
}

function errnoOf(err: unknown): string | undefined {
  for (let e: unknown = err; e && typeof e === 'object'; e = (e as { cause?: unknown }).cause) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return code;
  }
  return undefined;
}

port.on('message', (m: ToWorker) => {
  handle(m).catch((err: unknown) => {
    const e = err as { code?: string; message?: string };
    if ('id' in m) post({ type: 'reply', id: m.id, ok: false, code: e.code, errno: errnoOf(err), message: e.message ?? String(err) });
    // Records have no reply: a set or delta that failed shows in the log (and whenApplied waits).
    else post({ type: 'log', level: 'error', fields: { event: 'dns_worker_error', worker: data.index, message: m.type, err: { message: e.message ?? String(err) } }, msg: `DNS worker ${data.index} failed to apply "${m.type}": ${e.message ?? String(err)}` });
  });
});
