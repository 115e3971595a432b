import { describe, expect, it } from 'vitest';
import { seededRandom } from '../helpers/random.js';
import { desiredPeers, diffPeers, emptyPeers, type CurrentPeers, type DesiredPeers, type PeerOp, type RemoteEndpoint } from '../../src/overlay/peers.js';

const A = '192.0.2.1';
const B = '192.0.2.2';
const C = '192.0.2.3';
const ep = (vtep: string, last: number, ip = `10.197.0.${last}`): RemoteEndpoint => ({ vtep, mac: `02:5c:0a:c5:00:${last.toString(16).padStart(2, '0')}`, ip });
const mac = (last: number) => `02:5c:0a:c5:00:${last.toString(16).padStart(2, '0')}`;

function desired(endpoints: RemoteEndpoint[], localVtep?: string): DesiredPeers {
  return desiredPeers(endpoints, localVtep === undefined ? {} : { localVtep }).desired;
}

/** What the kernel would hold after applying `desired` from scratch. */
function programmed(d: DesiredPeers): CurrentPeers {
  const c = emptyPeers();
  for (const [m, vtep] of d.remotes) {
    c.remotes.set(m, [vtep]);
  }
  for (const [ip, m] of d.neighbours) c.neighbours.set(ip, m);
  return c;
}

/** Applies ops to a model of the kernel (replace moves the first destination, as the kernel does). */
function apply(current: CurrentPeers, ops: PeerOp[]): CurrentPeers {
  const c: CurrentPeers = {
    remotes: new Map([...current.remotes].map(([k, v]) => [k, [...v]])),
    neighbours: new Map(current.neighbours),
    foreignMacs: new Set(current.foreignMacs),
    foreignIps: new Set(current.foreignIps),
  };
  for (const o of ops) {
    if (o.op === 'set-remote') {
      const list = c.remotes.get(o.mac) ?? [];
      if (list.length === 0) list.push(o.vtep);
      else list[0] = o.vtep;
      c.remotes.set(o.mac, list);
    } else if (o.op === 'del-remote') {
      const list = (c.remotes.get(o.mac) ?? []).filter((v) => v !== o.vtep);
      if (list.length) c.remotes.set(o.mac, list);
      else c.remotes.delete(o.mac);
    } else if (o.op === 'set-neighbour') c.neighbours.set(o.ip, o.mac);
    else c.neighbours.delete(o.ip);
  }
  return c;
}

describe('desiredPeers', () => {
  it('maps each remote endpoint to a VTEP per MAC and a MAC per IP, leaving out the local VTEP', () => {
    const { desired: d, problems } = desiredPeers([ep(A, 11), ep(B, 21), ep(C, 31)], { localVtep: A });
    expect([...d.remotes]).toEqual([
      [mac(21), B],
      [mac(31), C],
    ]);
    expect([...d.neighbours]).toEqual([
      ['10.197.0.21', mac(21)],
      ['10.197.0.31', mac(31)],
    ]);
    expect(problems).toEqual([]);
  });

  it('normalises text (MAC case, IPv6 form, CIDR prefixes) so the same endpoint compares equal', () => {
    const { desired: d } = desiredPeers([
      { vtep: 'FD00:0:0::2', mac: '02:5C:0A:C5:00:15', ip: '10.197.0.21/24' },
      { vtep: 'fd00::2', mac: '02:5c:0a:c5:00:15', ip: 'fd97:0::15' },
    ]);
    expect([...d.remotes]).toEqual([[mac(21), 'fd00::2']]);
    expect([...d.neighbours].sort()).toEqual([
      ['10.197.0.21', mac(21)],
      ['fd97::15', mac(21)],
    ]);
  });

  it('reports malformed records and settles conflicts the same way whatever the input order', () => {
    const input: RemoteEndpoint[] = [
      ep(C, 21),
      ep(B, 21),
      { vtep: B, mac: '02:5c:0a:c5:00:99', ip: '10.197.0.21' },
      { vtep: 'nope', mac: mac(40), ip: '10.197.0.40' },
      { vtep: B, mac: '01:00:5e:00:00:01', ip: '10.197.0.41' },
      { vtep: B, mac: '00:00:00:00:00:00', ip: '10.197.0.42' },
      { vtep: B, mac: mac(43), ip: 'x' },
    ];
    const forward = desiredPeers(input);
    const backward = desiredPeers([...input].reverse());
    expect([...forward.desired.remotes].sort()).toEqual([...backward.desired.remotes].sort());
    expect([...forward.desired.neighbours]).toEqual([...backward.desired.neighbours]);
    // MAC 21 from B and C: the lower VTEP wins. IP .21 with two MACs: the lower MAC wins.
    expect(forward.desired.remotes.get(mac(21))).toBe(B);
    expect(forward.desired.neighbours.get('10.197.0.21')).toBe(mac(21));
    expect(forward.problems).toEqual(
      expect.arrayContaining([
        expect.stringContaining(`MAC ${mac(21)} is announced by VTEPs ${B} and ${C}`),
        expect.stringContaining(`IP 10.197.0.21 is announced with MACs ${mac(21)} and 02:5c:0a:c5:00:99`),
        expect.stringContaining('vtep is not an IP address'),
        expect.stringContaining('mac is not a unicast MAC address'),
        expect.stringContaining('ip is not an IP address'),
      ]),
    );
    expect(forward.problems.filter((p) => p.includes('unicast MAC'))).toHaveLength(2);
  });
});

describe('diffPeers', () => {
  it('from nothing: every remote FDB entry, then the neighbours (never a neighbour before its FDB entry)', () => {
    const plan = diffPeers(emptyPeers(), desired([ep(B, 21), ep(C, 31)]));
    expect(plan.ops).toEqual([
      { op: 'set-remote', mac: mac(21), vtep: B },
      { op: 'set-remote', mac: mac(31), vtep: C },
      { op: 'set-neighbour', ip: '10.197.0.21', mac: mac(21) },
      { op: 'set-neighbour', ip: '10.197.0.31', mac: mac(31) },
    ]);
    expect(plan.problems).toEqual([]);
  });

  it('in sync: nothing to do', () => {
    const d = desired([ep(B, 21), ep(C, 31), ep(C, 32)]);
    expect(diffPeers(programmed(d), d)).toEqual({ ops: [], problems: [] });
  });

  it('an endpoint gone: its neighbour first, then its remote entry; nothing else touched', () => {
    const before = desired([ep(B, 21), ep(C, 31)]);
    const plan = diffPeers(programmed(before), desired([ep(B, 21)]));
    expect(plan.ops).toEqual([
      { op: 'del-neighbour', ip: '10.197.0.31', mac: mac(31) },
      { op: 'del-remote', mac: mac(31), vtep: C },
    ]);
  });

  it('a MAC moved to another node: the remote entry is replaced in place (no gap), the neighbour stays', () => {
    const plan = diffPeers(programmed(desired([ep(B, 21)])), desired([ep(C, 21)]));
    expect(plan.ops).toEqual([{ op: 'set-remote', mac: mac(21), vtep: C, from: B }]);
  });

  it('an IP handed to another MAC rewrites only the neighbour and the MACs', () => {
    const plan = diffPeers(programmed(desired([ep(B, 21)])), desired([{ vtep: B, mac: mac(22), ip: '10.197.0.21' }]));
    expect(plan.ops).toEqual([
      { op: 'set-remote', mac: mac(22), vtep: B },
      { op: 'set-neighbour', ip: '10.197.0.21', mac: mac(22), from: mac(21) },
      { op: 'del-remote', mac: mac(21), vtep: B },
    ]);
  });

  it('extra destinations of a MAC (appended by hand or a half-applied move) are removed', () => {
    const current = programmed(desired([ep(B, 21)]));
    current.remotes.set(mac(21), [C, B, A]);
    expect(diffPeers(current, desired([ep(B, 21)])).ops).toEqual([
      { op: 'del-remote', mac: mac(21), vtep: C },
      { op: 'del-remote', mac: mac(21), vtep: A },
    ]);
    current.remotes.set(mac(21), [C, A]);
    expect(diffPeers(current, desired([ep(B, 21)])).ops).toEqual([
      { op: 'set-remote', mac: mac(21), vtep: B, from: C },
      { op: 'del-remote', mac: mac(21), vtep: A },
    ]);
  });

  it('entries someone else made are never removed or overwritten, and are reported', () => {
    const current = emptyPeers();
    current.foreignMacs.add(mac(21));
    current.foreignIps.add('10.197.0.31');
    const plan = diffPeers(current, desired([ep(B, 21), ep(C, 31)]));
    expect(plan.ops).toEqual([
      { op: 'set-remote', mac: mac(31), vtep: C },
      { op: 'set-neighbour', ip: '10.197.0.21', mac: mac(21) },
    ]);
    expect(plan.problems).toEqual([
      `MAC ${mac(21)}: an FDB entry Shoal did not make is in the way; left alone`,
      'IP 10.197.0.31: a permanent neighbour entry Shoal did not make is in the way; left alone',
    ]);
    // With nothing desired, foreign entries produce no operation at all.
    expect(diffPeers(current, desired([])).ops).toEqual([]);
  });

  it('converges: applying the plan to any starting state yields exactly the desired state, and a second diff is empty', () => {
    const r = seededRandom();
    const vteps = [A, B, C];
    let state = emptyPeers();
    for (let round = 0; round < 200; round++) {
      const endpoints: RemoteEndpoint[] = [];
      for (let i = r.int(8); i > 0; i--) {
        const last = 10 + r.int(12);
        endpoints.push({ vtep: vteps[r.int(3)]!, mac: mac(last + r.int(2)), ip: `10.197.0.${last}` });
      }
      const d = desired(endpoints);
      const plan = diffPeers(state, d);
      // At every step of the plan, each neighbour's MAC has its FDB entry.
      let partial = state;
      for (const o of plan.ops) {
        partial = apply(partial, [o]);
        for (const m of partial.neighbours.values()) expect(partial.remotes.has(m), `seed ${r.seed}, round ${round}`).toBe(true);
      }
      state = partial;
      expect(state.remotes, `seed ${r.seed}`).toEqual(new Map([...d.remotes].map(([k, v]) => [k, [v]])));
      expect(state.neighbours, `seed ${r.seed}`).toEqual(d.neighbours);
      expect(diffPeers(state, d).ops, `seed ${r.seed}`).toEqual([]);
    }
  });
});
