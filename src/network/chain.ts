/**
 * A libcni-like runner for a conflist: ADD through every plugin in order (each one's result is
 * the next one's prevResult), DEL in reverse, CHECK and GC, executing the plugins from the
 * plugin dir (dist/cni) with CNI_PATH pointing there, in the conflist's cniVersion. As libcni
 * does, `runtimeConfig` carries only the capabilities a plugin declares (portMappings,
 * aliases), and the final ADD result is cached (cache.ts) for DEL and CHECK.
 *
 * Unlike libcni, a failed ADD is cleaned up here (DEL of the whole list with the same
 * arguments, as podman does right after), so a caller never has to.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { chainAdd, chainCheck, chainDel, chainGc, throwFirst, type ChainLink } from '../../cni/chain.js';
import { CniError } from '../../cni/errors.js';
import { decodeOutcome, execPlugin, reportedError } from '../../cni/run.js';
import { ShoalError } from '../errors.js';
import type { Conflist } from './conflist.js';
import { readCached, removeCached, writeCached, type CachedAttachment } from './cache.js';

export interface Attachment {
  containerId: string;
  /** Path of the network namespace (CNI_NETNS); may be gone for DEL. */
  netns: string;
  ifname: string;
  /** CNI_ARGS pairs; podman sends IgnoreUnknown=1 and K8S_POD_NAME=<name>. */
  args?: Array<[string, string]>;
  /** runtimeConfig values by capability name (portMappings, aliases, ...). */
  capabilityArgs?: Record<string, unknown>;
  /** GC only: the attachments the plugins must keep. */
  valid?: Array<{ containerID: string; ifname: string }>;
}

export class ChainError extends ShoalError {
  constructor(message: string, readonly cniCode?: number) {
    super('ECNICHAIN', message);
  }
}

export interface ChainOptions {
  /** Where plugin executables live (CNI_PATH). */
  pluginDir: string;
  /** Where the result cache lives (`<stateDir>/cni-results`). */
  stateDir: string;
  /** Per-plugin timeout. */
  timeoutMs?: number;
}

/** dist/cni beside the running CLI bundle (dist/bin/shoal), unless CNI_PATH says otherwise. */
export function defaultPluginDir(): string {
  const fromEnv = process.env['CNI_PATH']?.split(':').find((d) => d !== '');
  if (fromEnv) return fromEnv;
  return path.resolve(path.dirname(process.argv[1] ?? '.'), '..', 'cni');
}

/** The config one plugin sees: its own section plus name, cniVersion, runtimeConfig, prevResult. */
export function pluginConfig(list: Conflist, index: number, att: Attachment, prevResult?: unknown): Record<string, unknown> {
  const plugin = list.plugins[index]!;
  const conf: Record<string, unknown> = { ...plugin, cniVersion: list.cniVersion, name: list.name };
  const caps = (plugin['capabilities'] ?? {}) as Record<string, boolean>;
  const rc: Record<string, unknown> = {};
  for (const [cap, value] of Object.entries(att.capabilityArgs ?? {})) if (caps[cap]) rc[cap] = value;
  if (Object.keys(rc).length) conf['runtimeConfig'] = rc;
  else delete conf['runtimeConfig'];
  if (prevResult !== undefined) conf['prevResult'] = prevResult;
  return conf;
}

/** Runs one plugin verb; returns its parsed stdout (undefined when empty), or throws ChainError. */
export async function invokePlugin(opts: ChainOptions, command: string, conf: Record<string, unknown>, att: Attachment): Promise<Record<string, unknown> | undefined> {
  const type = String(conf['type']);
  const file = path.join(opts.pluginDir, type);
  const what = `${type} ${command} for "${conf['name']}"`;
  if (!fs.existsSync(file)) throw new ChainError(`failed to run ${what}: plugin "${type}" not found in ${opts.pluginDir}`);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CNI_COMMAND: command,
    CNI_CONTAINERID: att.containerId,
    CNI_NETNS: att.netns,
    CNI_IFNAME: att.ifname,
    CNI_ARGS: (att.args ?? []).map(([k, v]) => `${k}=${v}`).join(';'),
    CNI_PATH: opts.pluginDir,
  };
  if (command === 'GC' || command === 'STATUS') {
    delete env['CNI_CONTAINERID'];
    delete env['CNI_NETNS'];
    delete env['CNI_IFNAME'];
  }
  // The plugin's stderr is kept for the message when it fails without a CNI error.
  let stderr = '';
  const run = await execPlugin(file, env, JSON.stringify(conf), { stderr: { write: (t: string) => (stderr += t) }, timeoutMs: opts.timeoutMs ?? 60_000 });
  if (run.exitCode !== 0) {
    const own = reportedError(run);
    if (own) throw new ChainError(`failed to run ${what}: ${own.message} (CNI error ${own.cniCode})`, own.cniCode);
    throw new ChainError(`failed to run ${what}: ${stderr.trim().split('\n').pop() || `exit status ${run.exitCode}`}`);
  }
  try {
    return decodeOutcome(`plugin ${type}`, run);
  } catch (err) {
    throw new ChainError(`failed to run ${what}: ${(err as Error).message}`);
  }
}

/** The list's plugins as chain links (cni/chain.ts), each one executed with its own config. */
function links(opts: ChainOptions, list: Conflist, att: Attachment): Array<ChainLink<Record<string, unknown>>> {
  return list.plugins.map((plugin, i) => ({
    name: String(plugin['type']),
    run: (verb, prevResult) => {
      const conf = pluginConfig(list, i, att, prevResult);
      // GC is sent as 1.1.0 (its minimum) whatever the conflist says: our plugins speak it, and
      // the conflist's version exists for older runtimes.
      const sent = verb === 'GC' ? { ...conf, cniVersion: '1.1.0', 'cni.dev/valid-attachments': att.valid ?? [] } : conf;
      return invokePlugin(opts, verb, sent, att);
    },
  }));
}

/**
 * ADD through the whole list. On failure every plugin gets DEL (reverse order, errors ignored:
 * the ADD's error is the one to report) and nothing is cached.
 */
export async function addNetworkList(opts: ChainOptions, list: Conflist, att: Attachment): Promise<Record<string, unknown>> {
  let prev: Record<string, unknown> | undefined;
  try {
    prev = await chainAdd(links(opts, list, att), undefined);
  } catch (err) {
    await delNetworkList(opts, list, att, undefined).catch(() => undefined);
    throw err instanceof CniError ? new ChainError(`failed to run ADD for "${list.name}": ${err.message}`, err.cniCode) : err;
  }
  const entry: CachedAttachment = {
    kind: 'cniCacheV1',
    containerId: att.containerId,
    ifName: att.ifname,
    networkName: list.name,
    netns: att.netns,
    config: JSON.stringify(list),
    cniArgs: att.args ?? [],
    capabilityArgs: att.capabilityArgs ?? {},
    result: prev!,
  };
  writeCached(opts.stateDir, entry);
  return prev!;
}

/**
 * DEL in reverse order with the cached result as prevResult. Every plugin runs even when an
 * earlier one failed (cleanup should go as far as it can); the first error is thrown at the end.
 * The cache entry goes once every plugin succeeded.
 */
export async function delNetworkList(opts: ChainOptions, list: Conflist, att: Attachment, prevResult: Record<string, unknown> | undefined): Promise<void> {
  throwFirst(await chainDel(links(opts, list, att), prevResult));
  removeCached(opts.stateDir, list.name, att.containerId, att.ifname);
}

/**
 * DEL of a cached attachment, using the conflist and arguments ADD ran with. `fallback` is asked
 * only when nothing is cached (so a conflist that cannot be loaded fails only that case).
 */
export async function delCached(opts: ChainOptions, network: string, containerId: string, ifname: string, fallback?: () => { list: Conflist; att: Attachment }): Promise<void> {
  const cached = readCached(opts.stateDir, network, containerId, ifname);
  if (cached) {
    const list = JSON.parse(cached.config) as Conflist;
    const att: Attachment = { containerId, ifname, netns: cached.netns, args: cached.cniArgs, capabilityArgs: cached.capabilityArgs };
    return delNetworkList(opts, list, att, cached.result);
  }
  if (fallback) {
    const { list, att } = fallback();
    return delNetworkList(opts, list, att, undefined);
  }
  throw new ChainError(`failed to delete attachment "${network}/${containerId}/${ifname}": no cached result`);
}

/** CHECK of every plugin against the cached result (libcni refuses CHECK without one too). */
export async function checkNetworkList(opts: ChainOptions, network: string, containerId: string, ifname: string): Promise<void> {
  const cached = readCached(opts.stateDir, network, containerId, ifname);
  if (!cached) throw new ChainError(`failed to check attachment "${network}/${containerId}/${ifname}": no cached result`);
  const list = JSON.parse(cached.config) as Conflist;
  const att: Attachment = { containerId, ifname, netns: cached.netns, args: cached.cniArgs, capabilityArgs: cached.capabilityArgs };
  await chainCheck(links(opts, list, att), cached.result);
}

/**
 * GC of every plugin of the list: the plugins drop whatever belongs to attachments not in
 * `valid`. Sent as cniVersion 1.1.0 (GC's minimum) whatever the conflist says: our plugins
 * speak it, and the conflist's version exists for older runtimes.
 */
export async function gcNetworkList(opts: ChainOptions, list: Conflist, valid: Array<{ containerID: string; ifname: string }>): Promise<void> {
  throwFirst(await chainGc(links(opts, list, { containerId: '', netns: '', ifname: '', valid })));
}
