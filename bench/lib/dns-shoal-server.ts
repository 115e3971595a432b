// The Shoal side of bench/dns.mjs, run as its own process (bundled by the bench with esbuild):
// ShoalDns as the daemon runs it (worker threads, batched UDP), records from a JSON file, one
// listener. Prints "MEM <rss bytes>" before and after the records are applied, then "READY".
//   node server.mjs <records.json> <address> <port> <workers> <worker script> [dgram|batch]
// (workers 0 with dgram is the server as it was before issue 18: main thread, Node's dgram).
import { readFileSync } from 'node:fs';
import { Registry } from 'prom-client';
import { ShoalDns } from '../../src/dns/index.js';
import type { DnsRecordsInput } from '../../src/dns/types.js';

const [file, address, port, workers, script, udp = 'batch'] = process.argv.slice(2) as [string, string, string, string, string, string?];
const n = Number(workers);
const dns = new ShoalDns({ registry: new Registry(), localTtl: 5, resolvConfPath: '/nonexistent', udp: udp === 'dgram' ? 'dgram' : 'batch', workers: n, workerScript: script });
const settle = async (): Promise<void> => {
  if (dns.pool && !(await dns.pool.whenApplied(120_000))) throw new Error('workers did not apply the records');
  (globalThis as { gc?: () => void }).gc?.();
};
dns.setRecords({ networks: [], endpoints: [] });
await settle();
console.log(`MEM ${process.memoryUsage().rss}`);
const t0 = performance.now();
dns.setRecords(JSON.parse(readFileSync(file, 'utf8')) as DnsRecordsInput);
await settle();
console.log(`APPLIED ${Math.round(performance.now() - t0)}`);
console.log(`MEM ${process.memoryUsage().rss}`);
await dns.addListener(address, Number(port));
console.log('READY');
// The change bench: SIGUSR1 reads and parses the record set in <records.json>.reload ("LOADED"),
// SIGHUP makes it the current one, a whole new set as the daemon hands over on every store
// change (what changed is found by ShoalDns). Reading and parsing 100,000 records (~100 ms) is
// the daemon's part, so it happens before the clock starts.
let next: DnsRecordsInput | undefined;
process.on('SIGUSR1', () => {
  next = JSON.parse(readFileSync(`${file}.reload`, 'utf8')) as DnsRecordsInput;
  console.log('LOADED');
});
// "CHANGED <ms> <ms>": setRecords's own time (the diff, on this thread), and until every worker
// said it applied the change.
process.on('SIGHUP', () => {
  const input = next ?? (JSON.parse(readFileSync(`${file}.reload`, 'utf8')) as DnsRecordsInput);
  const t0 = performance.now();
  dns.setRecords(input);
  const set = performance.now() - t0;
  void (dns.pool?.whenApplied() ?? Promise.resolve(true)).then(() => console.log(`CHANGED ${set.toFixed(2)} ${(performance.now() - t0).toFixed(2)}`));
});
process.on('SIGTERM', () => void dns.close(0).then(() => process.exit(0)));
