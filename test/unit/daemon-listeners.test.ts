import { describe, expect, it, vi } from 'vitest';
import { desiredListenAddresses, diffListeners, ListenerReconciler } from '../../src/daemon/listeners.js';

function addrNotAvail(address: string): Error {
  const cause = Object.assign(new Error(`bind EADDRNOTAVAIL ${address}:53`), { code: 'EADDRNOTAVAIL' });
  return Object.assign(new Error(`failed to listen on "${address}:53": ${cause.message}`, { cause }), { code: 'DNS_LISTEN_FAILED' });
}

describe('listener diff', () => {
  it('adds the missing, removes the gone, leaves the unchanged alone', () => {
    expect(diffListeners(['10.0.0.1', '10.0.1.1'], ['10.0.1.1', '10.0.2.1'])).toEqual({ add: ['10.0.2.1'], remove: ['10.0.0.1'] });
    expect(diffListeners(['a'], ['a'])).toEqual({ add: [], remove: [] });
    expect(diffListeners([], [])).toEqual({ add: [], remove: [] });
  });

  it('wants every gateway once, without prefixes and without link-local IPv6', () => {
    const nets = [
      { name: 'a', gateways: ['10.0.0.1', 'fd00::1'] },
      { name: 'b', gateways: ['10.0.0.1/24', 'fe80::1'] },
      { name: 'c' },
    ];
    expect(desiredListenAddresses(nets)).toEqual(['10.0.0.1', 'fd00::1']);
  });
});

describe('ListenerReconciler', () => {
  it('opens and closes through the ops, keeping unchanged listeners untouched', async () => {
    const ops = { add: vi.fn(async () => undefined), remove: vi.fn(async () => undefined) };
    const r = new ListenerReconciler(ops, 53);
    await r.reconcile(['10.0.0.1', '10.0.1.1']);
    expect(ops.add.mock.calls).toEqual([['10.0.0.1', 53], ['10.0.1.1', 53]]);
    await r.reconcile(['10.0.1.1', '10.0.2.1']);
    expect(ops.add.mock.calls.slice(2)).toEqual([['10.0.2.1', 53]]);
    expect(ops.remove.mock.calls).toEqual([['10.0.0.1', 53]]);
    expect([...r.active].sort()).toEqual(['10.0.1.1', '10.0.2.1']);
    await r.closeAll();
    expect(r.active.size).toBe(0);
  });

  it('keeps an address that is not on the host yet pending, logs it once, and binds it on a later reconcile', async () => {
    let present = false;
    const ops = {
      add: vi.fn(async (a: string) => {
        if (!present) throw addrNotAvail(a);
      }),
      remove: vi.fn(async () => undefined),
    };
    const logger = { info: vi.fn(), warn: vi.fn() };
    const r = new ListenerReconciler(ops, 53, logger as never);
    await r.reconcile(['10.9.0.1']);
    await r.reconcile(['10.9.0.1']);
    expect(r.pending.get('10.9.0.1')).toBe('EADDRNOTAVAIL');
    expect(r.active.size).toBe(0);
    const pendingLogs = logger.info.mock.calls.filter((c) => (c[0] as { event: string }).event === 'dns_listener_pending');
    expect(pendingLogs).toHaveLength(1);
    present = true;
    await r.reconcile(['10.9.0.1']);
    expect([...r.active]).toEqual(['10.9.0.1']);
    expect(r.pending.size).toBe(0);
    expect(logger.info.mock.calls.some((c) => (c[0] as { event: string }).event === 'dns_listener_recovered')).toBe(true);
  });

  it('forgets a pending address whose network went away, and survives a failing remove', async () => {
    const ops = { add: vi.fn(async (a: string) => Promise.reject(addrNotAvail(a))), remove: vi.fn(async () => Promise.reject(new Error('x'))) };
    const r = new ListenerReconciler(ops, 53);
    await r.reconcile(['10.9.0.1']);
    await r.reconcile([]);
    expect(r.pending.size).toBe(0);
  });
});
