/**
 * Finds a file inside an installed package the way Node's resolver finds the package (each
 * node_modules from `fromFile`'s directory up, then NODE_PATH), but only with existence checks.
 * For the native addons a CNI plugin loads on every run: `require.resolve('<pkg>/package.json')`
 * costs ~0.8 ms there (resolver, package.json parsing, realpath); this costs a few stats.
 * Returns undefined when no such file exists; callers fall back to the resolver.
 */
import { existsSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';

export function findPackageFile(fromFile: string, pkg: string, relative: string): string | undefined {
  for (let dir = dirname(fromFile); ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', pkg, relative);
    if (existsSync(candidate)) return candidate;
    if (dirname(dir) === dir) break;
  }
  for (const dir of (process.env.NODE_PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, pkg, relative);
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}
