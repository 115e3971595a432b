// For benchmarks: a Shoal daemon serving the CNI fast path (<run dir>/cni.sock) from temp dirs,
// started and stopped by PID, counting the CNI requests it served (its debug log), so a bench
// can show that the "daemon" rows were served by it and not by the Node fallback.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import path from 'node:path';

export async function startBenchDaemon(root, { run, state }) {
  const dnsPort = String(20000 + Math.floor(Math.random() * 20000));
  mkdirSync(run, { recursive: true });
  // Its log goes to a file, not a pipe: a bench blocks its event loop in spawnSync, and a
  // daemon writing to a full pipe nobody reads would stall.
  const logFile = path.join(run, 'bench-daemon.log');
  const log = openSync(logFile, 'a');
  const child = spawn(process.execPath, [path.join(root, 'dist/bin/shoal'), 'daemon', '--metrics-addr', 'off', '--no-firewall', '--dns-port', dnsPort, '--log-level', 'debug'], {
    env: { PATH: process.env.PATH, SHOAL_RUN_DIR: run, SHOAL_STATE_DIR: state },
    stdio: ['ignore', log, 'inherit'],
  });
  closeSync(log);
  const deadline = Date.now() + 15_000;
  while (!existsSync(path.join(run, 'cni.sock'))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error('the bench daemon did not start');
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    served: () => readFileSync(logFile, 'utf8').split('\n').filter((l) => l.includes('"event":"cni_request"')).length,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      process.kill(child.pid, 'SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 8000))]);
      if (child.exitCode === null) process.kill(child.pid, 'SIGKILL');
    },
  };
}
