/**
 * The host's resolv.conf nameservers, re-read when the file changes. A change is noticed on use:
 * at most once per `checkIntervalMs` a query triggers an async stat, and a changed mtime, size or
 * inode reloads the list (no timer keeps the process alive; nothing blocks the hot path).
 */
import { readFileSync, statSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';

export function parseResolvConf(text: string): string[] {
  const out: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const m = /^nameserver\s+(\S+)/.exec(line);
    if (m) out.push(m[1] as string);
  }
  return out;
}

export interface ResolvConfOptions {
  path?: string;
  checkIntervalMs?: number;
  now?: () => number;
  onChange?: (nameservers: string[]) => void;
}

export class ResolvConf {
  readonly path: string;
  private servers: string[] = [];
  private signature = '';
  private lastCheck = 0;
  private checking = false;
  private readonly interval: number;
  private readonly now: () => number;
  private readonly onChange: ((nameservers: string[]) => void) | undefined;

  constructor(options: ResolvConfOptions = {}) {
    this.path = options.path ?? '/etc/resolv.conf';
    this.interval = options.checkIntervalMs ?? 2000;
    this.now = options.now ?? Date.now;
    this.onChange = options.onChange;
    try {
      const st = statSync(this.path);
      this.signature = `${st.mtimeMs}:${st.size}:${st.ino}`;
      this.servers = parseResolvConf(readFileSync(this.path, 'utf8'));
    } catch {
      this.servers = [];
    }
    this.lastCheck = this.now();
  }

  /** Current nameservers; may schedule a background re-check. */
  nameservers(): string[] {
    if (!this.checking && this.now() - this.lastCheck >= this.interval) void this.refresh();
    return this.servers;
  }

  /** Re-reads the file if it changed; resolves when done (tests await it). */
  async refresh(): Promise<void> {
    this.checking = true;
    this.lastCheck = this.now();
    try {
      const st = await stat(this.path);
      const sig = `${st.mtimeMs}:${st.size}:${st.ino}`;
      if (sig !== this.signature) {
        this.signature = sig;
        this.servers = parseResolvConf(await readFile(this.path, 'utf8'));
        this.onChange?.(this.servers);
      }
    } catch {
      if (this.signature !== 'missing') {
        this.signature = 'missing';
        this.servers = [];
        this.onChange?.(this.servers);
      }
    } finally {
      this.checking = false;
    }
  }
}
