// Shared by the torture campaigns: bounded knobs, a seeded generator, the figures table, an
// esbuild bundle of Shoal's own TypeScript (for in-process runs), and independent readers of
// what a run may leave behind (iproute2 and nft CLIs, never src/kernel).
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { randomBytes } from 'node:crypto';
import { DatabaseSync } from 'node:sqlite';
import { removeNewSkeletons, shoalTables } from '../../bench/lib/shoal-tables.mjs';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** A non-negative integer knob from the environment. */
export function knob(name, fallback) {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  if (!/^\d+$/.test(text)) throw new Error(`${name}="${text}" is not a non-negative integer`);
  return Number(text);
}

/** The run's seed (TORTURE_SEED to replay) and a mulberry32 generator, as test/helpers/random.ts. */
export function seeded(seed = knob('TORTURE_SEED', Math.floor(Math.random() * 2 ** 31))) {
  let a = seed >>> 0;
  const next32 = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  const next = () => next32() / 4294967296;
  return {
    seed,
    next,
    int: (n) => Math.floor(next() * n),
    pick: (xs) => xs[Math.floor(next() * xs.length)],
    bytes: (n) => Buffer.from(Array.from({ length: n }, () => next32() & 0xff)),
  };
}

/** A short tag unique to this run, for link, netns and network names (ifnames are 15 bytes). */
export const runTag = randomBytes(2).toString('hex');

/** Figures: rows of { campaign, tried, count, broke, note }; printed as one table. */
export class Figures {
  constructor(campaign) {
    this.campaign = campaign;
    this.rows = [];
    this.failures = [];
  }
  row(tried, count, broke, note = '') {
    this.rows.push({ tried, count, broke, note });
  }
  /** Records one breakage; identical texts are listed once with a count. */
  fail(what) {
    this.failures.push(what);
  }
  get broke() {
    return this.rows.reduce((n, r) => n + r.broke, 0);
  }
  print() {
    const head = ['campaign', 'tried', 'how many', 'broke', 'note'];
    const body = this.rows.map((r) => [this.campaign, r.tried, String(r.count), String(r.broke), r.note]);
    const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
    const line = (cells) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
    console.log(line(head));
    console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
    for (const b of body) console.log(line(b));
    const counts = new Map();
    for (const f of this.failures) counts.set(f, (counts.get(f) ?? 0) + 1);
    const distinct = [...counts].sort((a, b) => b[1] - a[1]);
    for (const [f, n] of distinct.slice(0, 40)) console.log(`  broke (${n}x): ${f.length > 400 ? `${f.slice(0, 400)}...` : f}`);
    if (distinct.length > 40) console.log(`  (${distinct.length - 40} more distinct breakages not listed)`);
    console.log(`TORTURE ${this.campaign} broke=${this.broke}`);
  }
}

/**
 * Bundles `contents` (TypeScript importing from the project root) to an ES module and imports
 * it: the campaigns run Shoal's code in-process through the same modules the executables use.
 */
export async function bundle(name, contents) {
  const { build } = await import('esbuild');
  const dir = path.join(root, 'node_modules/.cache', `shoal-torture-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  const outfile = path.join(dir, `${name}.mjs`);
  await build({
    stdin: { contents, resolveDir: root, loader: 'ts' },
    bundle: true,
    platform: 'node',
    format: 'esm',
    external: ['pino', 'etcd3', '*.node'],
    outfile,
    banner: { js: "import { createRequire as __shoalCreateRequire } from 'node:module'; const require = __shoalCreateRequire(import.meta.url);" },
    logLevel: 'warning',
  });
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return import(pathToFileURL(outfile).href);
}

/** Writes a private copy of dist/cni (forwarder, Node launcher, bundle) for the given types. */
export function privatePlugins(types, dir) {
  const built = spawnSync(process.execPath, [path.join(root, 'scripts/build.mjs')], { cwd: root, encoding: 'utf8' });
  if (built.status !== 0) throw new Error(`build failed: ${built.stderr}`);
  for (const sub of ['lib', 'shoal-node']) mkdirSync(path.join(dir, sub), { recursive: true });
  writeFileSync(path.join(dir, 'package.json'), '{"type":"commonjs"}\n');
  for (const t of types) {
    for (const [from, to] of [[`cni/${t}`, t], [`cni/shoal-node/${t}`, `shoal-node/${t}`], [`cni/lib/${t}.js`, `lib/${t}.js`]]) {
      spawnSync('cp', ['-p', path.join(root, 'dist', from), path.join(dir, to)]);
    }
  }
}

/** Host links whose name starts with `prefix` (ip -j link). */
export function linksWith(prefix, netns) {
  const out = spawnSync('ip', [...(netns ? ['-n', netns] : []), '-j', 'link', 'show'], { encoding: 'utf8' }).stdout || '[]';
  return JSON.parse(out).map((l) => l.ifname).filter((n) => n.startsWith(prefix));
}

/** Named network namespaces starting with `prefix`. */
export function netnsWith(prefix) {
  const out = spawnSync('ip', ['-j', 'netns', 'list'], { encoding: 'utf8' }).stdout || '[]';
  return (JSON.parse(out || '[]') ?? []).map((n) => n.name).filter((n) => n.startsWith(prefix));
}

/** Every nft rule, set/map element and chain in Shoal's tables (of `netns`, default the host's) that mentions `needle` (comment or text). */
export function nftMentions(needle, netns) {
  const nft = netns ? ['ip', ['netns', 'exec', netns, 'nft', '-j', 'list', 'ruleset']] : ['nft', ['-j', 'list', 'ruleset']];
  const out = spawnSync(...nft, { encoding: 'utf8', maxBuffer: 256 << 20 }).stdout || '{"nftables":[]}';
  const hits = [];
  for (const o of JSON.parse(out).nftables) {
    const kind = Object.keys(o)[0];
    const v = o[kind];
    // Only Shoal's tables: rules, chains, sets and maps name theirs in `table`, tables in `name`.
    if (!v || typeof v !== 'object' || !String(v.table ?? v.name ?? '').startsWith('shoal')) continue;
    const text = JSON.stringify(v);
    if (text.includes(needle)) hits.push(`${kind} ${v.table ?? ''} ${v.chain ?? v.name ?? ''}: ${text.slice(0, 160)}`);
  }
  return hits;
}

/** Counts of rules and set/map elements in Shoal's tables (for the soak slopes). */
export function nftCounts() {
  const out = spawnSync('nft', ['-j', 'list', 'ruleset'], { encoding: 'utf8', maxBuffer: 256 << 20 }).stdout || '{"nftables":[]}';
  let rules = 0;
  let elements = 0;
  for (const o of JSON.parse(out).nftables) {
    if (o.rule?.table?.startsWith('shoal')) rules += 1;
    const s = o.set ?? o.map;
    if (s?.table?.startsWith('shoal')) elements += s.elem?.length ?? 0;
  }
  return { rules, elements };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A stack trace's frame line ("    at foo (file:1:2)"): never allowed in a CNI answer. */
export const STACK_FRAME = /\n\s+at\s+\S+.*(:\d+:\d+|native)/;

/**
 * Rows of the store in `stateDir` that mention `needle` (allocations, DNS records, portmap
 * records carry the container id), read with node:sqlite directly rather than Shoal's store.
 */
export function storeRows(stateDir, needle) {
  let db;
  try {
    db = new DatabaseSync(path.join(stateDir, 'shoal.db'), { readOnly: true });
  } catch {
    return [];
  }
  try {
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all().map((t) => t.name);
    const hits = [];
    for (const t of tables) {
      for (const row of db.prepare(`SELECT * FROM "${t}"`).all()) {
        const text = JSON.stringify(row, (_, v) => (v instanceof Uint8Array ? Buffer.from(v).toString('latin1') : v));
        if (text.includes(needle)) hits.push(`${t}: ${text.slice(0, 200)}`);
      }
    }
    return hits;
  } finally {
    db.close();
  }
}

/** `ip [-n ns] <args>`, throwing with its stderr on failure. */
export function ip(args, netns) {
  const r = spawnSync('ip', [...(netns ? ['-n', netns] : []), ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** Shoal's nftables tables when this campaign started (imported first thing). */
const tablesAtStart = new Set(shoalTables());

/**
 * A campaign's teardown: its namespaces and links (by the run's name prefix), its directories,
 * and the empty skeletons of Shoal's nftables tables it created (DEL leaves them on purpose).
 */
export function removeRunObjects(prefix, dirs) {
  for (const n of netnsWith(prefix)) spawnSync('ip', ['netns', 'del', n]);
  for (const l of linksWith(prefix)) spawnSync('ip', ['link', 'del', l]);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  removeNewSkeletons(tablesAtStart);
}
