import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it, vi } from 'vitest';
import { DNS_CHAIN, DnsFirewall, dnsAcceptRules, firewallTransaction, foreignInputDropChains, ownerOf, type NftRunner } from '../../src/daemon/firewall.js';
import type { NftTransaction } from '../../src/kernel/nftables.js';

const red = { name: 'red', gateways: ['10.88.0.1', 'fd00:88::1'], subnets: ['10.88.0.0/16', 'fd00:88::/64'] };

describe('DNS accept rules', () => {
  it('accepts UDP and TCP to the DNS port from each subnet to the same-family gateway', () => {
    expect(dnsAcceptRules(red, 53)).toEqual([
      'ip saddr 10.88.0.0/16 ip daddr 10.88.0.1 meta l4proto { tcp, udp } th dport 53 accept',
      'ip6 saddr fd00:88::/64 ip6 daddr fd00:88::1 meta l4proto { tcp, udp } th dport 53 accept',
    ]);
    expect(dnsAcceptRules({ name: 'x', gateways: ['10.0.0.1'] }, 53)).toEqual([]);
  });

  it("with a client rate, drops a source address's UDP queries above it before the accept", () => {
    expect(dnsAcceptRules(red, 53, 500)).toEqual([
      'ip saddr 10.88.0.0/16 ip daddr 10.88.0.1 udp dport 53 update @dns_rate4 { ip saddr limit rate over 500/second burst 50 packets } drop',
      'ip saddr 10.88.0.0/16 ip daddr 10.88.0.1 meta l4proto { tcp, udp } th dport 53 accept',
      'ip6 saddr fd00:88::/64 ip6 daddr fd00:88::1 udp dport 53 update @dns_rate6 { ip6 saddr limit rate over 500/second burst 50 packets } drop',
      'ip6 saddr fd00:88::/64 ip6 daddr fd00:88::1 meta l4proto { tcp, udp } th dport 53 accept',
    ]);
  });

  it('renders one transaction: chain, owner-scoped replace, removal of gone networks', () => {
    const desired = new Map([['red', dnsAcceptRules(red, 5353)]]);
    const text = firewallTransaction(new Map([['old', ['x']]]), desired, true)!.render(() => ({
      family: 'inet', name: 'shoal', handle: 1, chains: [], sets: [], maps: [],
      rules: [
        { family: 'inet', table: 'shoal', chain: DNS_CHAIN, handle: 7, comment: 'dns:old', expr: [] },
        { family: 'inet', table: 'shoal', chain: DNS_CHAIN, handle: 8, comment: 'dns:red', expr: [] },
        { family: 'inet', table: 'shoal', chain: 'forward', handle: 9, comment: 'dns:red', expr: [] },
        { family: 'inet', table: 'shoal', chain: DNS_CHAIN, handle: 10, comment: 'red', expr: [] },
      ],
    }));
    expect(text).toBe(
      [
        'add table inet shoal',
        'add chain inet shoal dns_input { type filter hook input priority filter ; policy accept ; }',
        'add set inet shoal dns_rate4 { type ipv4_addr ; flags dynamic,timeout ; timeout 1m ; }',
        'add set inet shoal dns_rate6 { type ipv6_addr ; flags dynamic,timeout ; timeout 1m ; }',
        'delete rule inet shoal dns_input handle 8',
        'add rule inet shoal dns_input ip saddr 10.88.0.0/16 ip daddr 10.88.0.1 meta l4proto { tcp, udp } th dport 5353 accept comment "dns:red"',
        'add rule inet shoal dns_input ip6 saddr fd00:88::/64 ip6 daddr fd00:88::1 meta l4proto { tcp, udp } th dport 5353 accept comment "dns:red"',
        'delete rule inet shoal dns_input handle 7',
        '',
      ].join('\n'),
    );
    expect(firewallTransaction(desired, desired)).toBeUndefined();
    // Without a client rate, no meters are made.
    expect(firewallTransaction(new Map(), desired)!.render()).not.toContain('dns_rate');
    expect(ownerOf('red')).toBe('dns:red');
  });

  it('applies only on change, re-applies on force, retries after a failure, and clears what it added', () => {
    const applied: NftTransaction[] = [];
    let fail = false;
    const fw = new DnsFirewall(53, undefined, {
      apply: (tx) => {
        if (fail) throw new Error('nft failed');
        applied.push(tx);
      },
      foreignDrops: () => [],
    });
    fw.sync([red]);
    fw.sync([red]);
    expect(applied).toHaveLength(1);
    fw.sync([red], { force: true });
    expect(applied).toHaveLength(2);
    fail = true;
    fw.sync([red, { ...red, name: 'blue' }]);
    fail = false;
    fw.sync([red, { ...red, name: 'blue' }]);
    expect(applied).toHaveLength(3);
    expect(fw.networks.sort()).toEqual(['blue', 'red']);
    fw.clear();
    expect(fw.networks).toEqual([]);
    expect(applied[3]!.ops.map((o) => o.op)).toEqual(['deleteRulesByOwner', 'deleteRulesByOwner']);
  });

  it('warns once per foreign input chain with policy drop, naming the rule to add there', () => {
    const warn = vi.fn();
    const fw = new DnsFirewall(53, { warn, debug: vi.fn() } as never, { apply: () => undefined, foreignDrops: () => [{ family: 'inet', table: 'filter', chain: 'input' }] });
    fw.sync([red], { checkConflicts: true });
    fw.sync([red], { checkConflicts: true });
    expect(warn).toHaveBeenCalledTimes(1);
    expect(warn.mock.calls[0]![1]).toMatch(/nft insert rule inet filter input ip saddr 10.88.0.0\/16 ip daddr 10.88.0.1 .* accept/);
  });

  it('logs each conflict check nft cannot answer (dns_firewall_check_failed) and checks again on every later sync until one succeeds', () => {
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level: 'debug' }, new Writable({ write: (chunk, _enc, done) => (lines.push(JSON.parse(String(chunk)) as Record<string, unknown>), done()) }));
    const events = (name: string) => lines.filter((l) => l['event'] === name);
    const calls: string[][] = [];
    let answer: { status: number; stdout: string; stderr: string } = { status: 1, stdout: '', stderr: 'Error: cache initialization failed: Operation not permitted' };
    const nft: NftRunner = (args) => (calls.push([...args]), answer);
    const fw = new DnsFirewall(53, logger, { apply: () => undefined, foreignDrops: () => foreignInputDropChains(nft) });

    fw.sync([red], { checkConflicts: true });
    expect(events('dns_firewall_check_failed')).toHaveLength(1);
    const first = events('dns_firewall_check_failed')[0]!;
    expect(first['level']).toBe(40);
    expect(first['msg']).toMatch(/Operation not permitted/);
    expect((first['err'] as { message: string }).message).toMatch(/nft exited with status 1: Error: cache initialization failed: Operation not permitted/);

    // Later syncs (a store change, not a reload) try again and say so each time.
    fw.sync([red]);
    answer = { status: 0, stdout: 'not json', stderr: '' };
    fw.sync([red]);
    expect(events('dns_firewall_check_failed')).toHaveLength(3);
    expect((events('dns_firewall_check_failed')[2]!['err'] as { message: string }).message).toMatch(/no valid JSON/);
    expect(calls).toHaveLength(3);

    answer = { status: 0, stdout: JSON.stringify({ nftables: [{ metainfo: {} }, { chain: { family: 'ip', table: 'filter', name: 'INPUT', hook: 'input', policy: 'drop' } }] }), stderr: '' };
    fw.sync([red]);
    expect(events('dns_firewall_conflict')).toMatchObject([{ family: 'ip', table: 'filter', chain: 'INPUT' }]);
    expect(calls).toHaveLength(4);
    // Once a check succeeded, plain syncs leave nft alone again; a reload checks anew.
    fw.sync([red]);
    expect(calls).toHaveLength(4);
    fw.sync([red], { checkConflicts: true });
    expect(calls).toHaveLength(5);
    expect(events('dns_firewall_check_failed')).toHaveLength(3);
  });

  it('lists only foreign input chains with policy drop, and refuses output it cannot read', () => {
    const doc = { nftables: [
      { chain: { family: 'inet', table: 'filter', name: 'input', hook: 'input', policy: 'drop' } },
      { chain: { family: 'inet', table: 'filter', name: 'fwd', hook: 'forward', policy: 'drop' } },
      { chain: { family: 'inet', table: 'other', name: 'input', hook: 'input', policy: 'accept' } },
      { chain: { family: 'inet', table: 'shoal', name: 'dns_input', hook: 'input', policy: 'drop' } },
    ] };
    expect(foreignInputDropChains(() => ({ status: 0, stdout: JSON.stringify(doc), stderr: '' }))).toEqual([{ family: 'inet', table: 'filter', chain: 'input' }]);
    expect(() => foreignInputDropChains(() => ({ status: 0, stdout: '{"x":1}', stderr: '' }))).toThrow(/without an "nftables" array/);
    expect(() => foreignInputDropChains(() => ({ status: 2, stdout: '', stderr: 'no permission' }))).toThrow(/failed to list "nftables chains": nft exited with status 2: no permission/);
  });
});
