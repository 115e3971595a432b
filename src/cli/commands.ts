/** Command table of the `shoal` CLI: name, one-line summary, and a lazy loader. */
export interface CliCommand {
  summary: string;
  load: () => Promise<{ run(args: string[]): Promise<number> }>;
  /** Internal entry points (the sandbox launcher and supervisor): not listed in --help. */
  hidden?: boolean;
}

const commands: Array<[string, CliCommand]> = [
  ['version', { summary: 'print the Shoal version and the CNI versions it speaks', load: () => import('./version.js') }],
  ['daemon', { summary: 'run the Shoal daemon: DNS server, metrics, control API', load: () => import('./daemon.js') }],
  ['network', { summary: 'manage networks: create, ls, inspect, rm, connect, disconnect, prune', load: () => import('./network.js') }],
  ['service', { summary: 'manage services: create, ls, inspect, ps, update, rm (VIP, DNS, load balancing)', load: () => import('./service.js') }],
  ['node', { summary: 'list the cluster\'s nodes (node ls; needs a daemon joined to a cluster)', load: () => import('./node.js') }],
  ['run', { summary: 'run a command in a sandbox attached to a network', load: () => import('./run.js') }],
  ['ps', { summary: 'list sandboxes', load: async () => (await import('./sandbox-cmds.js')).psCommand }],
  ['stop', { summary: 'stop sandboxes', load: async () => (await import('./sandbox-cmds.js')).stopCommand }],
  ['logs', { summary: 'print the output of a detached sandbox', load: async () => (await import('./sandbox-cmds.js')).logsCommand }],
  ['gc', { summary: 'clean up after dead sandboxes and run CNI GC on every network', load: () => import('./gc.js') }],
  ['cni', { summary: 'manage the CNI plugin executables (cni install --dir DIR)', load: () => import('./cni-install.js') }],
  ['port', { summary: 'list the published ports of a container, like docker port', load: () => import('./port.js') }],
  ['__sandbox-exec', { summary: 'internal: enter a sandbox and exec its command', load: () => import('./sandbox-exec.js'), hidden: true }],
  ['__supervise', { summary: 'internal: supervise a detached sandbox', load: () => import('./sandbox-supervisor.js'), hidden: true }],
];

export const CLI_COMMANDS = new Map(commands);

export function usage(): string {
  const shown = commands.filter(([, cmd]) => !cmd.hidden);
  const width = Math.max(...shown.map(([name]) => name.length));
  const lines = shown.map(([name, cmd]) => `  ${name.padEnd(width)}  ${cmd.summary}`);
  return `Usage: shoal COMMAND [OPTIONS]\n\nShoal: container networking and service discovery.\n\nCommands:\n${lines.join('\n')}\n\nRun "shoal COMMAND --help" for a command's options.\n`;
}

export async function runCommand(name: string, args: string[]): Promise<number> {
  const command = CLI_COMMANDS.get(name);
  if (!command) throw new Error(`unknown command "${name}"`);
  const mod = await command.load();
  return mod.run(args);
}
