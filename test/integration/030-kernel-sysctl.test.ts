/**
 * sysctl in the host and inside a namespace. Writes happen only inside a test namespace; the
 * second path is `ip netns exec <ns> cat /proc/sys/...` (a separate process in that namespace).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NetnsNotFoundError, SysctlError } from '../../src/kernel/errors.js';
import { createNetns, currentNetnsInode, deleteNetns, warmThreadpool } from '../../src/kernel/netns.js';
import { ensureSysctl, interfaceSysctlKey, readSysctl, readSysctlInt, writeSysctl } from '../../src/kernel/sysctl.js';
import { testRunId, uniqueName } from '../helpers/names.js';

let ns = '';
let nsPath = '';
let hostInode = 0;
const catIn = (name: string, p: string) => execFileSync('ip', ['netns', 'exec', name, 'cat', p], { encoding: 'utf8' }).trim();

beforeAll(async () => {
  await warmThreadpool();
  hostInode = currentNetnsInode();
  ns = uniqueName('sc');
  nsPath = createNetns(ns);
});

afterAll(() => {
  deleteNetns(ns);
  const left = fs.existsSync('/run/netns') ? fs.readdirSync('/run/netns').filter((n) => n.startsWith(`sc${testRunId()}`)) : [];
  expect(left).toEqual([]);
  expect(currentNetnsInode()).toBe(hostInode);
});

describe('sysctl', () => {
  it('reads host values as /proc shows them', () => {
    expect(readSysctl('net.ipv4.ip_forward')).toBe(fs.readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim());
    expect(readSysctlInt('net.ipv4.ip_forward')).toBe(Number(fs.readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8')));
  });

  it('writes inside a namespace without touching the host', () => {
    const hostBefore = fs.readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8');
    const nsBefore = readSysctlInt('net.ipv4.ip_forward', { netns: nsPath });
    const flipped = nsBefore === 1 ? 0 : 1;
    writeSysctl('net.ipv4.ip_forward', flipped, { netns: nsPath });
    expect(catIn(ns, '/proc/sys/net/ipv4/ip_forward')).toBe(String(flipped));
    expect(readSysctlInt('net.ipv4.ip_forward', { netns: ns })).toBe(flipped);
    expect(fs.readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8')).toBe(hostBefore);
    expect(currentNetnsInode()).toBe(hostInode);
  });

  it('handles per-interface keys, including interface names with dots', () => {
    const a = `${uniqueName('sc').slice(0, 10)}.1`;
    execFileSync('ip', ['-n', ns, 'link', 'add', a, 'type', 'veth', 'peer', 'name', `${a.slice(0, 10)}.2`]);
    const key = interfaceSysctlKey('ipv6', a, 'disable_ipv6');
    writeSysctl(key, 1, { netns: nsPath });
    expect(catIn(ns, `/proc/sys/net/ipv6/conf/${a}/disable_ipv6`)).toBe('1');
    writeSysctl(`net/ipv6/conf/${a}/disable_ipv6`, 0, { netns: nsPath });
    expect(catIn(ns, `/proc/sys/net/ipv6/conf/${a}/disable_ipv6`)).toBe('0');
    expect(readSysctl(key, { netns: nsPath })).toBe('0');
    // The interface lives only in the namespace: the host has no such key.
    expect(() => readSysctl(key)).toThrow(/no such sysctl/);
    execFileSync('ip', ['-n', ns, 'link', 'del', a]);
  });

  it('ensureSysctl writes only a value that differs; an unreadable key fails with the write\'s error', () => {
    ensureSysctl('net.ipv4.ip_forward', 0, { netns: nsPath });
    expect(catIn(ns, '/proc/sys/net/ipv4/ip_forward')).toBe('0');
    ensureSysctl('net.ipv4.ip_forward', 1, { netns: nsPath });
    expect(catIn(ns, '/proc/sys/net/ipv4/ip_forward')).toBe('1');
    // A read-only key (mode 0444, even for root): asking for what it holds writes nothing, so
    // it succeeds; asking for anything else is the write's refusal.
    const readOnly = 'net.ipv4.tcp_available_congestion_control';
    ensureSysctl(readOnly, readSysctl(readOnly).trim());
    expect(() => ensureSysctl(readOnly, 'banana')).toThrow(/failed to write sysctl "net.ipv4.tcp_available_congestion_control" = "banana"/);
    expect(() => ensureSysctl('net.ipv4.no_such_key', 1, { netns: nsPath })).toThrow(/failed to write sysctl "net.ipv4.no_such_key" = "1" in ".*": no such sysctl/);
    expect(currentNetnsInode()).toBe(hostInode);
  });

  it('raises SysctlError naming the key, and NetnsNotFoundError for a missing namespace', () => {
    expect(() => readSysctl('net.ipv4.no_such_key', { netns: nsPath })).toThrow(SysctlError);
    expect(() => readSysctl('net.ipv4.no_such_key')).toThrow('failed to read sysctl "net.ipv4.no_such_key": no such sysctl');
    expect(() => writeSysctl('net.ipv4.ip_forward', 'banana', { netns: nsPath })).toThrow(/failed to write sysctl "net.ipv4.ip_forward" = "banana" in ".*": invalid value/);
    expect(() => writeSysctl('net.ipv4.no_such_key', 1, { netns: nsPath })).toThrow(/no such sysctl/);
    expect(() => readSysctl('net.ipv4.ip_forward', { netns: `/run/netns/${uniqueName('sc')}` })).toThrow(NetnsNotFoundError);
    expect(currentNetnsInode()).toBe(hostInode);
  });
});
