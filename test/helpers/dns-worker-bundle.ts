/**
 * Builds the DNS worker bundle (src/dns/worker-main.ts) the way scripts/build.mjs does, into a
 * temp dir under node_modules (so it finds the shoal-sys addon as dist/ does), for tests that
 * run ShoalDns with workers from the TypeScript sources. Returns the bundle and a cleanup.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';

const root = path.resolve(import.meta.dirname, '../..');

export async function buildDnsWorker(tag: string): Promise<{ script: string; remove: () => void }> {
  mkdirSync(path.join(root, 'node_modules', '.cache'), { recursive: true });
  const work = mkdtempSync(path.join(root, 'node_modules', '.cache', `shoal-test-${tag}-`));
  const script = path.join(work, 'dns-worker.cjs');
  await build({
    entryPoints: [path.join(root, 'src/dns/worker-main.ts')],
    bundle: true,
    platform: 'node',
    target: 'node24',
    format: 'cjs',
    logLevel: 'error',
    external: ['*.node'],
    define: { 'import.meta.url': 'importMetaUrl' },
    inject: [path.join(root, 'scripts/import-meta-url.js')],
    outfile: script,
  });
  return { script, remove: () => rmSync(work, { recursive: true, force: true }) };
}
