// dnsperf from inside a network namespace, with every query's latency (-v) written to a file
// and read after the run (not while it runs, so parsing takes no CPU from the servers).
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';

/** One run: qps, p50/p99 latency in ms, completed and lost counts. */
export function dnsperf({ netns, server, port, queryFile, seconds, outFile, runs }) {
  const args = ['netns', 'exec', netns, 'dnsperf', '-s', server, '-p', String(port), '-d', queryFile, '-c', '4', '-q', '200', '-t', '2', '-v'];
  if (runs) args.push('-n', String(runs));
  else args.push('-l', String(seconds));
  const r = spawnSync('sh', ['-c', `ip "$@" > ${JSON.stringify(outFile)} 2>&1`, 'sh', ...args], { timeout: (seconds + 30) * 1000 });
  const text = readFileSync(outFile, 'latin1');
  rmSync(outFile, { force: true });
  const latencies = [];
  let summary = '';
  for (const line of text.split('\n')) {
    if (line.startsWith('> ')) {
      const sp = line.lastIndexOf(' ');
      const v = Number(line.slice(sp + 1));
      if (Number.isFinite(v) && !line.startsWith('> T ')) latencies.push(v * 1000);
    } else {
      summary += `${line}\n`;
    }
  }
  latencies.sort((a, b) => a - b);
  const pct = (p) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] : NaN);
  const num = (re) => Number(re.exec(summary)?.[1] ?? NaN);
  return {
    status: r.status,
    qps: num(/Queries per second:\s+([\d.]+)/),
    p50: pct(50),
    p99: pct(99),
    completed: num(/Queries completed:\s+(\d+)/),
    lost: num(/Queries lost:\s+(\d+)/),
    noerror: num(/NOERROR (\d+)/),
    summary,
  };
}
