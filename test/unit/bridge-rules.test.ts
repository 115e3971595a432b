import { describe, expect, it } from 'vitest';
import { IpPrefix } from '../../src/addr.js';
import { firstAddress, parseAddressing, planAddresses, resultIps, resultRoutes, type AddressPlan } from '../../src/bridge/addressing.js';
import { addAttachmentRules, addNetworkPolicy, masqueradeRule, networkPolicyRules, SHOAL_BRIDGE_GROUP } from '../../src/bridge/firewall.js';
import { attachmentOwner, bridgeChainName, hostVethName, parseAttachmentOwner } from '../../src/bridge/names.js';
import { NftTransaction } from '../../src/kernel/nftables.js';
import { commonLinkAttrs, linkInfoAttr } from '../../src/kernel/link-codec.js';
import { encodeAttrs } from '../../src/kernel/netlink/codec.js';

/** A plan as the CNI result and the bridge would show it. */
const shown = (plan: AddressPlan) => ({ ips: resultIps(plan.ips, 2), routes: resultRoutes(plan.routes), bridgeAddresses: plan.bridgeAddresses.map(String) });

describe('addressing', () => {
  it('gateway defaults to the first address when the bridge is the gateway', () => {
    expect(firstAddress(IpPrefix.parse('10.1.2.77/24')).toString()).toBe('10.1.2.1');
    expect(firstAddress(IpPrefix.parse('fd00:1::9/64')).toString()).toBe('fd00:1::1');
    const plan = planAddresses({ ips: [{ address: '10.1.2.5/24' }] }, { isGateway: true, isDefaultGateway: true, internal: false });
    expect(shown(plan)).toEqual({
      ips: [{ address: '10.1.2.5/24', gateway: '10.1.2.1', interface: 2 }],
      routes: [{ dst: '0.0.0.0/0', gw: '10.1.2.1' }],
      bridgeAddresses: ['10.1.2.1/24'],
    });
  });
  it('keeps the IPAM default route, adds one per family otherwise; internal drops them', () => {
    const ipam = { ips: [{ address: '10.1.2.5/24', gateway: '10.1.2.254' }, { address: 'fd00::5/64' }], routes: [{ dst: '0.0.0.0/0' }, { dst: '10.9.0.0/16' }] };
    const o = { isGateway: true, isDefaultGateway: true, internal: false };
    expect(shown(planAddresses(ipam, o)).routes).toEqual([{ dst: '0.0.0.0/0' }, { dst: '10.9.0.0/16' }, { dst: '::/0', gw: 'fd00::1' }]);
    expect(shown(planAddresses(ipam, { ...o, internal: true })).routes).toEqual([{ dst: '10.9.0.0/16' }]);
    expect(shown(planAddresses(ipam, o)).bridgeAddresses).toEqual(['10.1.2.254/24', 'fd00::1/64']);
    expect(planAddresses(ipam, { ...o, isGateway: false, isDefaultGateway: false }).bridgeAddresses).toEqual([]);
  });
  it('reads the result text once, prints it back canonically, and keeps a route\'s other fields', () => {
    const ipam = { ips: [{ address: 'FD00:0:0::5/64', gateway: 'fd00::1' }], routes: [{ dst: 'default', gw: 'fd00::1', mtu: 1400 }, { dst: '10.9.0.0/16', gw: '10.9.0.1' }, { dst: '10.9.0.0/16', gw: '10.9.0.1' }] };
    const plan = planAddresses(ipam, { isGateway: false, isDefaultGateway: false, internal: false });
    expect(shown(plan).ips).toEqual([{ address: 'fd00::5/64', gateway: 'fd00::1', interface: 2 }]);
    expect(shown(plan).routes).toEqual([{ dst: '::/0', gw: 'fd00::1', mtu: 1400 }, { dst: '10.9.0.0/16', gw: '10.9.0.1' }]);
    expect(() => parseAddressing({ ips: [{ address: '10.0.0.5' }] })).toThrow(/no prefix length/);
  });
});

describe('names', () => {
  it('host veth names are derived, short and distinct per network/container/ifname', () => {
    const a = hostVethName('n', 'c', 'eth0');
    expect(a).toMatch(/^veth[0-9a-f]{8}$/);
    expect(hostVethName('n', 'c', 'eth0')).toBe(a);
    expect(hostVethName('n', 'c', 'eth1')).not.toBe(a);
    expect(hostVethName('m', 'c', 'eth0')).not.toBe(a);
  });
  it('owner comments name network/container/ifname and stay within nft\'s 128 bytes', () => {
    expect(attachmentOwner('net', 'abc', 'eth0')).toBe('net/abc/eth0');
    const long = attachmentOwner('n'.repeat(80), 'c'.repeat(64), 'eth0');
    expect(Buffer.byteLength(long)).toBeLessThanOrEqual(128);
    expect(parseAttachmentOwner(long)?.ifname).toBe('eth0');
    expect(parseAttachmentOwner('shoal-l2')).toBeUndefined();
  });
  it('bridge chains are plain identifiers', () => {
    expect(bridgeChainName('cni0')).toBe('l2_br_cni0');
    expect(bridgeChainName('br-web.1')).toMatch(/^l2_brh_[0-9a-f]{12}$/);
  });
});

describe('nftables rules', () => {
  it('masquerade: per address, not to its own subnet, not to multicast', () => {
    expect(masqueradeRule(IpPrefix.parse('10.1.2.5/24')).expr).toBe('ip saddr 10.1.2.5 ip daddr != 10.1.2.0/24 ip daddr != 224.0.0.0/4 masquerade');
    expect(masqueradeRule(IpPrefix.parse('fd00:1::5/64'))).toEqual({
      table: { family: 'ip6', name: 'shoal-nat' },
      expr: 'ip6 saddr fd00:1::5 ip6 daddr != fd00:1::/64 ip6 daddr != ff00::/8 masquerade',
    });
  });
  it('renders one transaction with owner comments in Shoal tables only', () => {
    const tx = new NftTransaction();
    addAttachmentRules(tx, { owner: 'n/c/eth0', masquerade: [IpPrefix.parse('10.1.2.5/24')], macspoof: { hostVeth: 'veth01234567', mac: '02:AA:00:00:00:01' } });
    const text = tx.render();
    expect(text).toContain('add rule ip shoal-nat l2_postrouting ip saddr 10.1.2.5 ip daddr != 10.1.2.0/24 ip daddr != 224.0.0.0/4 masquerade comment "n/c/eth0"');
    expect(text).toContain('add rule bridge shoal l2_macspoof iifname "veth01234567" ether saddr != 02:aa:00:00:00:01 drop comment "n/c/eth0"');
    for (const line of text.trim().split('\n')) expect(line).toMatch(/ (inet|ip|ip6|bridge) shoal(-nat)?( |$)/);
  });
  it('network policy: nothing for a plain network; isolate / strict / internal rules otherwise', () => {
    expect(networkPolicyRules({ network: 'n', bridge: 'br0', isolate: false, internal: false })).toEqual([]);
    expect(addNetworkPolicy(new NftTransaction(), { network: 'n', bridge: 'br0', isolate: false, internal: false })).toBe(false);
    expect(networkPolicyRules({ network: 'n', bridge: 'br0', isolate: true, internal: false })).toEqual([
      'iifname "br0" oifname "br0" return',
      `iifname "br0" oifgroup ${SHOAL_BRIDGE_GROUP} drop`,
      `oifname "br0" iifgroup ${SHOAL_BRIDGE_GROUP} drop`,
    ]);
    expect(networkPolicyRules({ network: 'n', bridge: 'br0', isolate: 'strict', internal: true })).toEqual([
      'iifname "br0" oifname "br0" return',
      'iifname "br0" drop',
      'oifname "br0" drop',
      'iifname "br0" meta oifkind "bridge" drop',
      'oifname "br0" meta iifkind "bridge" drop',
      `iifname "br0" oifgroup ${SHOAL_BRIDGE_GROUP} drop`,
      `oifname "br0" iifgroup ${SHOAL_BRIDGE_GROUP} drop`,
    ]);
    const tx = new NftTransaction();
    addNetworkPolicy(tx, { network: 'n', bridge: 'br0', isolate: true, internal: false });
    const text = tx.render();
    // Rewritten whole on every ADD: flush then add, in one transaction.
    expect(text).toContain('flush chain inet shoal l2_br_br0\n');
    expect(text).toContain('add element inet shoal l2_nets { "br0" : jump l2_br_br0 }');
    expect(text).toContain('add rule inet shoal l2_forward iifname vmap @l2_nets comment "shoal-l2"');
  });
});

describe('ipvlan message encoding (this kernel has no ipvlan)', () => {
  it('IFLA_LINKINFO carries kind "ipvlan" and mode/flags as u16', () => {
    const bytes = encodeAttrs([linkInfoAttr({ kind: 'ipvlan', mode: 'l3s', flag: 'bridge' })]);
    // IFLA_LINKINFO(18|NESTED) { IFLA_INFO_KIND "ipvlan", IFLA_INFO_DATA(2|NESTED) { MODE=2 (l3s), FLAGS=0 (bridge) } }, u16s padded to 4
    expect(bytes.toString('hex')).toBe(
      '2400' + '1280' + '0b00' + '0100' + Buffer.from('ipvlan\0').toString('hex') + '00' + '1400' + '0280' + '0600' + '0100' + '0200' + '0000' + '0600' + '0200' + '0000' + '0000',
    );
  });
});

describe('kernel additions for the bridge plugin', () => {
  it('IFLA_GROUP (27) carries the device group as u32', () => {
    expect(encodeAttrs(commonLinkAttrs({ group: SHOAL_BRIDGE_GROUP })).toString('hex')).toBe('08001b0048530000');
  });
});
