import { describe, expect, it } from 'vitest';
import { buildSpec, drainTimeoutOf, maxQueueOf, parseDuration, parsePortSpec, queueTimeoutOf, ServiceError } from '../../src/service/model.js';
import { HealthChecker, observe, INITIAL_HEALTH, type HealthState, type HealthTarget } from '../../src/service/health.js';
import { createPolicy } from '../../src/lb/policy.js';
import { proxyHeaderV1, proxyHeaderV2 } from '../../src/lb/proxy-protocol.js';

describe('service model', () => {
  it('parses port specs', () => {
    expect(parsePortSpec('8080:80')).toEqual({ published: 8080, target: 80, protocol: 'tcp', mode: 'ingress' });
    expect(parsePortSpec('mode=host,53:5353/udp')).toEqual({ published: 53, target: 5353, protocol: 'udp', mode: 'host' });
    for (const bad of ['80', '0:80', '80:70000', '80:80/sctp', 'mode=x,1:2', 'a:b']) expect(() => parsePortSpec(bad), bad).toThrow(ServiceError);
  });

  it('parses durations', () => {
    expect(parseDuration('2s')).toBe(2000);
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('1m')).toBe(60_000);
    expect(() => parseDuration('10ms')).toThrow(/between/);
    expect(() => parseDuration('soon')).toThrow(/expected/);
  });

  it('defaults to HAProxy health settings, a vip, rr and the kernel path', () => {
    const s = buildSpec({ name: 'web', network: 'n', ports: ['8080:80'] });
    expect(s).toMatchObject({ endpointMode: 'vip', lbPolicy: 'rr', lbMode: 'kernel', health: { kind: 'tcp', intervalMs: 2000, timeoutMs: 2000, rise: 2, fall: 3 } });
    expect(buildSpec({ name: 'db', network: 'n' }).health.kind).toBe('none');
  });

  it('refuses what a data path cannot do, and bad names', () => {
    expect(() => buildSpec({ name: 'web', network: 'n', ports: ['1:2'], lbPolicy: 'leastconn' })).toThrow(/proxy/);
    expect(() => buildSpec({ name: 'web', network: 'n', ports: ['1:2'], proxyProtocol: 'v2' })).toThrow(/proxy/);
    expect(() => buildSpec({ name: 'Web_1', network: 'n' })).toThrow(/DNS label/);
    expect(() => buildSpec({ name: 'web' })).toThrow(/--network/);
    expect(() => buildSpec({ name: 'web', network: 'n', health: 'tcp' })).toThrow(/needs a port/);
    expect(() => buildSpec({ name: 'web', network: 'n', ports: ['1:2', '1:3'] })).toThrow(/twice/);
  });

  it('update keeps what is not given and refuses a network or mode change', () => {
    const base = buildSpec({ name: 'web', network: 'n', ports: ['8080:80'], health: 'http:/healthz', healthInterval: '500ms' });
    const next = buildSpec({ name: 'web', lbPolicy: 'random' }, base);
    expect(next).toMatchObject({ network: 'n', ports: base.ports, health: { kind: 'http', path: '/healthz', intervalMs: 500 }, lbPolicy: 'random' });
    expect(() => buildSpec({ name: 'web', network: 'm' }, base)).toThrow(/network cannot change/);
    expect(() => buildSpec({ name: 'web', endpointMode: 'dnsrr' }, base)).toThrow(/endpoint mode/);
  });

  it('drain timeout: 30 s unless given, kept by update, a duration', () => {
    const base = buildSpec({ name: 'web', network: 'n', ports: ['8080:80'] });
    expect(base.drainTimeoutMs).toBeUndefined();
    expect(drainTimeoutOf(base)).toBe(30_000);
    const short = buildSpec({ name: 'web', drainTimeout: '1s' }, base);
    expect(drainTimeoutOf(short)).toBe(1000);
    expect(drainTimeoutOf(buildSpec({ name: 'web', lbPolicy: 'random' }, short))).toBe(1000);
    expect(() => buildSpec({ name: 'web', drainTimeout: 'never' }, base)).toThrow(/drain timeout/);
  });

  it('affinity: client-ip with kube-proxy\'s 3 h default or a timeout, on either path, none removes it', () => {
    const base = buildSpec({ name: 'web', network: 'n', ports: ['8080:80'] });
    expect(base.affinity).toBeUndefined();
    expect(buildSpec({ name: 'web', affinity: 'client-ip' }, base).affinity).toEqual({ kind: 'client-ip', timeoutS: 10_800 });
    const on = buildSpec({ name: 'web', affinity: 'client-ip:10m' }, base);
    expect(on.affinity).toEqual({ kind: 'client-ip', timeoutS: 600 });
    expect(buildSpec({ name: 'web', lbPolicy: 'random' }, on).affinity).toEqual({ kind: 'client-ip', timeoutS: 600 });
    expect(buildSpec({ name: 'web', affinity: 'none' }, on).affinity).toBeUndefined();
    for (const bad of ['cookie', 'client-ip:0', 'client-ip:2d', 'client-ip:25h']) expect(() => buildSpec({ name: 'web', affinity: bad }, base), bad).toThrow(/affinity/);
    expect(buildSpec({ name: 'web', lbMode: 'proxy' }, on).affinity).toEqual({ kind: 'client-ip', timeoutS: 600 });
  });
});

describe('proxy limits: --max-conn, --max-queue, --queue-timeout, --slow-start', () => {
  const proxy = buildSpec({ name: 'web', network: 'n', ports: ['8080:80'], lbMode: 'proxy' });
  it('are proxy-mode only, naming the flag', () => {
    const kernel = buildSpec({ name: 'web', network: 'n', ports: ['8080:80'] });
    expect(() => buildSpec({ name: 'web', maxConn: '10' }, kernel)).toThrow(/--max-conn needs --lb-mode proxy/);
    expect(() => buildSpec({ name: 'web', slowStart: '30s' }, kernel)).toThrow(/--slow-start needs --lb-mode proxy/);
    const limited = buildSpec({ name: 'web', maxConn: '10', slowStart: '30s' }, proxy);
    expect(() => buildSpec({ name: 'web', lbMode: 'kernel' }, limited)).toThrow(/--max-conn needs --lb-mode proxy/);
  });

  it('parse, default, keep on update, and 0 removes', () => {
    expect(proxy.maxConn).toBeUndefined();
    const s = buildSpec({ name: 'web', maxConn: '10', maxQueue: '5', queueTimeout: '2s', slowStart: '30s' }, proxy);
    expect(s).toMatchObject({ maxConn: 10, maxQueue: 5, queueTimeoutMs: 2000, slowStartMs: 30_000 });
    expect(maxQueueOf(buildSpec({ name: 'web', maxConn: '1' }, proxy))).toBe(256);
    expect(queueTimeoutOf(buildSpec({ name: 'web', maxConn: '1' }, proxy))).toBe(5000);
    expect(buildSpec({ name: 'web', lbPolicy: 'leastconn' }, s)).toMatchObject({ maxConn: 10, maxQueue: 5, queueTimeoutMs: 2000, slowStartMs: 30_000 });
    const off = buildSpec({ name: 'web', maxConn: '0', slowStart: '0' }, s);
    expect([off.maxConn, off.maxQueue, off.queueTimeoutMs, off.slowStartMs]).toEqual([undefined, undefined, undefined, undefined]);
    expect(buildSpec({ name: 'web', maxConn: '1', maxQueue: '0' }, proxy).maxQueue).toBe(0);
  });

  it('refuse bad values and a queue without a limit', () => {
    for (const bad of ['-1', 'x', '1.5', '2000000']) expect(() => buildSpec({ name: 'web', maxConn: bad }, proxy), bad).toThrow(/invalid max conn/);
    expect(() => buildSpec({ name: 'web', maxConn: '1', maxQueue: 'many' }, proxy)).toThrow(/invalid max queue/);
    expect(() => buildSpec({ name: 'web', maxConn: '1', queueTimeout: '1ms' }, proxy)).toThrow(/queue timeout/);
    expect(() => buildSpec({ name: 'web', slowStart: 'slowly' }, proxy)).toThrow(/slow start/);
    expect(() => buildSpec({ name: 'web', maxQueue: '5' }, proxy)).toThrow(/--max-queue needs --max-conn/);
    expect(() => buildSpec({ name: 'web', queueTimeout: '1s' }, proxy)).toThrow(/--queue-timeout needs --max-conn/);
  });
});

describe('health state machine (rise/fall)', () => {
  const check = { rise: 2, fall: 3 };
  const run = (results: boolean[]) => results.reduce<HealthState>((s, ok) => observe(s, ok, check), INITIAL_HEALTH).status;
  it('enters on the first success, leaves after fall failures, returns after rise successes', () => {
    expect(run([true])).toBe('up');
    expect(run([false])).toBe('down');
    expect(run([true, false, false])).toBe('up');
    expect(run([true, false, false, false])).toBe('down');
    expect(run([true, false, true, false, false])).toBe('up');
    expect(run([true, false, false, false, true])).toBe('down');
    expect(run([true, false, false, false, true, true])).toBe('up');
    expect(run([true, false, false, false, true, false, true])).toBe('down');
  });
});

describe('health checker', () => {
  it('new check settings for the same backend keep its status; another address starts unknown', async () => {
    const changes: string[] = [];
    const checker = new HealthChecker({ onChange: (t, from, to) => changes.push(`${t.backend} ${from}->${to}`) }, async () => true);
    const target = (intervalMs: number, address = '10.0.0.2'): HealthTarget => ({ key: 's/a', service: 's', backend: `${address}:80`, address, port: 80, check: { kind: 'tcp', intervalMs, timeoutMs: intervalMs, rise: 1, fall: 3 } });
    try {
      checker.setTargets([target(20)]);
      for (let i = 0; i < 100 && !checker.isUp('s/a'); i++) await new Promise((r) => setTimeout(r, 5));
      expect(checker.status('s/a')).toBe('up');
      checker.setTargets([target(50)]);
      expect(checker.status('s/a')).toBe('up');
      checker.setTargets([target(50, '10.0.0.3')]);
      expect(checker.status('s/a')).toBe('unknown');
      expect(changes).toEqual(['10.0.0.2:80 unknown->up']);
    } finally {
      checker.close();
    }
  });
});

describe('balancing policies', () => {
  it('rr cycles, leastconn prefers the idlest, source-hash is sticky', () => {
    const rr = createPolicy('rr');
    expect(['a', 'b', 'c', 'a'].map(() => rr.pick(['a', 'b', 'c']))).toEqual(['a', 'b', 'c', 'a']);
    const lc = createPolicy('leastconn');
    expect(lc.pick(['a', 'b', 'c'], { active: new Map([['a', 3], ['b', 0], ['c', 1]]) })).toBe('b');
    const sh = createPolicy('source-hash');
    const first = sh.pick(['a', 'b', 'c'], { client: '10.0.0.9' });
    for (let i = 0; i < 5; i += 1) expect(sh.pick(['a', 'b', 'c'], { client: '10.0.0.9' })).toBe(first);
    expect(createPolicy('random').pick([])).toBeUndefined();
  });
});

describe('PROXY protocol headers', () => {
  const c = { srcAddr: '::ffff:192.0.2.1', srcPort: 40000, dstAddr: '10.183.0.9', dstPort: 80 };
  it('v1 is one text line', () => {
    expect(proxyHeaderV1(c).toString()).toBe('PROXY TCP4 192.0.2.1 10.183.0.9 40000 80\r\n');
  });
  it('v2 is the binary form with the addresses', () => {
    const h = proxyHeaderV2(c);
    expect(h.subarray(0, 12).toString('hex')).toBe('0d0a0d0a000d0a515549540a');
    expect([...h.subarray(12, 16)]).toEqual([0x21, 0x11, 0, 12]);
    expect([...h.subarray(16, 24)]).toEqual([192, 0, 2, 1, 10, 183, 0, 9]);
    expect(h.readUInt16BE(24)).toBe(40000);
    expect(h.readUInt16BE(26)).toBe(80);
  });
});
