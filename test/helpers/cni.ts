import { pluginMain, type CniPlugin } from '../../cni/skel.js';

/** Runs the skel in-process with injected I/O and returns what a runtime would see. */
export async function runCni(plugin: CniPlugin, env: Record<string, string | undefined>, stdin: string | object = '') {
  let stdout = '';
  let stderr = '';
  let exitCode: number | undefined;
  const returned = await pluginMain(plugin, {
    env,
    stdin: typeof stdin === 'string' ? stdin : JSON.stringify(stdin),
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    exit: (code) => {
      exitCode = code;
    },
  });
  const json = stdout.trim() === '' ? undefined : (JSON.parse(stdout) as Record<string, unknown>);
  return { exitCode, returned, stdout, stderr, json };
}

export const ENV_FOR: Record<string, Record<string, string>> = {
  ADD: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c0ffee', CNI_NETNS: '/var/run/netns/t', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' },
  DEL: { CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'c0ffee', CNI_NETNS: '/var/run/netns/t', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' },
  CHECK: { CNI_COMMAND: 'CHECK', CNI_CONTAINERID: 'c0ffee', CNI_NETNS: '/var/run/netns/t', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' },
  STATUS: { CNI_COMMAND: 'STATUS', CNI_PATH: '/opt/cni/bin' },
  GC: { CNI_COMMAND: 'GC', CNI_PATH: '/opt/cni/bin' },
  VERSION: { CNI_COMMAND: 'VERSION' },
};

export function netconf(cniVersion: string, extra: Record<string, unknown> = {}) {
  return { cniVersion, name: 'testnet', type: 'shoal-test', ...extra };
}
