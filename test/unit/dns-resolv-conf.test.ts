import { describe, expect, it, afterEach } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ResolvConf, parseResolvConf } from '../../src/dns/resolv-conf.js';

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('resolv.conf', () => {
  it('parses nameserver lines, ignoring comments and other options', () => {
    const text = '# generated\nsearch example\nnameserver 127.0.0.53\n  nameserver   192.0.2.1 # office\n;nameserver 10.0.0.1\noptions edns0\nnameserver fe80::1%eth0\n';
    expect(parseResolvConf(text)).toEqual(['127.0.0.53', '192.0.2.1', 'fe80::1%eth0']);
  });

  it('re-reads the file when it changes, at most once per interval', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'shoal-rc-'));
    dirs.push(dir);
    const file = path.join(dir, 'resolv.conf');
    writeFileSync(file, 'nameserver 192.0.2.1\n');
    let t = 0;
    const changes: string[][] = [];
    const rc = new ResolvConf({ path: file, checkIntervalMs: 1000, now: () => t, onChange: (n) => changes.push(n) });
    expect(rc.nameservers()).toEqual(['192.0.2.1']);
    writeFileSync(file, 'nameserver 192.0.2.2\nnameserver 192.0.2.3\n');
    utimesSync(file, new Date(), new Date(Date.now() + 5000));
    expect(rc.nameservers()).toEqual(['192.0.2.1']); // interval not elapsed: no check
    t = 1000;
    await rc.refresh();
    expect(rc.nameservers()).toEqual(['192.0.2.2', '192.0.2.3']);
    expect(changes).toEqual([['192.0.2.2', '192.0.2.3']]);
    rmSync(file);
    await rc.refresh();
    expect(rc.nameservers()).toEqual([]);
  });

  it('starts with no nameservers when the file is missing', () => {
    expect(new ResolvConf({ path: '/nonexistent/resolv.conf' }).nameservers()).toEqual([]);
  });
});
