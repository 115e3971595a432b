/**
 * A real runtime on shoal-bridge: podman 4 (CNI backend) with a cniVersion 0.4.0 conflist of
 * shoal-bridge + shoal-ipam. Two containers reach each other by IP, and `podman rm` leaves no
 * link, rule or allocation behind. Lives in the integration project (root, serial files), so
 * CI runs it with the other kernel tests; the helpers are under test/e2e/helpers.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeNetworkPolicy, deleteAttachmentRules } from '../../src/bridge/firewall.js';
import { openStateStore, closeStateStores } from '../../src/store/open.js';
import { ipamNetworkStats } from '../../src/ipam/stats.js';
import { ipJson, ipQuiet } from '../helpers/kernel-objects.js';
import { uniqueName } from '../helpers/names.js';
import { privateBundles, root, shoalRulesOwnedBy } from '../e2e/helpers/cni-exec.js';
import { IMAGE, Podman, requirePodman } from '../e2e/helpers/podman.js';

const network = uniqueName('l2p');
const bridge = uniqueName('l2p');
const third = Math.floor(Math.random() * 250);
const subnet = `10.237.${third}.0/24`;
let podman: Podman;
let bundles: { dir: string; remove(): void };

describe('podman e2e on shoal-bridge + shoal-ipam', () => {
  beforeAll(() => {
    requirePodman();
    // Under node_modules so the bundles find shoal-sys and better-sqlite3 the way dist/cni does.
    bundles = privateBundles(['shoal-bridge', 'shoal-ipam'], path.join(root, 'node_modules/.cache'));
    podman = new Podman(bundles.dir);
    podman.importBusybox();
    const conflist = {
      cniVersion: '0.4.0',
      name: network,
      plugins: [
        {
          type: 'shoal-bridge',
          bridge,
          isGateway: true,
          ipMasq: true,
          isolate: true,
          ipam: { type: 'shoal-ipam', ranges: [[{ subnet }]], routes: [{ dst: '0.0.0.0/0' }], stateDir: path.join(podman.dir, 'state') },
        },
      ],
    };
    writeFileSync(path.join(podman.networkDir, `${network}.conflist`), JSON.stringify(conflist, null, 2));
  }, 180_000);

  afterAll(() => {
    podman?.destroy();
    deleteAttachmentRules((o) => o.startsWith(`${network}/`));
    removeNetworkPolicy(bridge);
    ipQuiet(['link', 'del', 'dev', bridge]);
    closeStateStores();
    bundles?.remove();
  }, 120_000);

  it('two containers reach each other by IP; podman rm leaves no link, rule or allocation', async () => {
    for (const name of ['a', 'b']) {
      const run = podman.run(['run', '-d', '--name', `${network}-${name}`, '--network', network, '--ulimit', 'nproc=1024:1024', '--ulimit', 'nofile=10000:10000', IMAGE, 'sleep', '600'], 120_000);
      expect(run.status, run.stderr).toBe(0);
    }
    const ipOf = (name: string) => podman.run(['inspect', '-f', `{{(index .NetworkSettings.Networks "${network}").IPAddress}}`, `${network}-${name}`]).stdout.trim();
    const [ipA, ipB] = [ipOf('a'), ipOf('b')];
    expect(ipA).toMatch(new RegExp(`^10\\.237\\.${third}\\.\\d+$`));
    expect(ipB).not.toBe(ipA);
    const pingAB = podman.run(['exec', `${network}-a`, 'ping', '-c', '1', '-W', '2', ipB]);
    expect(pingAB.status, pingAB.stdout + pingAB.stderr).toBe(0);
    const pingBA = podman.run(['exec', `${network}-b`, 'ping', '-c', '1', '-W', '2', ipA]);
    expect(pingBA.status, pingBA.stdout + pingBA.stderr).toBe(0);
    expect(ipJson<unknown[]>(['link', 'show', 'master', bridge])).toHaveLength(2);
    expect(shoalRulesOwnedBy(`${network}/`)).toHaveLength(2);

    const rm = podman.run(['rm', '-f', '-t', '0', `${network}-a`, `${network}-b`], 120_000);
    expect(rm.status, rm.stderr).toBe(0);
    expect(ipJson<unknown[]>(['link', 'show', 'master', bridge])).toEqual([]);
    expect(shoalRulesOwnedBy(`${network}/`)).toEqual([]);
    const store = await openStateStore(path.join(podman.dir, 'state'));
    expect((await ipamNetworkStats(store, network)).allocated).toBe(0);
  }, 240_000);
});
