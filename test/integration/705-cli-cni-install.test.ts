/**
 * `shoal cni install --dir DIR` and `shoal version`: the installed plugins run from another
 * directory as a runtime would run them (VERSION, and a real shoal-ipam ADD/DEL through the
 * installed forwarder, which finds no daemon here and runs the installed Node plugin), and bad
 * input is a one-line error with a usage exit code.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SHOAL = path.join(REPO, 'dist/bin/shoal');
const TYPES = ['shoal-bridge', 'shoal-dns', 'shoal-ipam', 'shoal-ipvlan', 'shoal-macvlan', 'shoal-portmap', 'shoal-vxlan'];
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'shoal-705-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function shoal(...args: string[]) {
  return spawnSync(process.execPath, [SHOAL, ...args], { encoding: 'utf8', cwd: '/' });
}

describe('shoal cni install and shoal version', () => {
  it('installs the forwarder and the Node plugin of each type, which run from any directory', () => {
    const dir = path.join(root, 'bin');
    const r = shoal('cni', 'install', '--dir', dir);
    expect(r.status, r.stderr).toBe(0);
    expect(fs.readdirSync(dir).sort()).toEqual([...TYPES, 'shoal-node'].sort());
    expect(fs.readdirSync(path.join(dir, 'shoal-node')).sort()).toEqual(TYPES);
    for (const type of TYPES) {
      const file = path.join(dir, type);
      expect(fs.statSync(file).mode & 0o111, type).not.toBe(0);
      // The forwarder is the built one; the Node plugin it falls back to starts the way
      // dist/cni/shoal-node's launcher does: the same Node by path, the same option.
      expect(fs.readFileSync(file).equals(fs.readFileSync(path.join(REPO, 'dist/cni', type))), type).toBe(true);
      const firstLine = (f: string) => fs.readFileSync(f, 'utf8').split('\n', 1)[0];
      expect(firstLine(path.join(dir, 'shoal-node', type))).toBe(firstLine(path.join(REPO, 'dist/cni/shoal-node', type)));
      const v = spawnSync(file, [], { env: { ...process.env, CNI_COMMAND: 'VERSION' }, input: '', encoding: 'utf8', cwd: '/' });
      expect(v.status, v.stderr).toBe(0);
      expect(JSON.parse(v.stdout).supportedVersions).toEqual(['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']);
    }
    // A real allocation through the installed launcher, with CNI_PATH pointing at the install dir.
    const conf = JSON.stringify({ cniVersion: '1.0.0', name: 'n705', type: 'shoal-ipam', ipam: { type: 'shoal-ipam', stateDir: path.join(root, 'state'), ranges: [[{ subnet: '10.205.0.0/29' }]] } });
    const env = { ...process.env, CNI_CONTAINERID: 'c705', CNI_NETNS: '/proc/self/ns/net', CNI_IFNAME: 'eth0', CNI_PATH: dir };
    const add = spawnSync(path.join(dir, 'shoal-ipam'), [], { env: { ...env, CNI_COMMAND: 'ADD' }, input: conf, encoding: 'utf8', cwd: '/' });
    expect(add.status, add.stdout + add.stderr).toBe(0);
    expect(JSON.parse(add.stdout).ips[0].address).toBe('10.205.0.2/29');
    const del = spawnSync(path.join(dir, 'shoal-ipam'), [], { env: { ...env, CNI_COMMAND: 'DEL' }, input: conf, encoding: 'utf8', cwd: '/' });
    expect(del.status, del.stdout).toBe(0);
  });

  it('installing again replaces the launchers in place', () => {
    const dir = path.join(root, 'bin');
    expect(shoal('cni', 'install', '--dir', dir).status).toBe(0);
    expect(fs.readdirSync(dir).sort()).toEqual([...TYPES, 'shoal-node'].sort());
    expect(fs.readdirSync(path.join(dir, 'shoal-node')).filter((f) => f.startsWith('.'))).toEqual([]);
  });

  it('rejects an unknown subcommand with a one-line error and exit code 2', () => {
    const r = shoal('cni', 'uninstall');
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/unknown subcommand "uninstall"/);
  });

  it('version prints the Shoal version and the CNI versions, as text and JSON', () => {
    const text = shoal('version');
    expect(text.status).toBe(0);
    expect(text.stdout).toMatch(/^shoal \d+\.\d+\.\d+\nnode v\d+/);
    const json = shoal('version', '--format', 'json');
    expect(JSON.parse(json.stdout)).toMatchObject({ cniVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
  });
});
