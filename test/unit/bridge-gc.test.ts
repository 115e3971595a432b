import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { CniRequest } from '../../cni/skel.js';

// The three GC steps of shoal-bridge, replaced by recorders: IPAM GC, stale-rule collection and
// the embedded plugins' (portmap, discovery) GC.
const calls: string[] = [];
const failing = new Set<string>();
const record = (name: string) => {
  calls.push(name);
  if (failing.has(name)) throw new Error(`${name} failed`);
};

vi.mock('../../src/bridge/ipam.js', async (importOriginal) => ({
  ...(await importOriginal<typeof import('../../src/bridge/ipam.js')>()),
  gc: vi.fn(async () => record('ipam')),
}));
vi.mock('../../src/bridge/gc.js', () => ({
  collectStaleRules: vi.fn(() => (record('rules'), [])),
}));
vi.mock('../../src/bridge/embedded.js', async (importOriginal) => ({
  ...(await importOriginal<typeof import('../../src/bridge/embedded.js')>()),
  gcEmbedded: vi.fn(async () => record('embedded')),
}));

const { gc } = await import('../../src/bridge/bridge-plugin.js');

function gcRequest(): CniRequest {
  const config = { cniVersion: '1.1.0', name: 'n1', type: 'shoal-bridge', bridge: 'br-gc', ipam: { type: 'shoal-ipam' }, portmap: { snat: true }, discovery: {} };
  return {
    command: 'GC',
    cniVersion: '1.1.0',
    containerId: '',
    netns: '',
    ifname: '',
    args: {},
    path: [],
    config,
    stdin: JSON.stringify(config),
    validAttachments: [{ containerID: 'keep', ifname: 'eth0' }],
    log: { info: vi.fn(), debug: vi.fn(), warn: vi.fn(), error: vi.fn() },
  } as unknown as CniRequest;
}

describe('shoal-bridge GC', () => {
  beforeEach(() => {
    calls.length = 0;
    failing.clear();
  });

  it('runs every step when all succeed', async () => {
    await gc(gcRequest());
    expect(calls).toEqual(['ipam', 'rules', 'embedded']);
  });

  it('still collects stale rules and runs the embedded GC when IPAM GC throws, then raises the IPAM error', async () => {
    failing.add('ipam');
    await expect(gc(gcRequest())).rejects.toThrow('ipam failed');
    expect(calls).toEqual(['ipam', 'rules', 'embedded']);
  });

  it('raises the first error when several steps fail, after running them all', async () => {
    failing.add('rules');
    failing.add('embedded');
    await expect(gc(gcRequest())).rejects.toThrow('rules failed');
    expect(calls).toEqual(['ipam', 'rules', 'embedded']);
  });
});
