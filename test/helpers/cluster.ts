/**
 * A test cluster on one machine (DESIGN.md §7): each node is a network namespace with a veth on
 * one underlay bridge, its own SHOAL_STATE_DIR / SHOAL_RUN_DIR / SHOAL_CNI_CONF_DIR, and a
 * 3-member etcd cluster (Debian's etcd-server) runs in the first three node namespaces on their
 * underlay addresses, with data in a temporary directory.
 *
 * Nothing touches the host's links: the underlay bridge lives in a namespace of its own, every
 * veth pair is created inside that namespace and one end is moved into a node. The underlay is a
 * random 10.199.X.0/24 per run, used only inside these namespaces. Every process (etcd members
 * and whatever a test spawns with `spawn`) is a child of the test process, stopped by its PID in
 * `destroy`, and killed by PID if the test process exits without calling it.
 *
 * Kernel objects go through iproute2 and nft, the tests' independent path (helpers/kernel-objects).
 */
import { spawn as spawnChild, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { uniqueName } from './names.js';

export const ETCD_CLIENT_PORT = 2379;
export const ETCD_PEER_PORT = 2380;
/** The node-side end of a node's underlay veth (inside the node's namespace). */
export const UNDERLAY_IFNAME = 'ul0';
/** The nftables table `cut` adds in a node's namespace (DESIGN.md §2: Shoal-owned tables only). */
const CUT_TABLE = 'shoalcut';

export interface ClusterNode {
  /** Node name (`--node`); also the /run/netns name of its namespace. */
  readonly name: string;
  readonly index: number;
  /** /run/netns name of the node's namespace. */
  readonly netns: string;
  /** Underlay address of the node (no prefix length). */
  readonly address: string;
  /** The bridge-side end of its underlay veth (in the underlay namespace). */
  readonly bridgePort: string;
  readonly stateDir: string;
  readonly runDir: string;
  readonly cniConfDir: string;
  /** SHOAL_STATE_DIR / SHOAL_RUN_DIR / SHOAL_CNI_CONF_DIR for processes of this node. */
  readonly env: Record<string, string>;
}

export interface EtcdMember {
  readonly name: string;
  readonly node: ClusterNode;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  readonly logFile: string;
  /** The running process, or undefined while stopped. */
  process: ChildProcess | undefined;
}

export interface ClusterOptions {
  /** Node namespaces (default 3). */
  nodes?: number;
  /** etcd members, on the first nodes (default 3; 0 for an underlay without etcd). */
  etcdMembers?: number;
  /** Name prefix for namespaces (at most 5 characters; default 'clu'). */
  prefix?: string;
  /** How long to wait for the etcd cluster to become healthy (default 20 s). */
  readyTimeoutMs?: number;
  /** etcd's Raft heartbeat and election timeout (defaults 100 / 1000 ms, etcd's own). */
  heartbeatMs?: number;
  electionMs?: number;
}

function run(cmd: string, args: string[], input?: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input, timeout: 15_000 });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? (r.error ? String(r.error) : '') };
}

function must(cmd: string, args: string[], input?: string): string {
  const r = run(cmd, args, input);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr.trim()}`);
  return r.stdout;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** PIDs of every process a cluster of this test process started; killed if it exits abruptly. */
const livePids = new Set<number>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  if (child.pid === undefined) return;
  const pid = child.pid;
  livePids.add(pid);
  child.once('exit', () => livePids.delete(pid));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const p of livePids) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    });
  }
}

/** Sends SIGTERM, waits for the exit, then SIGKILL after `graceMs`. Resolves once it is gone. */
export async function stopProcess(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

export class TestCluster {
  readonly nodes: ClusterNode[] = [];
  readonly members: EtcdMember[] = [];
  /** The underlay namespace holding the bridge. */
  readonly underlayNetns: string;
  readonly underlayBridge = 'ulbr';
  /** e.g. 10.199.37 (a /24 per run). */
  readonly subnetBase: string;
  readonly tmpDir: string;
  private readonly namespaces: string[] = [];
  private readonly children = new Set<ChildProcess>();
  private readonly clusterToken: string;
  private readonly heartbeatMs: number;
  private readonly electionMs: number;

  private constructor(prefix: string, opts: ClusterOptions) {
    this.subnetBase = `10.199.${randomInt(256)}`;
    this.tmpDir = mkdtempSync(join(tmpdir(), 'shoal-cluster-'));
    this.underlayNetns = uniqueName(prefix);
    this.clusterToken = `shoal-test-${this.underlayNetns}`;
    this.heartbeatMs = opts.heartbeatMs ?? 100;
    this.electionMs = opts.electionMs ?? 1000;
  }

  /** Builds the underlay, the nodes and (unless `etcdMembers: 0`) a healthy etcd cluster. */
  static async create(opts: ClusterOptions = {}): Promise<TestCluster> {
    const prefix = opts.prefix ?? 'clu';
    const nodeCount = opts.nodes ?? 3;
    const memberCount = opts.etcdMembers ?? 3;
    if (memberCount > nodeCount) throw new Error(`cluster: ${memberCount} etcd members need at least as many nodes (got ${nodeCount})`);
    const cluster = new TestCluster(prefix, opts);
    try {
      cluster.buildUnderlay();
      for (let i = 0; i < nodeCount; i++) cluster.addNode(prefix);
      for (let i = 0; i < memberCount; i++) cluster.defineMember(cluster.nodes[i]!);
      for (const m of cluster.members) cluster.startMemberProcess(m, 'new');
      if (cluster.members.length) await cluster.waitHealthy(cluster.members, opts.readyTimeoutMs ?? 20_000);
      return cluster;
    } catch (err) {
      await cluster.destroy();
      throw err;
    }
  }

  private buildUnderlay(): void {
    must('ip', ['netns', 'add', this.underlayNetns]);
    this.namespaces.push(this.underlayNetns);
    const n = ['-n', this.underlayNetns];
    must('ip', [...n, 'link', 'set', 'lo', 'up']);
    must('ip', [...n, 'link', 'add', this.underlayBridge, 'type', 'bridge']);
    must('ip', [...n, 'link', 'set', this.underlayBridge, 'up']);
  }

  private addNode(prefix: string): ClusterNode {
    const index = this.nodes.length;
    const name = uniqueName(prefix);
    must('ip', ['netns', 'add', name]);
    this.namespaces.push(name);
    const bridgePort = `ul${index}`;
    const u = ['-n', this.underlayNetns];
    // Both ends are created inside the underlay namespace; one moves into the node.
    must('ip', [...u, 'link', 'add', bridgePort, 'type', 'veth', 'peer', 'name', UNDERLAY_IFNAME, 'netns', name]);
    must('ip', [...u, 'link', 'set', bridgePort, 'master', this.underlayBridge]);
    must('ip', [...u, 'link', 'set', bridgePort, 'up']);
    const address = `${this.subnetBase}.${10 + index}`;
    const n = ['-n', name];
    must('ip', [...n, 'link', 'set', 'lo', 'up']);
    must('ip', [...n, 'addr', 'add', `${address}/24`, 'dev', UNDERLAY_IFNAME]);
    must('ip', [...n, 'link', 'set', UNDERLAY_IFNAME, 'up']);
    // GRO on, as a real NIC has it: without it a veth hands VXLAN's encapsulated segments up one
    // by one while plain TCP passes 64 KB GSO packets untouched, and the overlay measures at
    // ~0.6x of an underlay no real network has (bench overlay; ethtool from scripts/setup.sh).
    must('ip', ['netns', 'exec', name, 'ethtool', '-K', UNDERLAY_IFNAME, 'gro', 'on']);
    must('ip', ['netns', 'exec', this.underlayNetns, 'ethtool', '-K', bridgePort, 'gro', 'on']);
    const dir = join(this.tmpDir, name);
    const node: ClusterNode = {
      name,
      index,
      netns: name,
      address,
      bridgePort,
      stateDir: join(dir, 'state'),
      runDir: join(dir, 'run'),
      cniConfDir: join(dir, 'cni'),
      env: {},
    };
    Object.assign(node.env, { SHOAL_STATE_DIR: node.stateDir, SHOAL_RUN_DIR: node.runDir, SHOAL_CNI_CONF_DIR: node.cniConfDir });
    for (const d of [node.stateDir, node.runDir, node.cniConfDir]) mkdirSync(d, { recursive: true, mode: 0o700 });
    this.nodes.push(node);
    return node;
  }

  private defineMember(node: ClusterNode): void {
    const name = `etcd${this.members.length + 1}`;
    this.members.push({
      name,
      node,
      clientUrl: `http://${node.address}:${ETCD_CLIENT_PORT}`,
      peerUrl: `http://${node.address}:${ETCD_PEER_PORT}`,
      dataDir: join(this.tmpDir, `${name}.data`),
      logFile: join(this.tmpDir, `${name}.log`),
      process: undefined,
    });
  }

  private startMemberProcess(m: EtcdMember, state: 'new' | 'existing'): void {
    const initialCluster = this.members.map((x) => `${x.name}=${x.peerUrl}`).join(',');
    const args = [
      '--name', m.name,
      '--data-dir', m.dataDir,
      '--listen-peer-urls', m.peerUrl,
      '--initial-advertise-peer-urls', m.peerUrl,
      // The node's own loopback too, so a process of that node can reach its member locally.
      '--listen-client-urls', `${m.clientUrl},http://127.0.0.1:${ETCD_CLIENT_PORT}`,
      '--advertise-client-urls', m.clientUrl,
      '--initial-cluster', initialCluster,
      '--initial-cluster-state', state,
      '--initial-cluster-token', this.clusterToken,
      '--heartbeat-interval', String(this.heartbeatMs),
      '--election-timeout', String(this.electionMs),
      // A member cut off the underlay keeps starting elections and raising its term; without
      // pre-vote its return forces a new election, and reads stall meanwhile (810 saw `node ls`
      // time out right after a heal). etcd 3.5 turns pre-vote on by default; 3.4 (Debian) not.
      '--pre-vote',
      '--logger', 'zap',
      '--log-outputs', 'stderr',
    ];
    const log = openSync(m.logFile, 'a');
    try {
      const child = spawnChild('ip', ['netns', 'exec', m.node.netns, 'etcd', ...args], { stdio: ['ignore', log, log] });
      track(child);
      child.on('error', () => undefined);
      m.process = child;
    } finally {
      closeSync(log);
    }
  }

  // ---- etcd ----------------------------------------------------------------------------------

  /** `host:port` of every member's client URL (what `--store etcd://...` lists). */
  get endpoints(): string[] {
    return this.members.map((m) => `${m.node.address}:${ETCD_CLIENT_PORT}`);
  }

  /** `etcd://a:2379,b:2379,c:2379` */
  get storeUrl(): string {
    return `etcd://${this.endpoints.join(',')}`;
  }

  /** Stops member `i` (SIGTERM by PID); its data stays for `startMember`. */
  async stopMember(i: number): Promise<void> {
    const m = this.member(i);
    if (!m.process) return;
    const child = m.process;
    m.process = undefined;
    await stopProcess(child);
  }

  /** Starts member `i` again on its data dir; with `wait`, until the cluster is healthy again. */
  async startMember(i: number, wait = true): Promise<void> {
    const m = this.member(i);
    if (m.process) return;
    this.startMemberProcess(m, 'existing');
    if (wait) await this.waitHealthy(this.members.filter((x) => x.process), 20_000);
  }

  private member(i: number): EtcdMember {
    const m = this.members[i];
    if (!m) throw new Error(`cluster: no etcd member ${i}`);
    return m;
  }

  /** `etcdctl` run inside `node` (default: the first running member's node); throws on failure. */
  etcdctl(args: string[], opts: { node?: ClusterNode; endpoints?: string[]; timeoutSec?: number } = {}): string {
    const node = opts.node ?? this.members.find((m) => m.process)?.node ?? this.nodes[0]!;
    const endpoints = opts.endpoints ?? this.endpoints;
    return must('ip', [
      'netns', 'exec', node.netns,
      'etcdctl', `--endpoints=${endpoints.join(',')}`, `--command-timeout=${opts.timeoutSec ?? 3}s`, '--dial-timeout=2s',
      ...args,
    ]);
  }

  /** Waits until every given member answers a quorum read (`etcdctl endpoint health`). */
  async waitHealthy(members: EtcdMember[] = this.members.filter((m) => m.process), timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const endpoints = members.map((m) => `${m.node.address}:${ETCD_CLIENT_PORT}`);
    for (;;) {
      for (const m of members) {
        if (m.process && (m.process.exitCode !== null || m.process.signalCode !== null)) {
          throw new Error(`cluster: etcd member ${m.name} exited (${m.process.exitCode ?? m.process.signalCode}); log:\n${this.logTail(m)}`);
        }
      }
      const node = members[0]?.node ?? this.nodes[0]!;
      const r = run('ip', ['netns', 'exec', node.netns, 'etcdctl', `--endpoints=${endpoints.join(',')}`, '--command-timeout=1s', '--dial-timeout=1s', 'endpoint', 'health']);
      if (r.status === 0) return;
      if (Date.now() > deadline) throw new Error(`cluster: etcd not healthy after ${timeoutMs} ms: ${(r.stderr || r.stdout).trim()}\n${members.map((m) => `${m.name}:\n${this.logTail(m)}`).join('\n')}`);
      await sleep(200);
    }
  }

  /** The last lines of a member's log (for failure messages). */
  logTail(m: EtcdMember, lines = 15): string {
    try {
      return readFileSync(m.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  // ---- the underlay --------------------------------------------------------------------------

  /**
   * Cuts `node` off the underlay: an nftables table in its namespace drops everything in and out
   * of its underlay veth. Silently dropped, the way a pulled cable or a partition looks: TCP
   * connections stay ESTABLISHED on both sides and nothing is reset.
   */
  cut(node: ClusterNode): void {
    const ruleset = [
      `table inet ${CUT_TABLE} {`,
      '  chain in { type filter hook input priority -200; policy accept; iifname "' + UNDERLAY_IFNAME + '" drop; }',
      '  chain out { type filter hook output priority -200; policy accept; oifname "' + UNDERLAY_IFNAME + '" drop; }',
      '}',
    ].join('\n');
    must('ip', ['netns', 'exec', node.netns, 'nft', '-f', '-'], ruleset + '\n');
  }

  /** Undoes `cut`. */
  heal(node: ClusterNode): void {
    const r = run('ip', ['netns', 'exec', node.netns, 'nft', 'delete', 'table', 'inet', CUT_TABLE]);
    if (r.status !== 0 && !/No such file or directory/.test(r.stderr)) throw new Error(`cluster: heal ${node.name}: ${r.stderr.trim()}`);
  }

  isCut(node: ClusterNode): boolean {
    return run('ip', ['netns', 'exec', node.netns, 'nft', 'list', 'table', 'inet', CUT_TABLE]).status === 0;
  }

  // ---- processes in nodes --------------------------------------------------------------------

  /** Runs a command inside `node`'s namespace (with the node's SHOAL_* environment) to completion. */
  exec(node: ClusterNode, cmd: string, args: string[], input?: string): { status: number | null; stdout: string; stderr: string } {
    const r = spawnSync('ip', ['netns', 'exec', node.netns, cmd, ...args], {
      encoding: 'utf8',
      input,
      timeout: 30_000,
      env: { ...process.env, ...node.env },
    });
    return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  }

  /**
   * Starts a long-running process inside `node`'s namespace (with the node's SHOAL_* environment).
   * It is stopped by PID in `destroy` unless the test stops it first (`stopProcess`).
   */
  spawn(node: ClusterNode, cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
    const child = spawnChild('ip', ['netns', 'exec', node.netns, cmd, ...args], {
      ...opts,
      env: { ...process.env, ...node.env, ...(opts.env ?? {}) },
    });
    track(child);
    child.on('error', () => undefined);
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /** Stops every process, removes the namespaces (and with them every veth and the bridge) and the temp dir. */
  async destroy(): Promise<void> {
    await Promise.all([...this.children].map((c) => stopProcess(c, 2000)));
    await Promise.all(
      this.members.map(async (m) => {
        const child = m.process;
        m.process = undefined;
        if (child) await stopProcess(child, 3000);
      }),
    );
    // Veths explicitly first: a namespace's veths go away asynchronously after `netns del`.
    for (const node of this.nodes) run('ip', ['-n', this.underlayNetns, 'link', 'del', node.bridgePort]);
    for (const ns of this.namespaces.splice(0).reverse()) run('ip', ['netns', 'del', ns]);
    rmSync(this.tmpDir, { recursive: true, force: true });
  }
}

/**
 * Polls `fn` until it returns a value. Errors count as "not yet" (a read may fail while etcd
 * elects a new leader after a cut); the last one is reported on timeout.
 */
export async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs: number, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (last error: ${String(last)})` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
