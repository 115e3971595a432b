/** `shoal ps`, `shoal stop`, `shoal logs`: looking after sandboxes started by `shoal run`. */
import * as fs from 'node:fs';
import { CliError, guard, parse, table, UsageError, openStore, stateDir } from './common.js';
import type { SandboxRecord } from '../network/sandboxes.js';

const PS_HELP = `Usage: shoal ps [-a|--all] [-q] [--format table|json]

List running sandboxes (with -a also exited detached ones): id, name, network, addresses,
published ports, command, status.
`;
const STOP_HELP = `Usage: shoal stop [-t|--time SECONDS] SANDBOX...

Stop sandboxes: SIGTERM to the command, SIGKILL after the timeout (default 10 s); the sandbox's
supervisor then detaches it from its network and removes it.
`;
const LOGS_HELP = `Usage: shoal logs [-f|--follow] SANDBOX

Print the output of a detached sandbox; with --follow keep printing until it exits.
`;

function statusOf(rec: SandboxRecord, alive: boolean): string {
  if (rec.status === 'exited') return `exited (${rec.exitCode ?? '?'})`;
  return alive ? 'running' : 'dead (run "shoal gc")';
}

async function ps(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { all: { type: 'boolean', short: 'a' }, quiet: { type: 'boolean', short: 'q' }, format: { type: 'string', default: 'table' } });
  if (values.help) return void process.stdout.write(PS_HELP), 0;
  if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  if (values.format !== 'table' && values.format !== 'json') throw new UsageError(`invalid --format "${values.format}": table or json`);
  const { listSandboxes, isAlive } = await import('../network/sandboxes.js');
  const store = await openStore();
  const all = (await listSandboxes(store)).map((r) => ({ r, alive: isAlive(r) }));
  const shown = all.filter(({ r }) => values.all || r.status !== 'exited');
  if (values.quiet) return void process.stdout.write(shown.map(({ r }) => `${r.id.slice(0, 12)}\n`).join('')), 0;
  if (values.format === 'json') {
    process.stdout.write(JSON.stringify(shown.map(({ r, alive }) => ({ ...r, alive })), null, 2) + '\n');
    return 0;
  }
  const rows = shown.map(({ r, alive }) => [
    r.id.slice(0, 12),
    r.name,
    r.networkMode,
    r.attachments.flatMap((a) => a.addresses).join(',') || '-',
    r.ports.map((p) => `${p.hostIP ? `${p.hostIP}:` : ''}${p.hostPort}->${p.containerPort}/${p.protocol}`).join(',') || '-',
    r.command.join(' ').slice(0, 30),
    statusOf(r, alive),
  ]);
  process.stdout.write(table(['SANDBOX ID', 'NAME', 'NETWORK', 'ADDRESSES', 'PORTS', 'COMMAND', 'STATUS'], rows));
  return 0;
}

async function find(query: string): Promise<{ rec: SandboxRecord; store: Awaited<ReturnType<typeof openStore>> }> {
  const { findSandbox } = await import('../network/sandboxes.js');
  const store = await openStore();
  const rec = await findSandbox(store, query);
  if (!rec) throw new CliError(`no sandbox "${query}"`);
  return { rec, store };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function stop(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { time: { type: 'string', short: 't', default: '10' } });
  if (values.help) return void process.stdout.write(STOP_HELP), 0;
  if (!positionals.length) throw new UsageError('missing sandbox name or id');
  const timeout = Number(values.time);
  if (!/^\d+$/.test(values.time as string)) throw new UsageError(`invalid --time "${values.time}": whole seconds`);
  const { isAlive, putSandbox, sandboxKey, findSandbox } = await import('../network/sandboxes.js');
  const { teardownSandbox } = await import('../network/sandbox-teardown.js');
  const { defaultPluginDir } = await import('../network/chain.js');
  const targets = [];
  for (const q of positionals) targets.push(await find(q));
  for (const { rec, store } of targets) {
    if (isAlive(rec) && rec.pid) {
      const signal = (sig: NodeJS.Signals) => {
        try {
          process.kill(rec.pid!, sig);
        } catch {
          // already gone
        }
      };
      signal('SIGTERM');
      const deadline = Date.now() + timeout * 1000;
      while (isAlive(rec) && Date.now() < deadline) await sleep(50);
      if (isAlive(rec)) signal('SIGKILL');
      // The supervisor detaches the sandbox once the command is gone; wait for it (bounded).
      const cleanupDeadline = Date.now() + 30_000;
      while (isAlive(rec) && Date.now() < cleanupDeadline) await sleep(50);
    }
    if (isAlive(rec)) throw new CliError(`failed to stop "${rec.name}": its supervisor (pid ${rec.supervisorPid}) is still running`);
    // The supervisor was gone (kill -9) or died: clean up here.
    const now = await findSandbox(store, rec.id);
    if (now && now.status !== 'exited') {
      const errors = await teardownSandbox(store, { pluginDir: defaultPluginDir(), stateDir: stateDir() }, now);
      if (now.detached) await putSandbox(store, { ...now, status: 'exited', attachments: [] });
      else await store.delete(sandboxKey(now.id));
      if (errors.length) throw new CliError(errors[0]!);
    }
    process.stdout.write(`${rec.name}\n`);
  }
  return 0;
}

async function logs(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { follow: { type: 'boolean', short: 'f' } });
  if (values.help) return void process.stdout.write(LOGS_HELP), 0;
  if (positionals.length !== 1) throw new UsageError('expected one sandbox name or id');
  const { rec } = await find(positionals[0]!);
  if (!rec.logFile) throw new CliError(`sandbox "${rec.name}" is not detached: its output went to the terminal`);
  const { isAlive } = await import('../network/sandboxes.js');
  let offset = 0;
  const pump = () => {
    let fd: number;
    try {
      fd = fs.openSync(rec.logFile!, 'r');
    } catch {
      return;
    }
    try {
      const buf = Buffer.alloc(65536);
      for (;;) {
        const n = fs.readSync(fd, buf, 0, buf.length, offset);
        if (n <= 0) break;
        offset += n;
        process.stdout.write(buf.subarray(0, n));
      }
    } finally {
      fs.closeSync(fd);
    }
  };
  pump();
  if (!fs.existsSync(rec.logFile) && !values.follow) throw new CliError(`no log for "${rec.name}" (${rec.logFile} is gone)`);
  while (values.follow && isAlive(rec)) {
    await sleep(200);
    pump();
  }
  if (values.follow) pump();
  return 0;
}

export const psCommand = { run: (a: string[]) => guard('ps', () => ps(a)) };
export const stopCommand = { run: (a: string[]) => guard('stop', () => stop(a)) };
export const logsCommand = { run: (a: string[]) => guard('logs', () => logs(a)) };
