// Mutated CNI invocations for the `configs` campaign: one mutation class per case applied to a
// valid base, so each case has an expected CNI code (or a small set of them).
//
// Safety: values that name host paths or links are never mutated into other usable strings
// (a fuzzed `stateDir: "/"` would write /shoal.db, a fuzzed `master` could name eth0); they only
// become wrong types or names that cannot exist. Netns paths are never namespaces.

const SEPARATORS = ['/', '\\', ';', ':', ',', ' ', '\n', '\t', '\0', '..', '=', '"', "'", '$(', '`', '*', '%2f'];
const ODD_IFNAMES = ['', '.', '..', 'a/b', 'eth 0', 'eth0\n', 'x'.repeat(16), 'é'.repeat(8), 'eth:0', 'a\tb', 'lo\0'];
const HUGE = [2 ** 53, 2 ** 64, -(2 ** 63), 1e308, -1, 0, 0.5, -0.0, 4294967296, 65536, 1e21];
/** Fields that name paths or host links: only ever mutated to wrong types (see above). */
const GUARDED = new Set(['stateDir', 'dataDir', 'logFile', 'master', 'bridge', 'underlayInterface', 'socketPath', 'name', 'type']);

export const CLASSES = ['bytes', 'truncated', 'version', 'ifname', 'containerId', 'netns', 'huge', 'nesting', 'types', 'unknownKeys', 'cniArgs', 'dropKey'];

/** Expected CNI codes per class (0 = success; the campaign then DELs what ADD made). */
export const EXPECTED = {
  bytes: [6],
  truncated: [6],
  version: [1],
  ifname: [4],
  containerId: [4],
  cniArgs: [2, 4],
  // The rest change values the plugin validates: a config error, or success/netns refusal when
  // the change happened to be acceptable.
  netns: [0, 3, 4, 7],
  huge: [0, 1, 2, 3, 7],
  nesting: [0, 1, 3, 6, 7],
  types: [0, 1, 2, 3, 7],
  unknownKeys: [0, 1, 2, 3, 7],
  dropKey: [0, 1, 3, 4, 7],
};

function walk(obj, visit, at = []) {
  if (obj && typeof obj === 'object') for (const k of Object.keys(obj)) {
    visit(obj, k, [...at, k]);
    walk(obj[k], visit, [...at, k]);
  }
}

function paths(obj) {
  const out = [];
  walk(obj, (parent, key) => out.push([parent, key]));
  return out;
}

function randomValue(r, depth = 0) {
  switch (r.int(depth > 2 ? 6 : 8)) {
    case 0: return r.pick(HUGE);
    case 1: return null;
    case 2: return r.next() < 0.5;
    case 3: return r.bytes(r.int(20)).toString('latin1');
    case 4: return '';
    case 5: return r.pick(SEPARATORS).repeat(1 + r.int(3));
    case 6: return Array.from({ length: r.int(4) }, () => randomValue(r, depth + 1));
    default: return Object.fromEntries(Array.from({ length: r.int(4) }, (_, i) => [`k${i}`, randomValue(r, depth + 1)]));
  }
}

/** A value that is not a string (for guarded fields). */
function nonString(r) {
  return r.pick([0, -1, 2 ** 64, true, null, [], {}, ['a'], { a: 1 }]);
}

/**
 * One case: { cls, env, stdin } from a base { env, config } (env holds CNI_* for the verb).
 * `netnsPaths` are paths that exist but are not namespaces (plus missing ones).
 */
export function mutate(r, base, netnsPaths) {
  const cls = r.pick(CLASSES);
  const env = { ...base.env };
  const config = structuredClone(base.config);
  let stdin;
  switch (cls) {
    case 'bytes':
      stdin = r.bytes(1 + r.int(200)).toString('latin1');
      // Random bytes that happen to be a JSON object are not this class's concern.
      if (/^\s*\{/.test(stdin)) stdin = `\u0001${stdin}`;
      break;
    case 'truncated': {
      const text = JSON.stringify(config);
      stdin = text.slice(0, r.int(text.length - 1));
      break;
    }
    case 'version':
      config.cniVersion = r.pick(['0.1.0', '0.2.0', '2.0.0', '1.1', '1.0.0 ', 'v1.0.0', '99.99.99', '1.0.0\u0000', '']);
      break;
    case 'ifname':
      env.CNI_IFNAME = r.pick(ODD_IFNAMES);
      break;
    case 'containerId':
      env.CNI_CONTAINERID = r.pick(['', '-x', '.x', `c${r.pick(SEPARATORS.filter((x) => x !== '..'))}d`, `${r.pick(SEPARATORS)}`, 'é', 'a b']);
      break;
    case 'cniArgs':
      env.CNI_ARGS = r.pick(['NOPE=1', 'a', '=', 'K8S_POD_NAME', ';;;NOPE=x', 'X=1;IgnoreUnknown=0']);
      break;
    case 'netns':
      env.CNI_NETNS = r.pick(netnsPaths);
      break;
    case 'huge':
    case 'types':
    case 'nesting':
    case 'dropKey': {
      const all = paths(config).filter(([, k]) => k !== 'cniVersion' || cls !== 'dropKey');
      const [parent, key] = r.pick(all);
      if (cls === 'dropKey') {
        // Guarded keys are never dropped: a missing `master` means the default route's link.
        if (!GUARDED.has(key)) delete parent[key];
      } else if (cls === 'huge') parent[key] = r.pick(HUGE);
      else if (cls === 'nesting') {
        // Written as text: JSON.stringify itself overflows the stack on 100,000 levels.
        const n = r.pick([10, 1000, 100000]);
        const [open, close] = r.next() < 0.5 ? ['[', ']'] : ['{"a":', '}'];
        parent[key] = '\u0000DEEP';
        stdin = JSON.stringify(config).replace('"\\u0000DEEP"', `${open.repeat(n)}1${close.repeat(n)}`);
      }
      else parent[key] = GUARDED.has(key) ? nonString(r) : randomValue(r);
      break;
    }
    case 'unknownKeys': {
      const targets = [config, ...paths(config).map(([p, k]) => p[k]).filter((v) => v && typeof v === 'object' && !Array.isArray(v))];
      const target = r.pick(targets);
      for (let i = 0; i < 1 + r.int(3); i++) {
        const key = r.pick(['__proto__', 'constructor', 'toString', 'x', 'ranges', 'prevResult', 'runtimeConfig', 'capabilities', 'args', 'cni.dev/valid-attachments', 'ipam', 'portMappings', 'aliases']);
        // Own property even for __proto__ (what JSON.parse produces from the wire).
        Object.defineProperty(target, key, { value: randomValue(r), enumerable: true, configurable: true, writable: true });
      }
      break;
    }
  }
  const what = cls === 'ifname' ? JSON.stringify(env.CNI_IFNAME) : cls === 'containerId' ? JSON.stringify(env.CNI_CONTAINERID) : cls === 'netns' ? JSON.stringify(env.CNI_NETNS) : '';
  return { cls, what, env, stdin: stdin ?? JSON.stringify(config) };
}
