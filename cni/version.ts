/**
 * CNI spec versions: which ones we speak, which one a config asks for, and which verbs each
 * allows. Loaded on every invocation (VERSION included), so it depends on nothing.
 */
import { CniCode, CniError } from './errors.js';

export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
export const LATEST_VERSION: CniVersion = '1.1.0';

export interface VersionInfo {
  supportedVersions: readonly string[];
}

/** The VERSION answer, in `requested` when we speak it, else in the newest version we speak. */
export function versionReply(info: VersionInfo, requested?: unknown): { cniVersion: string; supportedVersions: string[] } {
  const cniVersion =
    typeof requested === 'string' && info.supportedVersions.includes(requested) ? requested : newest(info.supportedVersions);
  return { cniVersion, supportedVersions: [...info.supportedVersions] };
}

/** Compares dotted numeric versions ("0.3.1" < "0.4.0" < "1.1.0"); a missing part counts as 0. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return 0;
}

export function atLeast(version: string, minimum: string): boolean {
  return compareVersions(version, minimum) >= 0;
}

function newest(versions: readonly string[]): string {
  return [...versions].sort(compareVersions).at(-1) ?? LATEST_VERSION;
}

/**
 * The version this invocation speaks, from a decoded config.
 *
 * `cniVersion` wins when we support it: the runtime chose it (libcni resolves a list's
 * `cniVersions` and injects the pick as each plugin's `cniVersion`), and it will parse our
 * result in that version. When `cniVersion` is missing or one we do not speak, a `cniVersions`
 * list is honoured as the spec's version negotiation asks: the highest version in it that we
 * support. Otherwise: code 1, naming the version and what we support.
 */
export function selectVersion(config: Record<string, unknown>, info: VersionInfo): string {
  const { cniVersion, cniVersions } = config;
  if (typeof cniVersion === 'string' && info.supportedVersions.includes(cniVersion)) return cniVersion;
  if (Array.isArray(cniVersions)) {
    const usable = cniVersions.filter((v): v is string => typeof v === 'string' && info.supportedVersions.includes(v));
    if (usable.length > 0) return newest(usable);
  }
  throw incompatibleVersion(cniVersion, cniVersions, info);
}

function incompatibleVersion(cniVersion: unknown, cniVersions: unknown, info: VersionInfo): CniError {
  const supported = info.supportedVersions.join(', ');
  const asked =
    cniVersion === undefined
      ? 'the network config has no "cniVersion" (the spec reads that as 0.1.0)'
      : `the network config asks for cniVersion ${JSON.stringify(cniVersion)}`;
  const list = Array.isArray(cniVersions) ? ` and cniVersions ${JSON.stringify(cniVersions)}` : '';
  return new CniError(
    CniCode.IncompatibleVersion,
    `incompatible CNI version: ${asked}${list}; this plugin supports ${supported}`,
    `config cniVersion: ${cniVersion === undefined ? 'missing' : JSON.stringify(cniVersion)}; plugin supports [${supported}]`,
  );
}

/** The first spec version that has each verb; older configs get code 1 for it. */
const VERB_MINIMUM: Record<string, string> = { CHECK: '0.4.0', STATUS: '1.1.0', GC: '1.1.0' };

export function requireVerbAllowed(command: string, version: string): void {
  const minimum = VERB_MINIMUM[command];
  if (minimum !== undefined && !atLeast(version, minimum)) {
    throw new CniError(
      CniCode.IncompatibleVersion,
      `config version does not allow ${command}: ${command} needs cniVersion ${minimum} or later, the config has ${version}`,
    );
  }
}
