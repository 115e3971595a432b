import pkg from '../../package.json' with { type: 'json' };
import { SUPPORTED_VERSIONS } from '../../cni/version.js';

export async function run(args: string[]): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write('Usage: shoal version [--format json]\n\nPrint the Shoal version and the CNI spec versions its plugins speak.\n');
    return 0;
  }
  const info = { version: pkg.version, node: process.version, cniVersions: [...SUPPORTED_VERSIONS] };
  if (args.includes('--format') && args[args.indexOf('--format') + 1] === 'json') {
    process.stdout.write(JSON.stringify(info) + '\n');
  } else {
    process.stdout.write(`shoal ${info.version}\nnode ${info.node}\ncni ${info.cniVersions.join(', ')}\n`);
  }
  return 0;
}
