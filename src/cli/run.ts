/**
 * `shoal run [OPTIONS] [--] CMD...`: a lightweight sandbox (own netns and mount namespace, host
 * filesystem) attached to a network. Options stop at the first word that is not an option, as
 * with docker, so `shoal run --network n busybox httpd -f -p 80` passes `-f -p 80` to httpd.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { PortRequest } from '../network/ports.js';
import { CliError, guard, keyValues, many, parse, runDir, stateDir, UsageError } from './common.js';
import type { RunSpec } from './sandbox-supervisor.js';

const HELP = `Usage: shoal run [OPTIONS] [--] COMMAND [ARG...]

Run COMMAND in a sandbox: a new network namespace attached to a network, and a private mount
namespace in which /etc/resolv.conf, /etc/hosts and /etc/hostname are the sandbox's own (the
rest of the filesystem is the host's). When COMMAND exits, or on SIGINT/SIGTERM, everything is
detached and removed.

Options:
      --network NAME|host|none  network to attach to (default: none)
      --name NAME               sandbox name (also its DNS name on the network)
      --hostname NAME           hostname inside the sandbox (default: the name)
      --network-alias NAME      extra DNS name on the network (repeatable)
  -p, --publish SPEC            [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO] (repeatable;
                                ports may be ranges A-B; no host port: a free one is chosen,
                                "shoal port NAME" shows it)
      --dns IP                  nameserver for /etc/resolv.conf (repeatable)
      --dns-search DOMAIN       search domain (repeatable)
      --add-host NAME:IP        extra /etc/hosts entry (repeatable)
  -e, --env K=V                 environment variable (repeatable; K alone copies it from here)
  -d, --detach                  run in the background and print the sandbox id
                                (see "shoal ps", "shoal logs", "shoal stop")

Exit status: COMMAND's, or 125 when the sandbox could not be set up, 126/127 when COMMAND
cannot be run / is not found, 2 for a bad command line.
`;

const OPTIONS = {
  network: { type: 'string', default: 'none' },
  name: { type: 'string' },
  hostname: { type: 'string' },
  'network-alias': { type: 'string', multiple: true },
  publish: { type: 'string', short: 'p', multiple: true },
  dns: { type: 'string', multiple: true },
  'dns-search': { type: 'string', multiple: true },
  'add-host': { type: 'string', multiple: true },
  env: { type: 'string', short: 'e', multiple: true },
  detach: { type: 'boolean', short: 'd' },
} as const;

/** Splits argv at `--` or at the first word that is neither an option nor an option's value. */
export function splitCommand(args: string[]): { options: string[]; command: string[] } {
  const takesValue = new Set<string>();
  for (const [k, o] of Object.entries(OPTIONS)) {
    if (o.type !== 'string') continue;
    takesValue.add(`--${k}`);
    if ('short' in o) takesValue.add(`-${o.short}`);
  }
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') return { options: args.slice(0, i), command: args.slice(i + 1) };
    if (!a.startsWith('-') || a === '-') return { options: args.slice(0, i), command: args.slice(i) };
    if (takesValue.has(a)) i++;
  }
  return { options: args, command: [] };
}

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;

/** Validates the command line into a RunSpec; throws UsageError / PortSpecError; touches nothing. */
export async function buildSpec(args: string[]): Promise<RunSpec | 'help'> {
  const { options, command } = splitCommand(args);
  const { values, positionals } = parse(options, OPTIONS);
  if (values.help) return 'help';
  if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  if (!command.length) throw new UsageError('missing COMMAND');
  const { newSandboxId } = await import('../network/sandboxes.js');
  const { parsePortSpecs } = await import('../network/ports.js');
  const { parseAddHost } = await import('../network/sandbox-files.js');
  const { isIP } = await import('../addr.js');
  const id = newSandboxId();
  const name = (values.name as string | undefined) ?? id.slice(0, 12);
  if (!NAME_RE.test(name)) throw new UsageError(`invalid --name ${JSON.stringify(name)}: use letters, digits, "_", "." and "-"`);
  const hostname = (values.hostname as string | undefined) ?? name;
  if (!/^[a-zA-Z0-9]([a-zA-Z0-9-]{0,62})(\.[a-zA-Z0-9-]{1,63})*$/.test(hostname)) throw new UsageError(`invalid --hostname "${hostname}": not a host name`);
  const network = values.network as string;
  const ports = parsePortSpecs(many(values.publish));
  if (ports.length && (network === 'host' || network === 'none')) throw new UsageError(`invalid --publish: ports cannot be published with --network ${network}`);
  const { dnsNameProblem } = await import('../dns/registry-build.js');
  const aliases = many(values['network-alias']);
  for (const a of aliases) {
    const problem = dnsNameProblem(a);
    if (problem) throw new UsageError(`invalid --network-alias ${JSON.stringify(a)}: not a DNS name (it ${problem})`);
  }
  // Each becomes a "search" line of the sandbox's resolv.conf: a line break would add lines.
  const dnsSearch = many(values['dns-search']);
  for (const d of dnsSearch) {
    const problem = dnsNameProblem(d);
    if (problem) throw new UsageError(`invalid --dns-search ${JSON.stringify(d)}: not a domain name (it ${problem})`);
  }
  const dns = many(values.dns);
  for (const d of dns) if (isIP(d) === 0) throw new UsageError(`invalid --dns "${d}": not an IP address`);
  const addHosts = many(values['add-host']).map((h) => {
    const parsed = parseAddHost(h);
    if (!parsed || isIP(parsed.ip) === 0) throw new UsageError(`invalid --add-host ${JSON.stringify(h)}: expected NAME:IP`);
    const problem = dnsNameProblem(parsed.name);
    if (problem) throw new UsageError(`invalid --add-host ${JSON.stringify(h)}: the name ${problem}`);
    return parsed;
  });
  // docker's starting environment: PATH, HOSTNAME, TERM when there is a terminal, then -e.
  const env: Record<string, string> = { PATH: process.env['PATH'] ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOSTNAME: hostname, HOME: '/root' };
  if (process.env['TERM']) env['TERM'] = process.env['TERM'];
  for (const e of many(values.env)) {
    if (!e.includes('=')) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(e)) throw new UsageError(`invalid --env "${e}": expected KEY=VALUE or KEY`);
      if (process.env[e] !== undefined) env[e] = process.env[e]!;
    } else Object.assign(env, keyValues('--env', [e]));
  }
  return { id, network, name, hostname, aliases, ports, dns, dnsSearch, addHosts, env, detached: values.detach === true, command };
}

/** Checks what needs the store before anything is made: the network exists, the name is free. */
async function precheck(spec: RunSpec): Promise<void> {
  const { openStore } = await import('./common.js');
  const store = await openStore();
  if (spec.network !== 'host' && spec.network !== 'none') {
    const { getNetwork } = await import('../network/model.js');
    if (!(await getNetwork(store, spec.network))) throw new CliError(`network "${spec.network}" not found`, 125);
  }
  const { listSandboxes, isAlive } = await import('../network/sandboxes.js');
  const clash = (await listSandboxes(store)).find((s) => s.name === spec.name && (s.status !== 'exited' || isAlive(s)));
  if (clash) throw new CliError(`the name "${spec.name}" is already in use by sandbox ${clash.id.slice(0, 12)}`, 125);
}

async function runDetached(spec: RunSpec): Promise<number> {
  const dir = path.join(runDir(), 'sandboxes', spec.id);
  fs.mkdirSync(dir, { recursive: true });
  spec.logFile = path.join(dir, 'log');
  const log = fs.openSync(spec.logFile, 'a');
  const child = spawn(process.execPath, [process.argv[1]!, '__supervise', JSON.stringify(spec)], { detached: true, stdio: ['ignore', log, log, 'pipe'] });
  fs.closeSync(log);
  let text = '';
  const pipe = child.stdio[3] as NodeJS.ReadableStream;
  pipe.setEncoding('utf8');
  for await (const chunk of pipe) text += chunk as string;
  child.unref();
  let reply: { ok: boolean; id?: string; error?: string };
  try {
    reply = JSON.parse(text) as typeof reply;
  } catch {
    reply = { ok: false, error: `the sandbox supervisor exited before reporting (see ${spec.logFile})` };
  }
  if (!reply.ok) throw new CliError(reply.error ?? 'failed to start', 125);
  process.stdout.write(`${reply.id}\n`);
  return 0;
}

export async function run(args: string[]): Promise<number> {
  return guard('run', async () => {
    const spec = await buildSpec(args);
    if (spec === 'help') return void process.stdout.write(HELP), 0;
    await precheck(spec);
    const { resolveHostPorts } = await import('../network/host-ports.js');
    spec.ports = resolveHostPorts(spec.ports as PortRequest[], stateDir());
    if (spec.detached) return runDetached(spec);
    const { supervise, SetupError } = await import('./sandbox-supervisor.js');
    try {
      return await supervise(spec, { stdio: 'inherit', onReady: () => undefined });
    } catch (err) {
      if (err instanceof SetupError) throw new CliError(err.message, 125);
      throw err;
    }
  });
}
