/**
 * Test-side bookkeeping for kernel objects (links, namespaces) and an independent way to read
 * them back: iproute2's `ip -j`, which tests (and only tests) may use as a second path.
 * Cleanup goes through `ip` too, so a bug in the code under test cannot also break teardown.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createNetns, deleteNetns, listNetns } from '../../src/kernel/netns.js';
import { testRunId, uniqueName } from './names.js';

/** `ip [-n netns] -j <args>` parsed as JSON. */
export function ipJson<T = unknown>(args: string[], netns?: string): T {
  const full = [...(netns ? ['-n', netns] : []), '-j', '-d', ...args];
  const out = execFileSync('ip', full, { encoding: 'utf8' });
  return JSON.parse(out || '[]') as T;
}

/** `ip [-n netns] <args>`; returns true on success, never throws. */
export function ipQuiet(args: string[], netns?: string): boolean {
  return spawnSync('ip', [...(netns ? ['-n', netns] : []), ...args], { stdio: 'ignore' }).status === 0;
}

export function hostLinkExists(name: string): boolean {
  return ipQuiet(['link', 'show', 'dev', name]);
}

/** Records what a test created and removes it all, whatever happened in the test. */
export class KernelObjects {
  private readonly links: { name: string; netns?: string }[] = [];
  private readonly namespaces: string[] = [];
  constructor(private readonly prefix: string) {}

  linkName(): string {
    const name = uniqueName(this.prefix);
    this.links.push({ name });
    return name;
  }

  /** Records a link name that lives (or will live) inside `netns` (a /run/netns name). */
  trackLink(name: string, netns?: string): string {
    this.links.push({ name, netns });
    return name;
  }

  /** Creates a named netns; returns its name and path. */
  netns(): { name: string; path: string } {
    const name = uniqueName(this.prefix);
    this.namespaces.push(name);
    return { name, path: createNetns(name) };
  }

  cleanup(): void {
    // Links first (explicitly, since deleting a netns tears its veths down asynchronously).
    for (const l of this.links.splice(0).reverse()) ipQuiet(['link', 'del', 'dev', l.name], l.netns);
    for (const n of this.namespaces.splice(0)) deleteNetns(n);
  }
}

/** Host links and namespaces whose names carry this run's id; empty after a clean suite. */
export function leftovers(prefix: string): string[] {
  const links = ipJson<{ ifname: string }[]>(['link', 'show']).map((l) => l.ifname);
  const mine = (n: string) => n.startsWith(`${prefix}${testRunId()}`);
  return [...links.filter(mine), ...listNetns().filter(mine)];
}

/** Waits (briefly) until `leftovers(prefix)` is empty: netns teardown is asynchronous. */
export async function waitNoLeftovers(prefix: string, ms = 3000): Promise<string[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const left = leftovers(prefix);
    if (left.length === 0 || Date.now() > deadline) return left;
    await new Promise((r) => setTimeout(r, 50));
  }
}
