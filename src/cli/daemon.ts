/** `shoal daemon`: runs the Shoal daemon (src/daemon/). Flags: `shoal daemon --help`. */
export async function run(args: string[]): Promise<number> {
  const { runDaemon } = await import('../daemon/index.js');
  const code = await runDaemon(args);
  // Sockets, timers and the store are closed by the graceful stop; exit explicitly anyway so a
  // stray handle (a client's idle connection) cannot keep a stopped daemon alive.
  if (!args.includes('--help') && !args.includes('-h')) setImmediate(() => process.exit(code));
  return code;
}
