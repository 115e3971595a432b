/**
 * The `shoal` command. Subcommands live in their own modules and are loaded lazily, so
 * `shoal version` does not pay for the daemon or the kernel layer.
 */
import { CLI_COMMANDS, runCommand, usage } from './commands.js';

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version') return runCommand('version', []);
  if (!CLI_COMMANDS.has(name)) {
    process.stderr.write(`shoal: unknown command "${name}"; run "shoal --help" for the list\n`);
    return 2;
  }
  return runCommand(name, rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`shoal: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
