/**
 * Helpers for the CNI fast-path tests (665, 666): a private copy of the built plugins, a daemon
 * with its own run and state dirs, and plugin runs through the forwarder (to the daemon) or with
 * SHOAL_CNI_FORWARD=0 (the Node plugin), with what the daemon served counted from its log.
 * Subnets come from 10.182.0.0/16 only, a random /24 block per file run.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { privateBundles } from '../e2e/helpers/cni-exec.js';
import { REPO, startDaemon, type DaemonProc } from './daemon-helpers.js';

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  json: Record<string, unknown> | undefined;
  ms: number;
}

export interface CniCall {
  command: string;
  containerId?: string;
  netns?: string;
  ifname?: string;
  /** false: SHOAL_CNI_FORWARD=0, the Node plugin. */
  forward?: boolean;
  /** Raw stdin instead of the JSON of `config`. */
  stdin?: string;
  config?: Record<string, unknown>;
  env?: Record<string, string>;
  /** Run as `ip netns exec <name> <plugin>`. */
  viaNetns?: string;
  type?: string;
  binDir?: string;
}

export class FastPathFixture {
  readonly tmp = mkdtempSync(path.join(os.tmpdir(), 'shoal-fastpath-'));
  readonly stateDir = path.join(this.tmp, 'plugin-state');
  readonly run = path.join(this.tmp, 'run');
  readonly daemonState = path.join(this.tmp, 'daemon-state');
  readonly bin = privateBundles(['shoal-bridge', 'shoal-ipam'], path.join(REPO, 'node_modules/.cache'));
  daemon: DaemonProc | undefined;
  private subnetNext = 0;
  private readonly subnetBase = Math.floor(Math.random() * 200);

  /** A /24 of 10.182.0.0/16 not used before by this fixture. */
  subnet(): string {
    this.subnetNext += 1;
    return `10.182.${(this.subnetBase + this.subnetNext) % 250}.0/24`;
  }

  async startDaemon(env: Record<string, string> = {}): Promise<DaemonProc> {
    const dnsPort = 20000 + Math.floor(Math.random() * 20000);
    this.daemon = await startDaemon({ state: this.daemonState, run: this.run, args: ['--no-firewall', '--dns-port', String(dnsPort)], env });
    await this.daemon.waitLog((l) => l['event'] === 'cni_fast_path_started');
    return this.daemon;
  }

  /** CNI requests the current daemon has answered so far. */
  served(command?: string): number {
    return (this.daemon?.logs ?? []).filter((l) => l['event'] === 'cni_request' && (command === undefined || l['command'] === command)).length;
  }

  bridgeConfig(name: string, bridge: string, subnet: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
    return { cniVersion: '1.0.0', name, type: 'shoal-bridge', bridge, isGateway: true, ipam: { type: 'shoal-ipam', subnet, stateDir: this.stateDir }, ...extra };
  }

  cni(call: CniCall): Promise<Run> {
    const bin = path.join(call.binDir ?? this.bin.dir, call.type ?? 'shoal-bridge');
    const env: Record<string, string> = {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      NODE_PATH: path.join(REPO, 'node_modules'),
      SHOAL_RUN_DIR: this.run,
      SHOAL_STATE_DIR: this.stateDir,
      CNI_COMMAND: call.command,
      CNI_PATH: call.binDir ?? this.bin.dir,
      ...(call.forward === false ? { SHOAL_CNI_FORWARD: '0' } : {}),
      ...call.env,
    };
    if (call.containerId !== undefined) env['CNI_CONTAINERID'] = call.containerId;
    if (call.netns !== undefined) env['CNI_NETNS'] = call.netns;
    if (call.ifname !== undefined) env['CNI_IFNAME'] = call.ifname;
    const [cmd, args] = call.viaNetns ? ['ip', ['netns', 'exec', call.viaNetns, bin]] : [bin, []];
    const t0 = performance.now();
    return new Promise((resolve, reject) => {
      const child = spawn(cmd, args as string[], { env, stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.stdin.on('error', () => undefined);
      child.on('error', reject);
      child.on('close', (code) => {
        let json: Record<string, unknown> | undefined;
        try {
          json = stdout.trim() ? (JSON.parse(stdout) as Record<string, unknown>) : undefined;
        } catch {
          json = undefined;
        }
        resolve({ code, stdout, stderr, json, ms: performance.now() - t0 });
      });
      child.stdin.end(call.stdin ?? JSON.stringify(call.config ?? {}));
    });
  }

  async cleanup(): Promise<void> {
    await this.daemon?.stop();
    this.bin.remove();
    rmSync(this.tmp, { recursive: true, force: true });
  }
}

/** The first IPv4 address of an ADD result ("10.182.x.y/24"). */
export function firstAddress(run: Run): string | undefined {
  return (run.json?.['ips'] as Array<{ address: string }> | undefined)?.[0]?.address;
}
