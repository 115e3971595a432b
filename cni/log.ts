/**
 * Plugin logging: JSON lines (pino) on stderr, and also in a file when the network config names
 * one. stdout is the protocol channel and never gets a log line.
 *
 * Config keys (top level of the plugin's network config):
 *   "logLevel": "error" | "warn" | "info" | "debug" | "trace" | "silent"   (default "warn")
 *   "logFile":  "/var/log/shoal/cni.log"   (appended to; its directory is created)
 *
 * pino costs start-up time, so it is imported only when the first record at or above the level
 * arrives; records wait in a queue until then, and the skel awaits flush() before exiting.
 * The file destination is synchronous so nothing is lost when the process exits right after.
 */
import { createRequire } from 'node:module';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
const RANK: Record<LogLevel, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };

type LogMethod = (obj: Record<string, unknown> | string, msg?: string) => void;

export interface CniLogger {
  error: LogMethod;
  warn: LogMethod;
  info: LogMethod;
  debug: LogMethod;
  /** Child logger with extra fields on every record (same destinations). */
  child(bindings: Record<string, unknown>): CniLogger;
  /** Waits until every queued record is written. */
  flush(): Promise<void>;
}

export interface LogSink {
  write(text: string): unknown;
}

export interface LoggerOptions {
  level?: string | undefined;
  file?: string | undefined;
  stderr: LogSink;
  bindings?: Record<string, unknown>;
}

interface QueuedRecord {
  level: 'error' | 'warn' | 'info' | 'debug';
  bindings: Record<string, unknown>;
  obj: Record<string, unknown> | string;
  msg: string | undefined;
}

export function isLogLevel(value: unknown): value is LogLevel {
  return typeof value === 'string' && (LOG_LEVELS as readonly string[]).includes(value);
}

export function createLogger(options: LoggerOptions): CniLogger {
  const level: LogLevel = isLogLevel(options.level) ? options.level : 'warn';
  const threshold = RANK[level];
  const queue: QueuedRecord[] = [];
  let pinoLogger: Promise<PinoLike> | undefined;
  let draining: Promise<void> = Promise.resolve();

  const drain = (): void => {
    pinoLogger ??= loadPino(level, options);
    draining = draining.then(async () => {
      const root = await pinoLogger!;
      for (let record = queue.shift(); record; record = queue.shift()) {
        const target = Object.keys(record.bindings).length > 0 ? root.child(record.bindings) : root;
        if (typeof record.obj === 'string') target[record.level](record.obj);
        else target[record.level](record.obj, record.msg);
      }
    });
  };

  const make = (bindings: Record<string, unknown>): CniLogger => {
    const method =
      (lvl: QueuedRecord['level']): LogMethod =>
      (obj, msg) => {
        if (RANK[lvl] < threshold) return;
        queue.push({ level: lvl, bindings, obj, msg });
        drain();
      };
    return {
      error: method('error'),
      warn: method('warn'),
      info: method('info'),
      debug: method('debug'),
      child: (extra) => make({ ...bindings, ...extra }),
      flush: async () => {
        // A failing logger must never turn a good answer into a crash.
        await draining.catch((err: unknown) => {
          options.stderr.write(`shoal: logging failed: ${err instanceof Error ? err.message : String(err)}\n`);
        });
      },
    };
  };
  return make(options.bindings ?? {});
}

interface PinoLike {
  error(obj: unknown, msg?: string): void;
  warn(obj: unknown, msg?: string): void;
  info(obj: unknown, msg?: string): void;
  debug(obj: unknown, msg?: string): void;
  child(bindings: Record<string, unknown>): PinoLike;
}

async function loadPino(level: LogLevel, options: LoggerOptions): Promise<PinoLike> {
  // require, not import(): the plugin launcher runs bundles through vm.Script with a V8 code
  // cache, and Node 20 loses the dynamic-import hook of a script restored from one, so a bundle
  // must not import() anything it does not contain (test 002 checks the bundles for it).
  const mod = createRequire(import.meta.url)('pino') as { default?: PinoModule } & PinoModule;
  const pino: PinoModule = mod.default ?? mod;
  const streams: { level: string; stream: LogSink }[] = [{ level, stream: options.stderr }];
  if (options.file) {
    try {
      streams.push({ level, stream: pino.destination({ dest: options.file, sync: true, append: true, mkdir: true }) });
    } catch (err) {
      options.stderr.write(
        `shoal: cannot open log file ${JSON.stringify(options.file)}: ${err instanceof Error ? err.message : String(err)}\n`,
      );
    }
  }
  return pino({ level, base: { pid: process.pid } }, pino.multistream(streams));
}

interface PinoModule {
  (options: Record<string, unknown>, stream: unknown): PinoLike;
  destination(options: Record<string, unknown>): LogSink;
  multistream(streams: { level: string; stream: LogSink }[]): unknown;
}
