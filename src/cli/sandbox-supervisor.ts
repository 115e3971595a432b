/**
 * The life of one `shoal run` sandbox: record it, make its netns (loopback up), attach it to its
 * network through the CNI chain, write its /etc files, start the command through the launcher
 * (`shoal __sandbox-exec`), wait, and undo everything when the command exits or when this
 * process gets SIGINT/SIGTERM/SIGHUP (forwarded to the command first). In the foreground this
 * runs inside `shoal run`; with -d inside a detached `shoal __supervise` process.
 */
import { spawn, type StdioOptions } from 'node:child_process';
import * as fs from 'node:fs';
import { constants as osConstants } from 'node:os';
import * as path from 'node:path';
import { runDir, stateDir, openStore } from './common.js';
import { defaultPluginDir } from '../network/chain.js';
import type { PortMapping } from '../network/attach.js';
import type { SandboxRecord } from '../network/sandboxes.js';

export interface RunSpec {
  id: string;
  network: string;
  name: string;
  hostname: string;
  aliases: string[];
  ports: PortMapping[];
  dns: string[];
  dnsSearch: string[];
  addHosts: Array<{ name: string; ip: string }>;
  env: Record<string, string>;
  detached: boolean;
  command: string[];
  logFile?: string;
}

/** Thrown for failures before the command started; `shoal run` exits 125 as docker does. */
export class SetupError extends Error {}

export interface SuperviseIo {
  stdio: StdioOptions;
  /** Called once the command runs (or with the error that kept it from running). */
  onReady(result: { ok: true; rec: SandboxRecord } | { ok: false; error: string }): void;
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

function readOr(file: string, fallback: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return fallback;
  }
}

/** Runs the sandbox to completion; resolves with the command's exit status (128+n for signals). */
export async function supervise(spec: RunSpec, io: SuperviseIo): Promise<number> {
  const { warmThreadpool, createNetns } = await import('../kernel/netns.js');
  const { putSandbox, processStartTime, isAlive, sandboxKey } = await import('../network/sandboxes.js');
  const { teardownSandbox } = await import('../network/sandbox-teardown.js');
  // This process opens sockets inside the sandbox netns (setns windows): libuv's pool threads
  // must be born in the host netns first (DESIGN §6).
  await warmThreadpool();
  const store = await openStore();
  const opts = { pluginDir: defaultPluginDir(), stateDir: stateDir() };
  const rec: SandboxRecord = {
    id: spec.id,
    name: spec.name,
    networkMode: spec.network,
    attachments: [],
    hostname: spec.hostname,
    aliases: spec.aliases,
    ports: spec.ports,
    command: spec.command,
    detached: spec.detached,
    supervisorPid: process.pid,
    supervisorStart: processStartTime(process.pid)!,
    status: 'created',
    created: new Date().toISOString(),
  };
  if (spec.logFile) rec.logFile = spec.logFile;

  let stopSignal: NodeJS.Signals | undefined;
  let child: ReturnType<typeof spawn> | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    stopSignal ??= sig;
    if (child?.pid) child.kill(sig);
  };
  for (const s of SIGNALS) process.on(s, onSignal);

  try {
    try {
      // Name taken by a live sandbox? (An exited detached one keeps its name until gc.)
      await store.transaction(async (txn) => {
        for (const kv of await txn.list('sandboxes/')) {
          const other = JSON.parse(kv.value) as SandboxRecord;
          if (other.name === spec.name && (other.status !== 'exited' || isAlive(other))) throw new SetupError(`the name "${spec.name}" is already in use by sandbox ${other.id.slice(0, 12)}`);
        }
        await txn.put(sandboxKey(rec.id), JSON.stringify(rec));
      });
      const net = spec.network === 'host' || spec.network === 'none' ? undefined : await (await import('../network/model.js')).getNetwork(store, spec.network);
      if (spec.network !== 'host' && spec.network !== 'none' && !net) throw new SetupError(`network "${spec.network}" not found`);
      const files = path.join(runDir(), 'sandboxes', rec.id);
      fs.mkdirSync(files, { recursive: true, mode: 0o755 });
      rec.filesDir = files;
      let addresses: string[] = [];
      let ns: string[] = [];
      let search: string[] = [];
      if (spec.network !== 'host') {
        rec.netns = createNetns(`shoal-${rec.id.slice(0, 12)}`);
        await putSandbox(store, rec);
        const { withRtnl } = await import('../kernel/rtnl.js');
        const { setLinkUp } = await import('../kernel/link.js');
        withRtnl(rec.netns, (nl) => setLinkUp(nl, 'lo'));
      }
      if (net) {
        if (stopSignal) throw new SetupError(`interrupted by ${stopSignal}`);
        const { attach } = await import('../network/attach.js');
        // Record the attachment before ADD: if we die mid-ADD, gc still knows what to DEL.
        rec.attachments.push({ network: net.name, ifname: 'eth0', addresses: [] });
        await putSandbox(store, rec);
        const res = await attach(opts, net, { containerId: rec.id, netns: rec.netns!, ifname: 'eth0', name: rec.name, aliases: spec.aliases, ports: spec.ports });
        rec.attachments[0]!.addresses = res.addresses;
        addresses = res.addresses.map((a) => a.split('/')[0]!);
        ns = res.nameservers;
        search = res.search;
      }
      const { renderHosts, renderResolvConf } = await import('../network/sandbox-files.js');
      const input = {
        hostname: spec.hostname,
        name: spec.name,
        addresses,
        resultNameservers: ns,
        resultSearch: search,
        dns: spec.dns,
        dnsSearch: spec.dnsSearch,
        addHosts: spec.addHosts,
        hostResolvConf: readOr('/etc/resolv.conf', ''),
        hostHosts: readOr('/etc/hosts', ''),
        hostNetwork: spec.network === 'host',
      };
      fs.writeFileSync(path.join(files, 'resolv.conf'), renderResolvConf(input));
      fs.writeFileSync(path.join(files, 'hosts'), renderHosts(input));
      fs.writeFileSync(path.join(files, 'hostname'), `${spec.hostname}\n`);
      if (stopSignal) throw new SetupError(`interrupted by ${stopSignal}`);
      const execSpec = {
        netns: rec.netns,
        binds: ['resolv.conf', 'hosts', 'hostname'].map((f) => ({ source: path.join(files, f), target: `/etc/${f}` })),
        hostname: spec.hostname,
        argv: spec.command,
        env: spec.env,
        cwd: process.cwd(),
      };
      child = spawn(process.execPath, [process.argv[1]!, '__sandbox-exec', JSON.stringify(execSpec)], { stdio: io.stdio });
      await new Promise<void>((resolve, reject) => {
        child!.once('spawn', resolve);
        child!.once('error', reject);
      });
      rec.pid = child.pid!;
      rec.status = 'running';
      await putSandbox(store, rec);
    } catch (err) {
      io.onReady({ ok: false, error: (err as Error).message });
      throw err instanceof SetupError ? err : new SetupError((err as Error).message);
    }
    io.onReady({ ok: true, rec });
    const code = await new Promise<number>((resolve) => {
      child!.once('exit', (c, sig) => resolve(c ?? 128 + (sig ? osConstants.signals[sig] : 0)));
    });
    rec.exitCode = code;
    return code;
  } finally {
    for (const s of SIGNALS) process.off(s, onSignal);
    const errors = await teardownSandbox(store, opts, rec);
    for (const e of errors) process.stderr.write(`shoal run: ${e}\n`);
    if (rec.detached) {
      rec.status = 'exited';
      delete rec.netns;
      await putSandbox(store, rec);
    } else {
      await store.delete(sandboxKey(rec.id));
    }
  }
}

/** Hidden `shoal __supervise SPEC_JSON`: the detached supervisor of `shoal run -d`. */
export async function run(args: string[]): Promise<number> {
  const spec = JSON.parse(args[0] ?? '{}') as RunSpec;
  let reported = false;
  const report = (line: object) => {
    if (reported) return;
    reported = true;
    try {
      fs.writeSync(3, JSON.stringify(line) + '\n');
      fs.closeSync(3);
    } catch {
      // the parent went away: nothing to tell
    }
  };
  try {
    return await supervise(spec, {
      stdio: ['ignore', 'inherit', 'inherit'],
      onReady: (r) => report(r.ok ? { ok: true, id: r.rec.id } : { ok: false, error: r.error }),
    });
  } catch (err) {
    report({ ok: false, error: (err as Error).message });
    process.stderr.write(`shoal run: ${(err as Error).message}\n`);
    return 125;
  }
}
