// Runs a built CNI executable as a runtime does (env + stdin), optionally killing it with
// SIGKILL after a delay. dist/cni/<type> execs the Node plugin in the same process when no
// daemon answers, so the PID killed is the plugin's own. In `netns` (a cluster node's namespace)
// it runs through `ip netns exec`, which execs the plugin in place: the PID is still the plugin's.
import { spawn } from 'node:child_process';

export function execPlugin(bin, env, config, killAfterMs, netns) {
  return new Promise((resolve) => {
    const started = performance.now();
    const [cmd, args] = netns ? ['ip', ['netns', 'exec', netns, bin]] : [bin, []];
    const child = spawn(cmd, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.stdin.on('error', () => {});
    child.stdin.end(typeof config === 'string' ? config : JSON.stringify(config));
    const killer = killAfterMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    // A hung plugin is a finding, not a reason to hang the campaign.
    const watchdog = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('close', (code, signal) => {
      clearTimeout(killer);
      clearTimeout(watchdog);
      let json;
      try {
        json = JSON.parse(stdout);
      } catch {
        json = undefined;
      }
      resolve({ code, signal, stdout, stderr, json, ms: performance.now() - started, killed: signal === 'SIGKILL' && killAfterMs !== undefined });
    });
  });
}
