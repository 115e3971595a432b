import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatResult, type CniResult } from '../../cni/types.js';
import { ipamAdd } from '../../src/ipam/plugin.js';
import { SqliteStore } from '../../src/store/sqlite.js';

// The IPAM result is 1.x-shaped; the CNI layer prints it per version. This pins the two together.

let dir: string;
let store: SqliteStore;
let result: CniResult;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'shoal-ipam-shape-'));
  store = new SqliteStore(path.join(dir, 'shoal.db'));
  const ipam = { ranges: [[{ subnet: '10.0.0.0/24' }], [{ subnet: 'fd00::/64' }]], routes: [{ dst: '0.0.0.0/0', gw: '10.0.0.1' }] };
  // Assigned to the CNI layer's type: a compile error here means the shapes drifted apart.
  result = await ipamAdd({ containerId: 'c', ifname: 'eth0', network: 'n', ipam }, { store });
});
afterAll(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('shoal-ipam result per CNI version', () => {
  it.each(['0.3.0', '0.3.1', '0.4.0'])('%s carries ips[].version', (version) => {
    expect(formatResult(result, version)).toEqual({
      cniVersion: version,
      ips: [
        { version: '4', address: '10.0.0.2/24', gateway: '10.0.0.1' },
        { version: '6', address: 'fd00::2/64', gateway: 'fd00::1' },
      ],
      routes: [{ dst: '0.0.0.0/0', gw: '10.0.0.1' }],
    });
  });

  it.each(['1.0.0', '1.1.0'])('%s has no ips[].version', (version) => {
    expect(formatResult(result, version)).toEqual({
      cniVersion: version,
      ips: [
        { address: '10.0.0.2/24', gateway: '10.0.0.1' },
        { address: 'fd00::2/64', gateway: 'fd00::1' },
      ],
      routes: [{ dst: '0.0.0.0/0', gw: '10.0.0.1' }],
    });
  });
});
