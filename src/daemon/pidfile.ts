/**
 * The pid file: one daemon per run dir. Taking it is an exclusive create; a file left by a dead
 * daemon (kill -9, power loss) is taken over, one held by a live process is a refusal.
 */
import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';
import { ShoalError } from '../errors.js';

export class PidFileError extends ShoalError {
  constructor(message: string, cause?: unknown) {
    super('EPIDFILE', message, { cause });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid recorded in `file` if that process is alive (and is not us), else undefined. */
export function livePidIn(file: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  const pid = Number(text.trim());
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return undefined;
  return alive(pid) ? pid : undefined;
}

export function acquirePidFile(file: string): void {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
  for (let attempt = 0; attempt < 3; attempt += 1) {
    let fd: number;
    try {
      fd = openSync(file, 'wx', 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new PidFileError(`failed to create pid file "${file}": ${(err as Error).message}`, err);
      const pid = livePidIn(file);
      if (pid !== undefined) throw new PidFileError(`failed to start "shoald": another daemon (pid ${pid}) holds the pid file "${file}"`);
      // Stale: its owner is gone. Remove and race for it again (another starter may win).
      try {
        unlinkSync(file);
      } catch {
        // someone else removed it first
      }
      continue;
    }
    try {
      writeSync(fd, `${process.pid}\n`);
    } finally {
      closeSync(fd);
    }
    return;
  }
  throw new PidFileError(`failed to create pid file "${file}": lost the race to another starter three times`);
}

/** Removes the file only if it still names this process. */
export function releasePidFile(file: string): void {
  try {
    if (Number(readFileSync(file, 'utf8').trim()) === process.pid) unlinkSync(file);
  } catch {
    // already gone
  }
}
