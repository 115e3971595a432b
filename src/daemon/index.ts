/**
 * `shoal daemon`: parse flags, build the logger, start the Daemon, and map signals onto it
 * (SIGTERM/SIGINT: graceful stop and exit 0; SIGHUP: reload). Resolves with the exit code.
 */
import { statSync } from 'node:fs';
import { hostname } from 'node:os';
import pino from 'pino';
import { Daemon } from './daemon.js';
import { DAEMON_HELP, DaemonUsageError, parseDaemonArgs } from './options.js';

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

export async function runDaemon(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseDaemonArgs(argv, process.env, isDirectory, hostname);
    const cluster = parsed.help ? undefined : parsed.options.cluster;
    if (cluster && cluster.advertiseAddr === undefined) {
      const { defaultRouteSource } = await import('../cluster/session.js');
      cluster.advertiseAddr = await defaultRouteSource();
      if (cluster.advertiseAddr === undefined) {
        throw new DaemonUsageError('invalid flag "--advertise-addr": not given, and there is no default route to take the address from; pass --advertise-addr IP');
      }
    }
  } catch (err) {
    if (err instanceof DaemonUsageError) {
      process.stderr.write(`shoal daemon: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (parsed.help) {
    process.stdout.write(DAEMON_HELP);
    return 0;
  }
  const opts = parsed.options;
  // Synchronous stdout: log lines are never lost on exit, and a daemon's log rate is modest
  // (per-query events are errors only).
  const logger = pino(
    { level: opts.logLevel, base: { pid: process.pid, component: 'shoald' }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ dest: 1, sync: true }),
  );
  const daemon = new Daemon(opts, logger);
  try {
    await daemon.start();
  } catch (err) {
    logger.fatal({ event: 'daemon_start_failed', err }, (err as Error).message);
    process.stderr.write(`shoal daemon: ${(err as Error).message}\n`);
    return 1;
  }
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      daemon.stop(signal).then(
        () => resolve(0),
        (err: unknown) => {
          logger.error({ event: 'daemon_stop_failed', err }, (err as Error).message);
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => void daemon.reload('SIGHUP'));
  });
}
