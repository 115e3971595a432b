/**
 * `shoal gc`: cleans up after sandboxes whose supervisor died (kill -9) and attachments whose
 * namespace is gone, then runs CNI GC for every network with the attachments still alive as the
 * valid set, so each plugin drops whatever else it still holds (rules, allocations, records).
 * Attachments made by other runtimes (podman) are always in the valid set: not ours to judge.
 */
import { guard, parse, UsageError, openStore, stateDir } from './common.js';

const HELP = `Usage: shoal gc

Remove what dead sandboxes and vanished namespaces left behind (network attachments, port
mappings, DNS records, address allocations, namespaces), exited detached sandboxes, and run
CNI GC on every network against the attachments that are still alive.
`;

async function gc(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {});
  if (values.help) return void process.stdout.write(HELP), 0;
  if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  const { warmThreadpool, netnsExists } = await import('../kernel/netns.js');
  await warmThreadpool();
  const { listSandboxes, isAlive, sandboxKey } = await import('../network/sandboxes.js');
  const { teardownSandbox } = await import('../network/sandbox-teardown.js');
  const { defaultPluginDir, delCached, gcNetworkList } = await import('../network/chain.js');
  const { listCached } = await import('../network/cache.js');
  const { listNetworks } = await import('../network/model.js');
  const { listAttachments, attachmentProblems } = await import('../network/attachments.js');
  const { loadConflist } = await import('../network/manage.js');
  const store = await openStore();
  const opts = { pluginDir: defaultPluginDir(), stateDir: stateDir() };
  const problems: string[] = [];
  const live = new Set<string>();
  const known = new Set<string>();
  for (const rec of await listSandboxes(store)) {
    known.add(rec.id);
    if (isAlive(rec)) {
      live.add(rec.id);
      continue;
    }
    if (rec.status !== 'exited') problems.push(...(await teardownSandbox(store, opts, rec)));
    await store.delete(sandboxKey(rec.id));
    if (rec.logFile) (await import('node:fs')).rmSync(rec.logFile, { force: true });
    process.stdout.write(`removed sandbox ${rec.name} (${rec.id.slice(0, 12)})\n`);
  }
  for (const c of listCached(opts.stateDir)) {
    const valid = live.has(c.containerId) || (!known.has(c.containerId) && c.netns !== '' && netnsExists(c.netns));
    if (valid) continue;
    try {
      await delCached(opts, c.networkName, c.containerId, c.ifName);
      process.stdout.write(`removed attachment ${c.networkName}/${c.containerId.slice(0, 12)}/${c.ifName}\n`);
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  for (const net of await listNetworks(store)) {
    const attached = await listAttachments(store, net);
    // An attachment whose record is unreadable stays valid (GC must not free what it cannot judge);
    // gc reports it and exits 1 so someone looks.
    problems.push(...attachmentProblems(net, attached));
    const valid = attached.map((a) => ({ containerID: a.containerId, ifname: a.ifname }));
    try {
      await gcNetworkList(opts, loadConflist(net), valid);
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  for (const p of problems) process.stderr.write(`shoal gc: ${p}\n`);
  return problems.length ? 1 : 0;
}

export async function run(args: string[]): Promise<number> {
  return guard('gc', () => gc(args));
}
