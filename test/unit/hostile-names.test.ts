/**
 * Issue 19: names from outside (CNI config and environment, CNI_ARGS, runtimeConfig, the CLI)
 * that reach nftables text, conflists, DNS records, resolv.conf/hosts and logs. Every entry
 * point, for a table of hostile inputs: refused with an error naming the field, or carried
 * safely (nft text stays one command per line, the comment is exactly the owner).
 */
import { describe, expect, it, vi } from 'vitest';
import { readCniEnv } from '../../cni/env.js';
import { parseNetConf } from '../../cni/config.js';
import { CniError } from '../../cni/errors.js';
import { NftTransaction, SHOAL_TABLE } from '../../src/kernel/nftables.js';
import { attachmentOwner, bridgeChainName, hostVethName } from '../../src/bridge/names.js';
import { ownerOf as portmapOwner, chainsOf } from '../../src/portmap/config.js';
import { DnsFirewall, ownerOf as dnsOwner } from '../../src/daemon/firewall.js';
import { buildEndpoint, endpointAliases, EndpointInputError, refusedAliases } from '../../src/dns/registry-build.js';
import { buildSpec } from '../../src/cli/run.js';
import { UsageError } from '../../src/cli/common.js';
import { planNetwork, CreateInputError } from '../../src/network/manage.js';
import type { Store } from '../../src/store/store.js';
import { HOSTILE, INJECT } from '../helpers/hostile.js';


function cniError(fn: () => unknown): CniError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CniError);
    return err as CniError;
  }
  throw new Error('expected a CniError');
}

const env = (over: Record<string, string>) => ({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: '/run/netns/x', CNI_IFNAME: 'eth0', ...over });

describe('CNI edge', () => {
  it.each(HOSTILE.filter(([w]) => w !== '64-character label'))('network name with %s: code 7 naming "name"', (_what, name) => {
    const err = cniError(() => parseNetConf({ cniVersion: '1.0.0', name, type: 'shoal-bridge' }));
    expect(err.cniCode).toBe(7);
    expect(err.message).toMatch(/^invalid network config: field "name": /);
  });

  it('a 124-character network name is accepted, 125 is refused', () => {
    expect(parseNetConf({ cniVersion: '1.0.0', name: 'n'.repeat(124), type: 'x' }).name).toHaveLength(124);
    expect(cniError(() => parseNetConf({ cniVersion: '1.0.0', name: 'n'.repeat(125), type: 'x' })).message).toMatch(/longer than 124/);
  });

  it.each(HOSTILE.filter(([w]) => w !== '64-character label' && w !== '300 characters'))('CNI_CONTAINERID with %s: code 4 naming it', (_what, id) => {
    const err = cniError(() => readCniEnv(env({ CNI_CONTAINERID: id })));
    expect(err.cniCode).toBe(4);
    expect(err.message).toContain('CNI_CONTAINERID');
  });

  it('a 300-character CNI_CONTAINERID is accepted (its owner comment hashes it)', () => {
    expect(readCniEnv(env({ CNI_CONTAINERID: 'c'.repeat(300) })).containerId).toHaveLength(300);
  });

  // Linux takes most of these as interface names; what nft cannot quote, and what is too long,
  // is refused. Non-ASCII within 15 bytes, "$", braces and ";" are carried (quoted) instead.
  const IFNAME_REFUSED = ['a"b', INJECT, 'a\nb', 'a\rb', 'a\\b', 'a\0b', 'a'.repeat(300), '\u05e9\u05dc\u05d5\u05dd\u05e9\u05dc\u05d5\u05dd'];
  const IFNAME_CARRIED = ['a$b', 'a{b}', 'a;b', 'caf\u00e9', 'a\u{1F600}', '-rf'];
  it.each(IFNAME_REFUSED)('CNI_IFNAME %j: code 4 naming it', (ifname) => {
    const err = cniError(() => readCniEnv(env({ CNI_IFNAME: ifname })));
    expect(err.cniCode).toBe(4);
    expect(err.message).toMatch(/invalid interface name .*: CNI_IFNAME$/);
  });
  it.each(IFNAME_CARRIED)('CNI_IFNAME %j: accepted, and its owner comment renders as one quoted nft string', (ifname) => {
    expect(readCniEnv(env({ CNI_IFNAME: ifname })).ifname).toBe(ifname);
    const owner = attachmentOwner('net', 'c1', ifname);
    const text = new NftTransaction().addRule(SHOAL_TABLE, 'l2_forward', 'iifname "x" drop', owner).render();
    expect(text).toBe(`add rule inet shoal l2_forward iifname "x" drop comment "${owner}"\n`);
    expect(hostVethName('net', 'c1', ifname)).toMatch(/^veth[0-9a-f]{8}$/);
  });

  it.each(IFNAME_REFUSED)('bridge %j in the config: code 7 naming "bridge"', async (bridge) => {
    const { parseBridgeConf } = await import('../../src/bridge/config.js');
    const err = cniError(() => parseBridgeConf({ cniVersion: '1.0.0', name: 'n', type: 'shoal-bridge', bridge, ipam: { type: 'shoal-ipam' } }));
    expect(err.cniCode).toBe(7);
    expect(err.message).toMatch(/^invalid network config: field "bridge": /);
  });

  it('bridge names nft cannot take bare get a hashed chain name', () => {
    for (const b of ['a$b', 'a{b}', 'a;b', 'caf\u00e9', '-rf']) expect(bridgeChainName(b)).toMatch(/^l2_brh_[0-9a-f]{12}$/);
  });
});

describe('owner comments stay inside nft limits', () => {
  it('attachment, portmap and DNS owners of the longest accepted names are valid comments', () => {
    const net = 'n'.repeat(124);
    const id = 'c'.repeat(300);
    const ifname = 'a\u{1F600}\u{1F600}\u{1F600}'; // 13 bytes
    for (const owner of [attachmentOwner(net, id, ifname), portmapOwner(net, id, ifname), dnsOwner(net), net]) {
      expect(Buffer.byteLength(owner)).toBeLessThanOrEqual(128);
      expect(() => new NftTransaction().addRule(SHOAL_TABLE, 'c', 'accept', owner)).not.toThrow();
    }
    expect(chainsOf(portmapOwner(net, id, ifname)).dnatChain).toMatch(/^[A-Za-z0-9_-]+$/);
  });
});

describe('the nft builder refuses what would end the command', () => {
  it.each(HOSTILE.filter(([, s]) => /["\0\n\r]/.test(s) || s.length > 128))('owner comment with %s is refused', (_what, owner) => {
    expect(() => new NftTransaction().addRule(SHOAL_TABLE, 'c', 'accept', owner)).toThrow(/comment/);
    expect(() => new NftTransaction().deleteRulesByOwner(SHOAL_TABLE, owner)).toThrow(/comment/);
  });
  it.each(HOSTILE.filter(([w]) => w !== '64-character label'))('chain, set and map named with %s are refused', (_what, name) => {
    expect(() => new NftTransaction().addChain(SHOAL_TABLE, name)).toThrow(/not a valid nft identifier/);
    expect(() => new NftTransaction().addSet(SHOAL_TABLE, name, { type: 'ipv4_addr' })).toThrow(/not a valid nft identifier/);
    expect(() => new NftTransaction().addMap(SHOAL_TABLE, name, { type: 'ipv4_addr', valueType: 'verdict' })).toThrow(/not a valid nft identifier/);
  });
  it.each([INJECT, 'accept; add table inet shoalx', 'accept\nadd table inet shoalx', 'accept # x', 'accept comment "x"'])('rule expression %j is refused', (expr) => {
    expect(() => new NftTransaction().addRule(SHOAL_TABLE, 'c', expr, 'o')).toThrow(/failed to build nftables transaction/);
  });
  it.each(['10.0.0.1 }; add rule inet shoal c accept; #', '10.0.0.1 } add table inet shoalx {', '1.2.3.4\nflush ruleset'])('element %j is refused', (el) => {
    expect(() => new NftTransaction().addElements(SHOAL_TABLE, 's', [el])).toThrow(/element/);
  });
});

describe('DNS names (K8S_POD_NAME, args.cni.name, aliases)', () => {
  const prevResult = { cniVersion: '1.0.0', ips: [{ address: '10.0.0.2/24', gateway: '10.0.0.1' }] };
  const base = { network: 'n', containerId: 'c1', ifname: 'eth0', prevResult };
  it.each(HOSTILE)('K8S_POD_NAME with %s: refused naming the container name', (_what, pod) => {
    expect(() => buildEndpoint({ ...base, cniArgs: { K8S_POD_NAME: pod } })).toThrow(EndpointInputError);
    expect(() => buildEndpoint({ ...base, cniArgs: { K8S_POD_NAME: pod } })).toThrow(/the container name/);
  });
  it.each(HOSTILE)('args.cni.name with %s: refused', (_what, name) => {
    expect(() => buildEndpoint({ ...base, cniArgs: {}, args: { cni: { name } } })).toThrow(EndpointInputError);
  });
  it('hostile aliases are not registered', () => {
    const aliases = HOSTILE.map(([, s]) => s);
    expect(endpointAliases({ aliases: { n: [...aliases, 'ok'] } }, 'n', 'web')).toEqual(['ok']);
    // ...and each is reported (the plugin logs them as a warning).
    expect(refusedAliases({ aliases: { n: [...aliases, 'ok', 7] } }, 'n').map((r) => r.alias)).toEqual([...aliases, 7]);
  });
});

describe('CLI', () => {
  async function usage(args: string[]): Promise<string> {
    try {
      await buildSpec([...args, '--', 'true']);
    } catch (err) {
      expect(err).toBeInstanceOf(UsageError);
      return (err as Error).message;
    }
    throw new Error('expected a UsageError');
  }
  it.each(HOSTILE)('shoal run --name / --network-alias / --dns-search / --add-host with %s: usage error naming the option', async (_what, s) => {
    expect(await usage([`--name=${s}`])).toMatch(/^invalid --name /);
    expect(await usage([`--network-alias=${s}`])).toMatch(/^invalid --network-alias /);
    expect(await usage([`--dns-search=${s}`])).toMatch(/^invalid --dns-search /);
    expect(await usage([`--add-host=${s}:10.0.0.1`])).toMatch(/^invalid --add-host /);
  });
  it('error messages show the value escaped, on one line', async () => {
    expect(await usage(['--dns-search=a\nnameserver 6.6.6.6'])).toBe('invalid --dns-search "a\\nnameserver 6.6.6.6": not a domain name (it may contain only letters, digits, "_", "-" and dots between labels)');
  });
  it('a resolv.conf line cannot be smuggled in through --add-host', async () => {
    expect(await usage(['--add-host=x:::1\nnameserver 6.6.6.6'])).toMatch(/^invalid --add-host /);
  });

  const store = {} as Store; // validation fails before the store is read
  const input = (over: Record<string, unknown>) => ({ name: 'n1', driver: 'bridge', subnets: [], gateways: [], ipRanges: [], ipv6: false, internal: false, attachable: false, options: {}, dns: [], dnsSearch: [], addHosts: [], confDir: '/nonexistent', stateDir: '/nonexistent', ...over });
  it.each(HOSTILE)('shoal network create NAME / --dns-search / --add-host with %s: refused naming it', async (_what, s) => {
    const plan = (over: Record<string, unknown>) => planNetwork(store, input(over) as never, [] as never);
    await expect(plan({ name: s })).rejects.toThrow(CreateInputError);
    await expect(plan({ name: s })).rejects.toThrow(/^invalid network name /);
    await expect(plan({ dnsSearch: [s] })).rejects.toThrow(/^invalid --dns-search /);
    await expect(plan({ addHosts: [`${s}:10.0.0.1`] })).rejects.toThrow(/^invalid --add-host /);
  });
});

describe('conflist dns and resolv.conf', () => {
  it.each(['a b', 'a\nnameserver 6.6.6.6', 'a\rb', 'a"b', 'a\\b', 'a\0b', '', 'a'.repeat(300)])('dns.search / dns.domain / dns.options entry %j: code 7 naming the field', (word) => {
    for (const [field, dns] of [['dns.search[0]', { search: [word] }], ['dns.domain', { domain: word }], ['dns.options[0]', { options: [word] }]] as const) {
      const err = cniError(() => parseNetConf({ cniVersion: '1.0.0', name: 'n', type: 'x', dns }));
      expect(err.cniCode).toBe(7);
      expect(err.message).toContain(`field "${field}"`);
    }
  });
  it('a plugin result cannot add resolv.conf lines or words', async () => {
    const { renderResolvConf } = await import('../../src/network/sandbox-files.js');
    const text = renderResolvConf({
      hostname: 'h', name: 'h', addresses: [], dns: [], dnsSearch: ['ok.example'], addHosts: [], hostNetwork: false, hostResolvConf: '',
      resultNameservers: ['10.0.0.1', '10.0.0.2\nnameserver 6.6.6.6'], resultSearch: ['x.example\nnameserver 6.6.6.6', 'a b', 'c\u00e9.example', 'fine.example'],
    } as never);
    expect(text).toBe('# written by shoal run\nsearch ok.example fine.example\nnameserver 10.0.0.1\n');
  });
});

describe('the DNS daemon firewall', () => {
  it('a network name that cannot be a comment costs only that network its rules, with a warning', () => {
    const warn = vi.fn();
    const texts: string[] = [];
    const fw = new DnsFirewall(53, { warn, debug: vi.fn() } as never, { apply: (tx) => texts.push(tx.render()), foreignDrops: () => [] });
    const net = (name: string, n: number) => ({ name, gateways: [`10.9.${n}.1`], subnets: [`10.9.${n}.0/24`] });
    expect(() => fw.sync([net(INJECT, 1), net('x'.repeat(200), 2), net('good', 3)])).not.toThrow();
    expect(fw.networks).toEqual(['good']);
    expect(texts).toHaveLength(1);
    expect(texts[0]).not.toContain('add rule inet shoal l2_forward');
    expect(texts[0]!.split('\n').filter((l) => l.startsWith('add rule'))).toEqual([
      'add rule inet shoal dns_input ip saddr 10.9.3.0/24 ip daddr 10.9.3.1 meta l4proto { tcp, udp } th dport 53 accept comment "dns:good"',
    ]);
    expect(warn).toHaveBeenCalledTimes(2);
    expect(warn.mock.calls[0]![0]).toMatchObject({ event: 'dns_firewall_network_skipped', network: INJECT });
    fw.sync([net(INJECT, 1), net('good', 3)]);
    expect(warn).toHaveBeenCalledTimes(2); // once per network
  });
});
