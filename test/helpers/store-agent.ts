/**
 * A store client inside a cluster node (helpers/cluster.ts). The test process lives in the
 * host's namespace and cannot reach the underlay, so each client is a child process started
 * in a node's namespace (`ip netns exec`), driven over stdin/stdout (helpers/store-agent-main.ts).
 */
import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { stopProcess, type ClusterNode, type TestCluster } from './cluster.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** An error the agent's store raised, with its class name and code. */
export class AgentError extends Error {
  constructor(
    readonly errorName: string,
    readonly code: string | undefined,
    message: string,
  ) {
    super(message);
  }
}

export interface AgentEvent {
  event: string;
  [k: string]: unknown;
}

const bundles = new Map<string, Promise<string>>();

/** Bundles the agent once per directory (the cluster's temp dir). */
function agentBundle(dir: string): Promise<string> {
  let p = bundles.get(dir);
  if (!p) {
    const outfile = path.join(dir, 'store-agent.cjs');
    p = build({
      entryPoints: [path.join(root, 'test/helpers/store-agent-main.ts')],
      bundle: true,
      platform: 'node',
      target: 'node24',
      format: 'cjs',
      packages: 'external',
      outfile,
      logLevel: 'warning',
    }).then(() => outfile);
    bundles.set(dir, p);
  }
  return p;
}

export class StoreAgent {
  readonly events = new EventEmitter();
  /** Every event received, in order. */
  readonly seen: AgentEvent[] = [];
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private stderr = '';

  private constructor(
    readonly node: ClusterNode,
    private readonly child: ChildProcess,
  ) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let msg: { id?: number; ok?: boolean; result?: unknown; error?: { name: string; code?: string; message: string } } & Partial<AgentEvent>;
      try {
        msg = JSON.parse(line);
      } catch {
        this.stderr += `${line}\n`;
        return;
      }
      if (msg.id !== undefined) {
        const p = this.pending.get(msg.id);
        this.pending.delete(msg.id);
        if (msg.ok) p?.resolve(msg.result);
        else p?.reject(new AgentError(msg.error!.name, msg.error!.code, msg.error!.message));
      } else if (msg.event) {
        this.seen.push(msg as AgentEvent);
        this.events.emit('event', msg);
      }
    });
    child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    child.once('exit', (code, signal) => {
      for (const p of this.pending.values()) p.reject(new Error(`store agent on ${node.name} exited (${code ?? signal}): ${this.stderr.slice(-2000)}`));
      this.pending.clear();
    });
  }

  /** Starts an agent in `node` and opens an EtcdStore on the cluster's endpoints. */
  static async start(cluster: TestCluster, node: ClusterNode, opts: { requestTimeoutMs?: number; endpoints?: string[] } = {}): Promise<StoreAgent> {
    const bundle = await agentBundle(cluster.tmpDir);
    if (!existsSync(bundle)) throw new Error(`store agent bundle missing: ${bundle}`);
    const child = cluster.spawn(node, process.execPath, [bundle], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { NODE_PATH: path.join(root, 'node_modules') },
    });
    const agent = new StoreAgent(node, child);
    await agent.waitFor((e) => e.event === 'ready', 10_000);
    await agent.call('open', { endpoints: opts.endpoints ?? cluster.endpoints, requestTimeoutMs: opts.requestTimeoutMs });
    return agent;
  }

  call<T = unknown>(op: string, args: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<T> {
    const id = this.nextId++;
    if (this.child.exitCode !== null || this.child.signalCode !== null) {
      return Promise.reject(new Error(`store agent on ${this.node.name} has exited (${this.child.exitCode ?? this.child.signalCode}): ${this.stderr.slice(-2000)}`));
    }
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`store agent on ${this.node.name}: no answer to ${op} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.child.stdin!.write(JSON.stringify({ id, op, args }) + '\n');
    });
  }

  /** Resolves with the first event (already seen since `since`, or arriving) that matches. */
  waitFor(match: (e: AgentEvent) => boolean, timeoutMs: number, since = 0): Promise<AgentEvent> {
    const earlier = this.seen.slice(since).find(match);
    if (earlier) return Promise.resolve(earlier);
    return new Promise((resolve, reject) => {
      const onEvent = (e: AgentEvent) => {
        if (!match(e)) return;
        clearTimeout(timer);
        this.events.off('event', onEvent);
        resolve(e);
      };
      const timer = setTimeout(() => {
        this.events.off('event', onEvent);
        reject(new Error(`store agent on ${this.node.name}: no matching event within ${timeoutMs} ms; seen: ${JSON.stringify(this.seen.slice(since).slice(-10))}`));
      }, timeoutMs);
      this.events.on('event', onEvent);
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.stdin!.end();
      await stopProcess(this.child, 2000);
    }
  }
}
