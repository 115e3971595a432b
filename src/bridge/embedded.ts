/**
 * shoal-portmap and shoal-dns run inside shoal-bridge (issue 7, "Speed"): a chained plugin is a
 * separate executable, so the conflist bridge -> portmap -> dns costs three Node start-ups per
 * ADD and three per DEL (DESIGN §6: start-up is the floor, ~60-110 ms each). With the opt-in
 * sections `portmap` and `discovery` in the bridge's config, the bridge calls those plugins'
 * own verb functions in this process instead, exactly as a runtime would chain them: same
 * order, the bridge's result as `prevResult`, the same CNI_ARGS, runtimeConfig and stateDir.
 * The standalone executables are unchanged and use the very same functions.
 *
 * Each embedded plugin sees a config built from the bridge's base fields (cniVersion, name,
 * stateDir, runtimeConfig, args, GC's attachment lists) plus its section's fields, with
 * `type` set to its own type name. Base fields win over a section's, so a section cannot
 * rename the network or point at another store than the bridge's.
 *
 * The plugin modules are imported only when a section is present: a bridge without them (and
 * every VERSION call) loads none of their code.
 */
import { existsSync } from 'node:fs';
import { CniCode, CniError } from '../../cni/errors.js';
import { chainAdd, chainCheck, chainDel, chainGc, throwFirst, type ChainLink } from '../../cni/chain.js';
import type { UndoStack } from '../../cni/invoke.js';
import { callVerb } from '../../cni/run.js';
import type { NetConf } from '../../cni/config.js';
import type { CniPlugin, CniRequest } from '../../cni/skel.js';
import type { CniResult } from '../../cni/types.js';

interface Step {
  /** The config key holding the step's options in the bridge's config. */
  section: 'portmap' | 'discovery';
  /** The type name of the standalone executable (its config's `type`, logs). */
  type: string;
  /** The plugin's verb functions (src/portmap/plugin.ts, src/dns/registry-plugin.ts). */
  load(): Promise<CniPlugin>;
  /** DEL has provably nothing to remove: skip loading and running the plugin. */
  nothingToDelete?(sub: CniRequest): Promise<boolean>;
}

/**
 * shoal-portmap's DEL reads both NAT tables (two `nft` runs, ~40 ms measured here) even when ADD
 * published nothing, which is the common case (a container without -p). Two independent signs
 * say ADD published nothing: the DEL's runtimeConfig has no port mappings (runtimes send DEL the
 * ADD's runtimeConfig; libcni from its cache) and there is no portmap record for the
 * attachment (ADD writes one whenever it publishes, right after its rules). An ADD that died
 * between its rules and its record was given mappings, so the runtime's DEL has them and takes
 * the full path. Anything left otherwise is GC's, as for the standalone plugin.
 */
async function portmapHasNothing(sub: CniRequest): Promise<boolean> {
  const mappings = sub.config.runtimeConfig?.['portMappings'];
  if (Array.isArray(mappings) && mappings.length > 0) return false;
  if (mappings !== undefined && !Array.isArray(mappings)) return false;
  const { portmapDir, recordFile } = await import('../portmap/state.js');
  const dir = portmapDir(sub.config.stateDir, sub.env as NodeJS.ProcessEnv);
  return !existsSync(recordFile(dir, { network: sub.config.name, containerId: sub.containerId, ifname: sub.ifname }));
}

/** Chain order: ports first, then DNS (dns's result merge is the last word, as in the conflist). */
const STEPS: readonly Step[] = [
  { section: 'portmap', type: 'shoal-portmap', load: () => import('../portmap/plugin.js'), nothingToDelete: portmapHasNothing },
  { section: 'discovery', type: 'shoal-dns', load: () => import('../dns/registry-plugin.js') },
];

export type Sections = Partial<Record<Step['section'], Record<string, unknown> | undefined>>;

/** Base fields an embedded plugin gets from the bridge's config (never from a section). */
const BASE_KEYS = ['cniVersion', 'name', 'stateDir', 'runtimeConfig', 'args', 'logLevel', 'cni.dev/valid-attachments', 'cni.dev/attachments'] as const;

function stepsOf(sections: Sections): Array<{ step: Step; options: Record<string, unknown> }> {
  return STEPS.flatMap((step) => {
    const options = sections[step.section];
    return options ? [{ step, options }] : [];
  });
}

export function hasEmbedded(sections: Sections): boolean {
  return STEPS.some((s) => sections[s.section] !== undefined);
}

/** The request the embedded plugin sees: what a runtime chaining it would have sent. */
function subRequest(req: CniRequest, step: Step, options: Record<string, unknown>, prevResult: CniResult | undefined): CniRequest {
  const config: Record<string, unknown> = { ...options };
  const source = req.config as Record<string, unknown>;
  for (const key of BASE_KEYS) {
    if (source[key] !== undefined) config[key] = source[key];
    else delete config[key];
  }
  config['type'] = step.type;
  const sub: CniRequest = { ...req, config: config as NetConf, stdin: JSON.stringify(config), log: req.log.child({ embedded: step.type }) };
  if (prevResult) sub.prevResult = prevResult;
  else delete sub.prevResult;
  return sub;
}

/**
 * The embedded plugin validates its own fields and names them without the section
 * (`field "domainName"`); the user wrote them inside it, so say `field "discovery.domainName"`.
 */
function qualified(err: unknown, step: Step, options: Record<string, unknown>): unknown {
  if (!(err instanceof CniError) || err.cniCode !== CniCode.InvalidNetworkConfig) return err;
  const m = /^invalid network config: field "([A-Za-z_$][\w$]*)/.exec(err.message);
  if (!m?.[1] || !Object.hasOwn(options, m[1])) return err;
  const msg = err.message.replace(`field "${m[1]}`, `field "${step.section}.${m[1]}`);
  return new CniError(err.cniCode, msg, err.details, { cause: err });
}

/**
 * The chain of embedded steps for `req`: each link calls its plugin's verb function in this
 * process (cni/run.ts) with the request a runtime chaining it would send.
 */
function links(req: CniRequest, sections: Sections): Array<ChainLink<CniResult>> {
  return stepsOf(sections).map(({ step, options }) => ({
    name: step.type,
    run: async (verb, prevResult) => {
      const sub = { ...subRequest(req, step, options, prevResult), command: verb };
      try {
        return await callVerb(await step.load(), sub);
      } catch (err) {
        throw qualified(err, step, options);
      }
    },
    nothingToDelete: step.nothingToDelete && ((prevResult) => step.nothingToDelete!(subRequest(req, step, options, prevResult))),
  }));
}

/**
 * ADD of each embedded step after the bridge's own, inside the bridge's rollback: a step that
 * fails undoes itself (the plugins roll back their own partial work), and the bridge's undo
 * stack then removes the earlier steps, the veth, the rules and the IPAM allocation.
 */
export async function addEmbedded(req: CniRequest, sections: Sections, bridgeResult: CniResult, undo: UndoStack): Promise<CniResult> {
  const result = await chainAdd(links(req, sections), bridgeResult, (link, added) => undo.push(`${link.name} DEL`, () => link.run('DEL', added)));
  return result ?? bridgeResult;
}

/**
 * DEL in reverse chain order (dns, portmap); the bridge's own DEL follows. Every step runs even
 * when one fails (cleanup goes as far as it can); errors are returned for the caller to raise
 * after its own DEL. Both plugins treat "already gone" as success.
 */
export function delEmbedded(req: CniRequest, sections: Sections): Promise<unknown[]> {
  return chainDel(links(req, sections), req.prevResult);
}

/** CHECK in chain order against the runtime's prevResult (the final result of the chain). */
export function checkEmbedded(req: CniRequest, sections: Sections): Promise<void> {
  return chainCheck(links(req, sections), req.prevResult);
}

/** GC in chain order; every step runs, the first error is raised at the end. */
export async function gcEmbedded(req: CniRequest, sections: Sections): Promise<void> {
  throwFirst(await chainGc(links(req, sections)));
}

