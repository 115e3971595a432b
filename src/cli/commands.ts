/** Command table of the `shoal` CLI: name, one-line summary, and a lazy loader. */
export interface CliCommand {
  summary: string;
  load: () => Promise<{ run(args: string[]): Promise<number> }>;
}

const commands: Array<[string, CliCommand]> = [
  ['version', { summary: 'print the Shoal version and the CNI versions it speaks', load: () => import('./version.js') }],
  ['daemon', { summary: 'run the Shoal daemon: DNS server, metrics, control API', load: () => import('./daemon.js') }],
  ['cni', { summary: 'manage the CNI plugin executables (cni install --dir DIR)', load: () => import('./cni-install.js') }],
  ['port', { summary: 'list the published ports of a container, like docker port', load: () => import('./port.js') }],
];

export const CLI_COMMANDS = new Map(commands);

export function usage(): string {
  const width = Math.max(...commands.map(([name]) => name.length));
  const lines = commands.map(([name, cmd]) => `  ${name.padEnd(width)}  ${cmd.summary}`);
  return `Usage: shoal COMMAND [OPTIONS]\n\nShoal: container networking and service discovery.\n\nCommands:\n${lines.join('\n')}\n\nRun "shoal COMMAND --help" for a command's options.\n`;
}

export async function runCommand(name: string, args: string[]): Promise<number> {
  const command = CLI_COMMANDS.get(name);
  if (!command) throw new Error(`unknown command "${name}"`);
  const mod = await command.load();
  return mod.run(args);
}
