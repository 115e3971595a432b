/**
 * The nftables builder against the kernel. Everything is read back with raw `nft` calls and
 * JSON.parse, independent of our reader. Only `shoal-tnft<run id>...` tables are created; a
 * sentinel table made with plain nft (not the builder) and every non-Shoal table must be
 * byte-for-byte unchanged at the end.
 */
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NftablesError } from '../../src/kernel/errors.js';
import { applyTransaction, checkTransaction, NftTransaction, type NftTableRef } from '../../src/kernel/nftables.js';
import { listShoalTables, readTable } from '../../src/kernel/nftables-reader.js';
import { testRunId, uniqueName } from '../helpers/names.js';

const OURS = `shoal-tnft${testRunId()}`;
const newTable = (family: NftTableRef['family'] = 'inet'): NftTableRef => ({ family, name: `shoal-t${uniqueName('nft')}` });

function nft(args: string[], input?: string): string {
  return execFileSync('nft', args, { encoding: 'utf8', ...(input === undefined ? {} : { input }) });
}

/** Every table as `family name`. */
function tables(): string[] {
  return nft(['list', 'tables'])
    .split('\n')
    .filter(Boolean)
    .map((l) => l.replace(/^table /, ''));
}

/** Stateless text (no counters) of every table that is not a Shoal test table, plus the sentinel. */
function foreignSnapshot(sentinel: string): Map<string, string> {
  const snap = new Map<string, string>();
  for (const t of tables()) {
    const name = t.split(' ')[1] ?? '';
    if (name.startsWith('shoal') && name !== sentinel) continue; // other engineers' tests come and go
    snap.set(t, nft(['-s', 'list', 'table', ...t.split(' ')]));
  }
  return snap;
}

interface RawItems {
  chains: Array<Record<string, unknown>>;
  rules: Array<{ chain: string; handle: number; comment?: string }>;
  sets: Array<Record<string, unknown>>;
  maps: Array<Record<string, unknown>>;
}

/** The table through `nft -j list table` and JSON.parse only; undefined when missing. */
function raw(t: NftTableRef): RawItems | undefined {
  let out: string;
  try {
    out = execFileSync('nft', ['-j', 'list', 'table', t.family, t.name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch {
    return undefined;
  }
  const items = (JSON.parse(out) as { nftables: Array<Record<string, Record<string, unknown>>> }).nftables;
  const pick = (k: string) => items.filter((i) => i[k]).map((i) => i[k]!);
  return { chains: pick('chain'), rules: pick('rule') as unknown as RawItems['rules'], sets: pick('set'), maps: pick('map') };
}

const created: NftTableRef[] = [];
let sentinel: NftTableRef;
let before: Map<string, string>;

beforeAll(() => {
  sentinel = newTable('ip');
  created.push(sentinel);
  nft(['-f', '-'], [
    `add table ip ${sentinel.name}`,
    `add chain ip ${sentinel.name} input { type filter hook input priority 10 ; policy accept ; }`,
    `add set ip ${sentinel.name} keep { type ipv4_addr ; }`,
    `add element ip ${sentinel.name} keep { 192.0.2.1 }`,
    `add rule ip ${sentinel.name} input ip saddr @keep accept comment "owner-a"`,
    '',
  ].join('\n'));
  before = foreignSnapshot(sentinel.name);
});

afterAll(() => {
  // Compare before cleaning up, so the sentinel is still there to compare.
  const after = foreignSnapshot(sentinel.name);
  for (const t of created) execFileSync('nft', ['-f', '-'], { input: `add table ${t.family} ${t.name}\ndelete table ${t.family} ${t.name}\n` });
  expect(after).toEqual(before);
  expect(tables().filter((t) => t.includes(OURS))).toEqual([]);
});

function withTable(family: NftTableRef['family'] = 'inet'): NftTableRef {
  const t = newTable(family);
  created.push(t);
  return t;
}

describe('apply', () => {
  it('creates chains, sets, maps and owned rules that the kernel reports back', () => {
    const t = withTable();
    const tx = new NftTransaction()
      .addTable(t)
      .addChain(t, 'forward', { type: 'filter', hook: 'forward', priority: -100, policy: 'accept' })
      .addChain(t, 'prerouting', { type: 'nat', hook: 'prerouting', priority: 'dstnat - 5' })
      .addChain(t, 'net-a')
      .addSet(t, 'nets', { type: 'ipv4_addr', flags: ['interval'], elements: ['10.88.0.0/16'] })
      .addMap(t, 'svc', { type: 'ipv4_addr', valueType: 'verdict', elements: [['10.0.0.1', 'jump net-a']] })
      .addRule(t, 'forward', 'ip saddr @nets counter accept', 'net-a/c1/eth0')
      .addRule(t, 'forward', 'ip daddr vmap @svc', 'net-a')
      .addRule(t, 'net-a', 'tcp dport { 80, 443 } accept', 'net-a/c1/eth0');
    applyTransaction(tx);

    const r = raw(t)!;
    expect(r.chains.find((c) => c.name === 'forward')).toMatchObject({ type: 'filter', hook: 'forward', prio: -100, policy: 'accept' });
    expect(r.chains.find((c) => c.name === 'prerouting')).toMatchObject({ type: 'nat', hook: 'prerouting', prio: -105 });
    expect(r.chains.find((c) => c.name === 'net-a')?.hook).toBeUndefined();
    expect(r.rules.map((x) => [x.chain, x.comment])).toEqual([
      ['forward', 'net-a/c1/eth0'],
      ['forward', 'net-a'],
      ['net-a', 'net-a/c1/eth0'],
    ]);
    expect(r.sets[0]).toMatchObject({ name: 'nets', elem: [{ prefix: { addr: '10.88.0.0', len: 16 } }] });
    expect(r.maps[0]).toMatchObject({ name: 'svc', map: 'verdict' });

    // Our reader agrees with the raw JSON on handles and comments.
    const read = readTable(t)!;
    expect(read.rules.map((x) => [x.chain, x.handle, x.comment])).toEqual(r.rules.map((x) => [x.chain, x.handle, x.comment]));
    expect(read.chains.find((c) => c.name === 'prerouting')).toMatchObject({ type: 'nat', hook: 'prerouting', priority: -105, policy: 'accept' });
    expect(listShoalTables().some((x) => x.name === t.name)).toBe(true);
    expect(listShoalTables().every((x) => x.name.startsWith('shoal'))).toBe(true);
    expect(readTable(newTable())).toBeUndefined();
  });

  it('is atomic: one bad rule and nothing of the transaction is applied', () => {
    const t = withTable();
    applyTransaction(new NftTransaction().addTable(t).addChain(t, 'c').addRule(t, 'c', 'accept', 'keep'));
    const textBefore = nft(['-s', 'list', 'table', t.family, t.name]);
    const fresh = withTable();
    const bad = new NftTransaction()
      .addTable(fresh)
      .addRule(t, 'c', 'ip saddr 10.0.0.1 drop', 'new')
      .flushChain(t, 'c')
      .addRule(t, 'c', 'ip saddr 999.1.1.1 drop', 'new');
    expect(() => applyTransaction(bad)).toThrow(NftablesError);
    try {
      applyTransaction(bad);
    } catch (err) {
      expect((err as NftablesError).stderr).toMatch(/999\.1\.1\.1/);
      expect((err as NftablesError).message).toMatch(/^failed to apply nftables transaction on/);
    }
    expect(nft(['-s', 'list', 'table', t.family, t.name])).toBe(textBefore);
    expect(raw(fresh)).toBeUndefined();
    expect(() => checkTransaction(bad)).toThrow(NftablesError);
  });

  it('checkTransaction validates without changing anything', () => {
    const t = withTable();
    expect(checkTransaction(new NftTransaction().addTable(t).addChain(t, 'c'))).toContain(`add table inet ${t.name}`);
    expect(raw(t)).toBeUndefined();
  });
});

describe('delete by owner', () => {
  it('removes exactly that owner\'s rules, in every chain, and is a no-op the second time', () => {
    const t = withTable('ip');
    const tx = new NftTransaction().addTable(t).addChain(t, 'a').addChain(t, 'b');
    for (const [chain, owner] of [['a', 'net1/c1/eth0'], ['a', 'net1/c2/eth0'], ['b', 'net1/c1/eth0'], ['b', 'net1/c1/eth01'], ['a', 'net1']] as const) {
      tx.addRule(t, chain, 'ip daddr 10.1.0.1 accept', owner);
    }
    applyTransaction(tx);
    const handlesBefore = raw(t)!.rules.filter((r) => r.comment !== 'net1/c1/eth0').map((r) => r.handle);

    applyTransaction(new NftTransaction().deleteRulesByOwner(t, 'net1/c1/eth0'));
    const left = raw(t)!.rules;
    expect(left.map((r) => r.comment).sort()).toEqual(['net1', 'net1/c1/eth01', 'net1/c2/eth0']);
    expect(left.map((r) => r.handle)).toEqual(handlesBefore);

    expect(applyTransaction(new NftTransaction().deleteRulesByOwner(t, 'net1/c1/eth0'))).toBe('');
    applyTransaction(new NftTransaction().deleteRulesByOwner(t, 'net1/', { prefix: true }));
    expect(raw(t)!.rules.map((r) => r.comment)).toEqual(['net1']);
    // A table that does not exist has no rules of anyone: success.
    expect(() => applyTransaction(new NftTransaction().deleteRulesByOwner(newTable(), 'x'))).not.toThrow();
  });

  it('deletes tables, chains and set elements idempotently', () => {
    const t = withTable();
    applyTransaction(new NftTransaction().addTable(t).addChain(t, 'c').addRule(t, 'c', 'accept', 'o').addSet(t, 's', { type: 'ipv4_addr', elements: ['10.0.0.1'] }));
    applyTransaction(new NftTransaction().deleteElements(t, 's', ['10.0.0.1', '10.0.0.2']).deleteChain(t, 'c').deleteChain(t, 'gone'));
    const r = raw(t)!;
    expect(r.chains).toEqual([]);
    expect(r.sets[0]?.elem).toBeUndefined();
    applyTransaction(new NftTransaction().deleteTable(t));
    expect(raw(t)).toBeUndefined();
    expect(() => applyTransaction(new NftTransaction().deleteTable(t))).not.toThrow();
  });
});

describe('comments', () => {
  it('round-trip exactly with spaces, single quotes, $ and backslashes; a double quote is refused before nft runs', () => {
    const t = withTable();
    const owner = "net a/it's $x \\ {y}";
    applyTransaction(new NftTransaction().addTable(t).addChain(t, 'c').addRule(t, 'c', 'accept', owner));
    expect(raw(t)!.rules.map((r) => r.comment)).toEqual([owner]);
    const snapshot = nft(['-s', 'list', 'table', t.family, t.name]);
    expect(() => new NftTransaction().addRule(t, 'c', 'accept', 'x" ; flush ruleset ; add rule inet shoal c accept comment "')).toThrow(NftablesError);
    expect(nft(['-s', 'list', 'table', t.family, t.name])).toBe(snapshot);
    expect(foreignSnapshot(sentinel.name)).toEqual(before);
    applyTransaction(new NftTransaction().deleteRulesByOwner(t, owner));
    expect(raw(t)!.rules).toEqual([]);
  });
});
