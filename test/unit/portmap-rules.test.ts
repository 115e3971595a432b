import { describe, expect, it } from 'vitest';
import { IpAddr } from '../../src/addr.js';
import { NftTransaction } from '../../src/kernel/nftables.js';
import type { NftTableInfo } from '../../src/kernel/nftables-reader.js';
import { attachmentOf, containerAddresses, dnatEntries, normaliseMappings } from '../../src/portmap/config.js';
import { addAttachment, addInfra, mapElements, removeAttachment, snatRules } from '../../src/portmap/rules.js';

const a = attachmentOf('net1', 'c0ffee', 'eth0');
const addresses = containerAddresses({ ips: [{ address: '10.1.0.5/24' }, { address: 'fd00:1::5/64' }] });
const entries = dnatEntries(
  normaliseMappings([
    { hostPort: 8080, containerPort: 80 },
    { hostPort: 5353, containerPort: 53, protocol: 'udp', hostIP: IpAddr.parse('192.0.2.7') },
    { hostPort: 8443, containerPort: 443, hostIP: IpAddr.parse('FD00:0::1') },
  ]),
  addresses,
);

describe('portmap nft rendering', () => {
  it('renders the shared chains and maps, flushed and refilled with their fixed rules', () => {
    expect(addInfra(new NftTransaction(), 4).render()).toBe(
      [
        'add table ip shoal-nat',
        'add map ip shoal-nat portmap-hostip { type ipv4_addr . inet_proto . inet_service : verdict ; }',
        'add map ip shoal-nat portmap-anyip { type inet_proto . inet_service : verdict ; }',
        'add map ip shoal-nat portmap-masq { type ipv4_addr . inet_proto . inet_service : verdict ; }',
        'add chain ip shoal-nat portmap-dnat',
        'add chain ip shoal-nat portmap-prerouting { type nat hook prerouting priority dstnat ; }',
        'add chain ip shoal-nat portmap-output { type nat hook output priority -100 ; }',
        'add chain ip shoal-nat portmap-postrouting { type nat hook postrouting priority srcnat ; }',
        'flush chain ip shoal-nat portmap-prerouting',
        'flush chain ip shoal-nat portmap-output',
        'flush chain ip shoal-nat portmap-postrouting',
        'flush chain ip shoal-nat portmap-dnat',
        'add rule ip shoal-nat portmap-prerouting fib daddr type local jump portmap-dnat comment "portmap"',
        'add rule ip shoal-nat portmap-output fib daddr type local jump portmap-dnat comment "portmap"',
        'add rule ip shoal-nat portmap-dnat ip daddr . meta l4proto . th dport vmap @portmap-hostip comment "portmap"',
        'add rule ip shoal-nat portmap-dnat meta l4proto . th dport vmap @portmap-anyip comment "portmap"',
        'add rule ip shoal-nat portmap-postrouting ct status dnat ip daddr . meta l4proto . th dport vmap @portmap-masq comment "portmap"',
        '',
      ].join('\n'),
    );
  });

  it('keeps ::1 out of the IPv6 output dispatch', () => {
    expect(addInfra(new NftTransaction(), 6).render()).toContain(
      'add rule ip6 shoal-nat portmap-output fib daddr type local ip6 daddr != ::1 jump portmap-dnat comment "portmap"',
    );
  });

  it('renders one DNAT rule per mapping and map elements pointing at the attachment chain', () => {
    const text = addAttachment(new NftTransaction(), 4, a, entries, { snat: true, masqAll: false, addresses }).render();
    const c = a.dnatChain;
    const s = a.snatChain;
    expect(text.split('\n')).toEqual([
      `add chain ip shoal-nat ${c}`,
      `flush chain ip shoal-nat ${c}`,
      `add rule ip shoal-nat ${c} tcp dport 8080 dnat to 10.1.0.5:80 comment "portmap/net1/c0ffee/eth0"`,
      `add rule ip shoal-nat ${c} ip daddr 192.0.2.7 udp dport 5353 dnat to 10.1.0.5:53 comment "portmap/net1/c0ffee/eth0"`,
      `add element ip shoal-nat portmap-hostip { 192.0.2.7 . udp . 5353 : jump ${c} }`,
      `add element ip shoal-nat portmap-anyip { tcp . 8080 : jump ${c} }`,
      `add chain ip shoal-nat ${s}`,
      `flush chain ip shoal-nat ${s}`,
      `add rule ip shoal-nat ${s} ip saddr 127.0.0.0/8 masquerade comment "portmap/net1/c0ffee/eth0"`,
      `add rule ip shoal-nat ${s} ip saddr 10.1.0.0/24 masquerade comment "portmap/net1/c0ffee/eth0"`,
      `add element ip shoal-nat portmap-masq { 10.1.0.5 . tcp . 80 : jump ${s}, 10.1.0.5 . udp . 53 : jump ${s} }`,
      '',
    ]);
  });

  it('renders IPv6 targets in brackets and canonical host addresses', () => {
    const text = addAttachment(new NftTransaction(), 6, a, entries, { snat: true, masqAll: false, addresses }).render();
    expect(text).toContain(`add rule ip6 shoal-nat ${a.dnatChain} tcp dport 8080 dnat to [fd00:1::5]:80`);
    expect(text).toContain(`add rule ip6 shoal-nat ${a.dnatChain} ip6 daddr fd00::1 tcp dport 8443 dnat to [fd00:1::5]:443`);
    expect(text).toContain(`add rule ip6 shoal-nat ${a.snatChain} ip6 saddr fd00:1::/64 masquerade`);
    expect(text).not.toContain('192.0.2.7');
  });

  it('snat=false adds no masquerade; masqAll masquerades every source', () => {
    expect(snatRules(4, { snat: false, masqAll: false, addresses })).toEqual([]);
    expect(snatRules(4, { snat: false, masqAll: true, addresses })).toEqual(['masquerade']);
    const text = addAttachment(new NftTransaction(), 4, a, entries, { snat: false, masqAll: false, addresses }).render();
    expect(text).not.toContain('masq');
  });

  it('owner comments, chain names and hashes are stable and fit nft limits', () => {
    expect(a.owner).toBe('portmap/net1/c0ffee/eth0');
    expect(a.dnatChain).toMatch(/^portmap-c-[0-9a-f]{16}$/);
    expect(attachmentOf('net1', 'c0ffee', 'eth0')).toEqual(a);
    const long = attachmentOf('n'.repeat(100), 'f'.repeat(64), 'eth0');
    expect(Buffer.byteLength(long.owner)).toBeLessThanOrEqual(128);
    expect(long.owner).toMatch(/^portmap\/h[0-9a-f]{16}\/f{64}\/eth0$/);
  });
});

describe('reading the maps back', () => {
  const table: NftTableInfo = {
    family: 'ip',
    name: 'shoal-nat',
    handle: 1,
    chains: [{ family: 'ip', table: 'shoal-nat', name: a.dnatChain, handle: 2 }, { family: 'ip', table: 'shoal-nat', name: a.snatChain, handle: 3 }],
    rules: [],
    sets: [],
    maps: [
      { family: 'ip', table: 'shoal-nat', name: 'portmap-anyip', handle: 4, type: ['inet_proto', 'inet_service'], flags: [], elements: [[{ concat: ['tcp', 8080] }, { jump: { target: a.dnatChain } }], [{ concat: ['tcp', 9] }, { jump: { target: 'portmap-c-other' } }]] },
      { family: 'ip', table: 'shoal-nat', name: 'portmap-hostip', handle: 5, type: ['ipv4_addr', 'inet_proto', 'inet_service'], flags: [], elements: [[{ concat: ['192.0.2.7', 'udp', 5353] }, { jump: { target: a.dnatChain } }]] },
      { family: 'ip', table: 'shoal-nat', name: 'portmap-masq', handle: 6, type: ['ipv4_addr', 'inet_proto', 'inet_service'], flags: [], elements: [[{ concat: ['10.1.0.5', 'tcp', 80] }, { jump: { target: a.snatChain } }]] },
    ],
  };

  it('decodes elements with their keys and targets', () => {
    expect(mapElements(table)).toEqual([
      { map: 'portmap-anyip', key: 'tcp . 8080', target: a.dnatChain, protocol: 'tcp', port: 8080 },
      { map: 'portmap-anyip', key: 'tcp . 9', target: 'portmap-c-other', protocol: 'tcp', port: 9 },
      { map: 'portmap-hostip', key: '192.0.2.7 . udp . 5353', target: a.dnatChain, hostIP: '192.0.2.7', protocol: 'udp', port: 5353 },
      { map: 'portmap-masq', key: '10.1.0.5 . tcp . 80', target: a.snatChain, hostIP: '10.1.0.5', protocol: 'tcp', port: 80 },
    ]);
  });

  it('removes exactly the attachment: its elements first, then its chains', () => {
    expect(removeAttachment(new NftTransaction(), 4, a, table).render().split('\n')).toEqual([
      'delete element ip shoal-nat portmap-anyip { tcp . 8080 }',
      'delete element ip shoal-nat portmap-hostip { 192.0.2.7 . udp . 5353 }',
      'delete element ip shoal-nat portmap-masq { 10.1.0.5 . tcp . 80 }',
      `add chain ip shoal-nat ${a.dnatChain}`,
      `flush chain ip shoal-nat ${a.dnatChain}`,
      `delete chain ip shoal-nat ${a.dnatChain}`,
      `add chain ip shoal-nat ${a.snatChain}`,
      `flush chain ip shoal-nat ${a.snatChain}`,
      `delete chain ip shoal-nat ${a.snatChain}`,
      '',
    ]);
    expect(removeAttachment(new NftTransaction(), 4, a, undefined).isEmpty).toBe(true);
  });
});
