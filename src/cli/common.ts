/**
 * What the CLI commands share: argument parsing with one-line usage errors (exit 2), the state
 * and run directories, opening the store, and printing errors as one line.
 */
import * as path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { Store } from '../store/store.js';

/** Bad command line: printed as one line, exit status 2. */
export class UsageError extends Error {}

/** A failure the user can act on (unknown network, attached containers): one line, exit 1. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

export type Options = NonNullable<ParseArgsConfig['options']>;

/** node:util parseArgs, with its errors turned into UsageError. */
export function parse<O extends Options>(args: string[], options: O, allowPositionals = true) {
  try {
    return parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals, strict: true });
  } catch (err) {
    // node's messages run long ("... place it at the end of the command after '--' ..."): keep the first sentence.
    throw new UsageError((err as Error).message.split('\n')[0]!.replace(/\. To specify a positional.*$/, '').replace(/^Unknown option '([^']*)'$/, 'unknown option "$1"'));
  }
}

export function stateDir(): string {
  return path.resolve(process.env['SHOAL_STATE_DIR'] || '/var/lib/shoal');
}

export function runDir(): string {
  return path.resolve(process.env['SHOAL_RUN_DIR'] || '/run/shoal');
}

export async function openStore(): Promise<Store> {
  const { openStateStore } = await import('../store/open.js');
  return openStateStore(stateDir());
}

/**
 * Runs a command body and maps errors to exit codes: UsageError 2 (with a hint to --help),
 * CliError its own code, anything else 1, always one line on stderr.
 */
export async function guard(command: string, fn: () => Promise<number>): Promise<number> {
  try {
    return await fn();
  } catch (err) {
    const msg = (err instanceof Error ? err.message : String(err)).split('\n')[0];
    // Input errors from deeper layers (a bad port spec) carry exitCode 2 like a UsageError.
    const code = err instanceof UsageError ? 2 : typeof (err as { exitCode?: unknown })?.exitCode === 'number' ? (err as { exitCode: number }).exitCode : 1;
    if (code === 2) {
      process.stderr.write(`shoal ${command}: ${msg}; see "shoal ${command} --help"\n`);
      return 2;
    }
    process.stderr.write(`shoal ${command}: ${msg}\n`);
    return code;
  }
}

/** Collects repeatable string options (parseArgs `multiple: true`) as a plain array. */
export function many(v: unknown): string[] {
  return Array.isArray(v) ? (v as string[]) : typeof v === 'string' ? [v] : [];
}

/** K=V pairs (--opt, -e); a pair without "=" is a usage error naming the flag. */
export function keyValues(flag: string, pairs: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of pairs) {
    const i = p.indexOf('=');
    if (i <= 0) throw new UsageError(`invalid ${flag} "${p}": expected KEY=VALUE`);
    out[p.slice(0, i)] = p.slice(i + 1);
  }
  return out;
}

/** Fixed-width table, docker style (two spaces between columns). */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('   ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}
