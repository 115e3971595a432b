/** The nftables builder's rendered text and its guards; no nft, no root. */
import { describe, expect, it } from 'vitest';
import { NftablesError } from '../../src/kernel/errors.js';
import { NftTransaction, SHOAL_NAT4, SHOAL_TABLE, type NftTableRef } from '../../src/kernel/nftables.js';
import { parseNftJson, rulesByOwner, type NftTableInfo } from '../../src/kernel/nftables-reader.js';

const T: NftTableRef = { family: 'inet', name: 'shoal-tunit' };

describe('NftTransaction.render', () => {
  it('renders tables, base chains, sets, maps and owned rules, one command per line, in order', () => {
    const tx = new NftTransaction()
      .addTable(SHOAL_TABLE)
      .addChain(SHOAL_TABLE, 'forward', { type: 'filter', hook: 'forward', priority: 0, policy: 'accept' })
      .addChain(SHOAL_NAT4, 'prerouting', { type: 'nat', hook: 'prerouting', priority: 'dstnat - 5' })
      .addChain(SHOAL_TABLE, 'net-a')
      .addSet(SHOAL_TABLE, 'nets', { type: 'ipv4_addr', flags: ['interval'], elements: ['10.88.0.0/16', '10.89.0.0/16'] })
      .addMap(SHOAL_TABLE, 'svc', { type: 'ipv4_addr . inet_service', valueType: 'verdict', elements: [['10.0.0.1 . 80', 'jump net-a']] })
      .addRule(SHOAL_TABLE, 'forward', 'ip saddr @nets counter accept', 'net-a/abc123/eth0')
      .addRule(SHOAL_TABLE, 'forward', 'iifname "br-a" drop', 'net-a', { insert: true })
      .flushChain(SHOAL_TABLE, 'net-a')
      .deleteRule(SHOAL_TABLE, 'forward', 7);
    expect(tx.render()).toBe(
      [
        'add table inet shoal',
        'add chain inet shoal forward { type filter hook forward priority 0 ; policy accept ; }',
        'add chain ip shoal-nat prerouting { type nat hook prerouting priority dstnat - 5 ; }',
        'add chain inet shoal net-a',
        'add set inet shoal nets { type ipv4_addr ; flags interval ; }',
        'add element inet shoal nets { 10.88.0.0/16, 10.89.0.0/16 }',
        'add map inet shoal svc { type ipv4_addr . inet_service : verdict ; }',
        'add element inet shoal svc { 10.0.0.1 . 80 : jump net-a }',
        'add rule inet shoal forward ip saddr @nets counter accept comment "net-a/abc123/eth0"',
        'insert rule inet shoal forward iifname "br-a" drop comment "net-a"',
        'flush chain inet shoal net-a',
        'delete rule inet shoal forward handle 7',
        '',
      ].join('\n'),
    );
  });

  it('makes deletes of tables, chains and set elements idempotent', () => {
    const text = new NftTransaction()
      .deleteTable(T)
      .deleteChain(T, 'c1')
      .deleteElements(T, 's', ['10.0.0.1'])
      .deleteElements(T, 'm', ['10.0.0.2'], { idempotent: false })
      .render();
    expect(text.split('\n')).toEqual([
      'add table inet shoal-tunit',
      'delete table inet shoal-tunit',
      'add chain inet shoal-tunit c1',
      'flush chain inet shoal-tunit c1',
      'delete chain inet shoal-tunit c1',
      'add element inet shoal-tunit s { 10.0.0.1 }',
      'delete element inet shoal-tunit s { 10.0.0.1 }',
      'delete element inet shoal-tunit m { 10.0.0.2 }',
      '',
    ]);
  });

  it('resolves delete-by-owner to the handles of exactly that owner', () => {
    const table: NftTableInfo = {
      family: 'inet',
      name: 'shoal-tunit',
      handle: 1,
      chains: [],
      sets: [],
      maps: [],
      rules: [
        { family: 'inet', table: 'shoal-tunit', chain: 'a', handle: 4, comment: 'c1/eth0', expr: [] },
        { family: 'inet', table: 'shoal-tunit', chain: 'b', handle: 5, comment: 'c1/eth0', expr: [] },
        { family: 'inet', table: 'shoal-tunit', chain: 'a', handle: 6, comment: 'c1/eth01', expr: [] },
        { family: 'inet', table: 'shoal-tunit', chain: 'a', handle: 7, expr: [] },
      ],
    };
    const tx = new NftTransaction().deleteRulesByOwner(T, 'c1/eth0');
    expect(tx.needsLookup).toBe(true);
    expect(tx.render(() => table)).toBe('delete rule inet shoal-tunit a handle 4\ndelete rule inet shoal-tunit b handle 5\n');
    expect(new NftTransaction().deleteRulesByOwner(T, 'c1/eth0', { chain: 'b' }).render(() => table)).toBe('delete rule inet shoal-tunit b handle 5\n');
    expect(rulesByOwner(table, 'c1/', { prefix: true }).map((r) => r.handle)).toEqual([4, 5, 6]);
    // A missing table (or no match) renders nothing: DEL of something already gone succeeds.
    expect(tx.render(() => undefined)).toBe('');
  });
});

describe('guards', () => {
  const refuse = (f: () => unknown, re: RegExp) => {
    expect(f).toThrow(NftablesError);
    expect(f).toThrow(re);
  };

  it('refuses any table whose name does not start with "shoal"', () => {
    for (const name of ['filter', 'nat', 'Shoal', 'xshoal']) {
      refuse(() => new NftTransaction().addTable({ family: 'inet', name }), /starts with "shoal"/);
      refuse(() => new NftTransaction().deleteTable({ family: 'ip', name }), /starts with "shoal"/);
      refuse(() => new NftTransaction().addRule({ family: 'ip', name }, 'c', 'accept', 'o'), /starts with "shoal"/);
    }
    refuse(() => new NftTransaction().addTable({ family: 'inet', name: 'shoal x' }), /identifier/);
    refuse(() => new NftTransaction().addTable({ family: 'foo' as 'inet', name: 'shoal' }), /family/);
  });

  it('refuses ops smuggled in as data past the builder methods', () => {
    const tx = new NftTransaction();
    (tx.ops as unknown as object[]).push({ op: 'flushTable', table: { family: 'inet', name: 'filter' } });
    refuse(() => tx.render(), /starts with "shoal"/);
  });

  it('keeps comments inside their quotes: no quote, no line break, spaces are fine', () => {
    const ok = new NftTransaction().addRule(T, 'c', 'accept', "net a/it's $x \\ z").render();
    expect(ok).toBe(`add rule inet shoal-tunit c accept comment "net a/it's $x \\ z"\n`);
    refuse(() => new NftTransaction().addRule(T, 'c', 'accept', 'x" ; flush ruleset ; "'), /double quotes/);
    refuse(() => new NftTransaction().addRule(T, 'c', 'accept', 'x\nflush ruleset'), /double quotes or control/);
    refuse(() => new NftTransaction().addRule(T, 'c', 'accept', 'x'.repeat(129)), /128 bytes/);
    refuse(() => new NftTransaction().addRule(T, 'c', 'accept', ''), /empty/);
    refuse(() => new NftTransaction().deleteRulesByOwner(T, 'a"b'), /double quotes/);
  });

  it('keeps rule expressions and elements to one command', () => {
    refuse(() => new NftTransaction().addRule(T, 'c', 'accept; flush ruleset', 'o'), /";"/);
    refuse(() => new NftTransaction().addRule(T, 'c', 'accept\nflush ruleset', 'o'), /line breaks/);
    refuse(() => new NftTransaction().addRule(T, 'c', 'accept # x', 'o'), /"#"/);
    refuse(() => new NftTransaction().addRule(T, 'c', 'iifname "x drop', 'o'), /unbalanced/);
    refuse(() => new NftTransaction().addRule(T, 'c', 'accept comment "other"', 'o'), /owner comment/);
    refuse(() => new NftTransaction().addElements(T, 's', ['1.2.3.4 } ']), /braces/);
    refuse(() => new NftTransaction().addElements(T, 's', []), /no elements/);
    refuse(() => new NftTransaction().addChain(T, 'c', { type: 'filter', hook: 'input', priority: 'filter; x' }), /priority/);
    refuse(() => new NftTransaction().addSet(T, 's', { type: 'ipv4_addr; flush' }), /set type/);
    refuse(() => new NftTransaction().deleteRule(T, 'c', 0), /handle/);
    refuse(() => new NftTransaction().flushChain(T, 'a b'), /identifier/);
  });
});

describe('parseNftJson', () => {
  it('groups libnftables JSON into typed tables', () => {
    const json = JSON.stringify({
      nftables: [
        { metainfo: { version: '1.0.6', json_schema_version: 1 } },
        { table: { family: 'inet', name: 'shoal-tunit', handle: 3 } },
        { set: { family: 'inet', name: 's', table: 'shoal-tunit', type: 'ipv4_addr', handle: 3, flags: ['interval'], elem: [{ prefix: { addr: '10.0.0.0', len: 24 } }] } },
        { map: { family: 'inet', name: 'm', table: 'shoal-tunit', type: 'ipv4_addr', handle: 4, map: 'ipv4_addr', elem: [['10.0.0.1', '1.2.3.4']] } },
        { chain: { family: 'inet', table: 'shoal-tunit', name: 'forward', handle: 1, type: 'filter', hook: 'forward', prio: -100, policy: 'accept' } },
        { chain: { family: 'inet', table: 'shoal-tunit', name: 'x', handle: 8 } },
        { rule: { family: 'inet', table: 'shoal-tunit', chain: 'forward', handle: 5, comment: 'own1', expr: [{ accept: null }] } },
        { rule: { family: 'inet', table: 'shoal-tunit', chain: 'forward', handle: 6, expr: [] } },
      ],
    });
    const [t] = parseNftJson(json, 'list table');
    expect(t?.chains).toEqual([
      { family: 'inet', table: 'shoal-tunit', name: 'forward', handle: 1, type: 'filter', hook: 'forward', priority: -100, policy: 'accept' },
      { family: 'inet', table: 'shoal-tunit', name: 'x', handle: 8 },
    ]);
    expect(t?.rules.map((r) => [r.handle, r.comment])).toEqual([[5, 'own1'], [6, undefined]]);
    expect(t?.sets[0]).toMatchObject({ name: 's', type: 'ipv4_addr', flags: ['interval'] });
    expect(t?.maps[0]).toMatchObject({ name: 'm', valueType: 'ipv4_addr', elements: [['10.0.0.1', '1.2.3.4']] });
    expect(() => parseNftJson('not json', 'x')).toThrow(NftablesError);
  });
});
