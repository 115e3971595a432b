import { describe, expect, it, vi } from 'vitest';
import { DNS_CHAIN, DnsFirewall, dnsAcceptRules, firewallTransaction, ownerOf } from '../../src/daemon/firewall.js';
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

  it('renders one transaction: chain, owner-scoped replace, removal of gone networks', () => {
    const desired = new Map([['red', dnsAcceptRules(red, 5353)]]);
    const text = firewallTransaction(new Map([['old', ['x']]]), desired)!.render(() => ({
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
        'delete rule inet shoal dns_input handle 8',
        'add rule inet shoal dns_input ip saddr 10.88.0.0/16 ip daddr 10.88.0.1 meta l4proto { tcp, udp } th dport 5353 accept comment "dns:red"',
        'add rule inet shoal dns_input ip6 saddr fd00:88::/64 ip6 daddr fd00:88::1 meta l4proto { tcp, udp } th dport 5353 accept comment "dns:red"',
        'delete rule inet shoal dns_input handle 7',
        '',
      ].join('\n'),
    );
    expect(firewallTransaction(desired, desired)).toBeUndefined();
    expect(ownerOf('red')).toBe('dns:red');
  });

  it('applies only on change, re-applies on force, retries after a failure, and clears what it added', () => {
    const applied: NftTransaction[] = [];
    let fail = false;
    const fw = new DnsFirewall(53, undefined, (tx) => {
      if (fail) throw new Error('nft failed');
      applied.push(tx);
    }, () => []);
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
    const fw = new DnsFirewall(53, { warn, debug: vi.fn() } as never, () => undefined, () => [{ family: 'inet', table: 'filter', chain: 'input' }]);
    fw.sync([red], { checkConflicts: true });
    fw.sync([red], { checkConflicts: true });
    expect(warn).toHaveBeenCalledTimes(1);
    expect(warn.mock.calls[0]![1]).toMatch(/nft insert rule inet filter input ip saddr 10.88.0.0\/16 ip daddr 10.88.0.1 .* accept/);
  });
});
