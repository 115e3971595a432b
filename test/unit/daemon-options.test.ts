import { describe, expect, it } from 'vitest';
import { DaemonUsageError, parseDaemonArgs, parseHostPort, parseStoreSpec } from '../../src/daemon/options.js';

const opts = (argv: string[], env: NodeJS.ProcessEnv = {}, isDir: (p: string) => boolean = () => false) => {
  const r = parseDaemonArgs(argv, env, isDir);
  if (r.help) throw new Error('unexpected help');
  return r.options;
};

describe('shoal daemon flags', () => {
  it('has the documented defaults', () => {
    const o = opts([]);
    expect(o.metrics).toEqual({ host: '127.0.0.1', port: 9590 });
    expect(o.socket).toBe('/run/shoal/shoald.sock');
    expect(o.pidFile).toBe('/run/shoal/shoald.pid');
    expect(o.stateDir).toBe('/var/lib/shoal');
    expect(o.store).toEqual({ kind: 'sqlite', file: '/var/lib/shoal/shoal.db' });
    expect(o.logLevel).toBe('info');
    expect(o.dnsPort).toBe(53);
    expect(o.resolvConf).toBe('/etc/resolv.conf');
    expect(o.watchIntervalMs).toBe(25);
    expect(o.firewall).toBe(true);
  });

  it('follows SHOAL_RUN_DIR and SHOAL_STATE_DIR, and --state-dir over the env', () => {
    const o = opts([], { SHOAL_RUN_DIR: '/tmp/r', SHOAL_STATE_DIR: '/tmp/s' });
    expect(o.socket).toBe('/tmp/r/shoald.sock');
    expect(o.pidFile).toBe('/tmp/r/shoald.pid');
    expect(o.store).toEqual({ kind: 'sqlite', file: '/tmp/s/shoal.db' });
    expect(opts(['--state-dir', '/tmp/x'], { SHOAL_STATE_DIR: '/tmp/s' }).stateDir).toBe('/tmp/x');
  });

  it('parses every flag', () => {
    const o = opts([
      '--metrics-addr', '[::1]:9000', '--socket', '/tmp/a.sock', '--pid-file', '/tmp/a.pid', '--store', 'sqlite:/tmp/db/x.db',
      '--log-level', 'debug', '--dns-port', '5353', '--resolv-conf', '/tmp/resolv', '--local-ttl', '7',
      '--max-concurrent-forwards', '10', '--watch-interval', '50', '--no-firewall', '--dns-workers', '3', '--dns-client-rate', '500',
    ]);
    expect(o).toMatchObject({
      metrics: { host: '::1', port: 9000 }, socket: '/tmp/a.sock', pidFile: '/tmp/a.pid', store: { kind: 'sqlite', file: '/tmp/db/x.db' },
      logLevel: 'debug', dnsPort: 5353, resolvConf: '/tmp/resolv', localTtl: 7, maxConcurrentForwards: 10, watchIntervalMs: 50, firewall: false, dnsWorkers: 3, dnsClientRate: 500,
    });
    expect(opts([]).dnsWorkers).toBe(2);
    expect(opts([]).dnsClientRate).toBe(10_000);
    expect(opts(['--dns-client-rate', '0']).dnsClientRate).toBe(0);
    expect(() => opts(['--dns-client-rate', '-1'])).toThrow(/--dns-client-rate/);
    expect(opts(['--metrics-addr', 'off']).metrics).toBeUndefined();
    expect(parseDaemonArgs(['--help'])).toEqual({ help: true });
  });

  it('reads sqlite:<dir> as the store file inside it, and etcd:// as endpoints', () => {
    expect(parseStoreSpec('sqlite:/tmp/st', (p) => p === '/tmp/st')).toEqual({ kind: 'sqlite', file: '/tmp/st/shoal.db' });
    expect(parseStoreSpec('etcd://a:2379,b:2379', () => false)).toEqual({ kind: 'etcd', endpoints: ['a:2379', 'b:2379'] });
  });

  it('refuses bad values with the flag and value named', () => {
    const bad = (argv: string[]) => () => opts(argv);
    expect(bad(['--metrics-addr', '9590'])).toThrow(/invalid flag "--metrics-addr": "9590" is not HOST:PORT/);
    expect(bad(['--metrics-addr', '1.2.3.4:70000'])).toThrow(/port outside/);
    expect(bad(['--dns-port', 'x'])).toThrow(/"--dns-port": "x" is not a whole number/);
    expect(bad(['--log-level', 'loud'])).toThrow(/must be one of/);
    expect(bad(['--store', 'mysql://x'])).toThrow(/must be sqlite:<path> or etcd:/);
    expect(bad(['--bogus'])).toThrow(DaemonUsageError);
    expect(bad(['positional'])).toThrow(DaemonUsageError);
    expect(parseHostPort('m', ':9590')).toEqual({ host: '0.0.0.0', port: 9590 });
  });

  it('joins a cluster with --store etcd://: the local store stays SQLite, node and TTL defaulted', () => {
    const o = opts(['--store', 'etcd://10.0.0.1,10.0.0.2:2400', '--advertise-addr', '10.0.0.9'], { SHOAL_STATE_DIR: '/tmp/s' });
    expect(o.store).toEqual({ kind: 'sqlite', file: '/tmp/s/shoal.db' });
    expect(o.cluster).toEqual({ endpoints: ['10.0.0.1:2379', '10.0.0.2:2400'], node: 'localhost', advertiseAddr: '10.0.0.9', nodeTtlSeconds: 10, blockGraceSeconds: 300 });
    const host = parseDaemonArgs(['--store', 'etcd://e:2379'], {}, () => false, () => 'web-1.example.org');
    expect(host.help === false && host.options.cluster).toEqual({ endpoints: ['e:2379'], node: 'web-1', advertiseAddr: undefined, nodeTtlSeconds: 10, blockGraceSeconds: 300 });
    expect(opts(['--store', 'etcd://e', '--node', 'n2', '--node-ttl', '2', '--block-grace', '0']).cluster).toMatchObject({ node: 'n2', nodeTtlSeconds: 2, blockGraceSeconds: 0 });
    expect(opts([]).cluster).toBeUndefined();
  });

  it('refuses cluster flags without etcd, and bad node names, addresses and TTLs', () => {
    const bad = (argv: string[]) => () => opts(argv);
    expect(bad(['--node', 'n1'])).toThrow(/invalid flag "--node": "n1" needs --store etcd:/);
    expect(bad(['--advertise-addr', '10.0.0.1'])).toThrow(/"--advertise-addr".*needs --store etcd:/);
    expect(bad(['--store', 'etcd://e', '--advertise-addr', 'nope'])).toThrow(/"--advertise-addr": "nope" is not an IP address/);
    expect(bad(['--store', 'etcd://e', '--node', 'a_b'])).toThrow(/"--node": "a_b" is not a valid node name/);
    expect(bad(['--block-grace', '60'])).toThrow(/"--block-grace".*needs --store etcd:/);
    expect(bad(['--store', 'etcd://e', '--block-grace', 'soon'])).toThrow(/"--block-grace"/);
    expect(bad(['--store', 'etcd://e', '--node-ttl', '0'])).toThrow(/"--node-ttl": "0" must be 1-3600/);
    expect(bad(['--store', 'etcd://e:99999'])).toThrow(/"--store".*out of range/);
  });
});
