import { describe, expect, it } from 'vitest';
import { parsePortSpec, parsePortSpecs, PortSpecError } from '../../src/network/ports.js';
import { parseAddHost, renderHosts, renderResolvConf } from '../../src/network/sandbox-files.js';
import { splitCommand } from '../../src/cli/run.js';
import { table } from '../../src/cli/common.js';

describe('port specs', () => {
  it('parses docker syntax', () => {
    expect(parsePortSpec('8080:80')).toEqual({ hostIP: '', hostPort: 8080, containerPort: 80, protocol: 'tcp' });
    expect(parsePortSpec('127.0.0.1:53:5353/udp')).toEqual({ hostIP: '127.0.0.1', hostPort: 53, containerPort: 5353, protocol: 'udp' });
    expect(parsePortSpec('[::1]:8080:80/sctp')).toEqual({ hostIP: '::1', hostPort: 8080, containerPort: 80, protocol: 'sctp' });
  });

  it('refuses bad specs with one line naming the spec', () => {
    for (const bad of ['80', '0:80', '99999:80', '8080:80/icmp', 'x:8080:80', '[::1:8080:80', 'a:b']) {
      expect(() => parsePortSpec(bad), bad).toThrow(PortSpecError);
    }
    expect(() => parsePortSpec('99999:80')).toThrow('invalid port spec "99999:80": host port "99999" is not a port 1-65535');
    expect(() => parsePortSpecs(['8080:80', '8080:81'])).toThrow(/given twice/);
    expect(parsePortSpecs(['8080:80', '8080:80/udp'])).toHaveLength(2);
  });
});

describe('sandbox files', () => {
  const base = {
    hostname: 'web',
    name: 'web',
    addresses: ['10.250.0.2'],
    resultNameservers: ['10.250.0.1'],
    resultSearch: ['dns.shoal'],
    dns: [] as string[],
    dnsSearch: [] as string[],
    addHosts: [{ name: 'db', ip: '192.0.2.9' }],
    hostResolvConf: 'nameserver 127.0.0.53\nnameserver 192.0.2.1\nsearch lan\n',
    hostHosts: '127.0.0.1 localhost\n10.0.0.5 vm\n',
    hostNetwork: false,
  };

  it('resolv.conf: the network DNS from the CNI result, --dns overrides', () => {
    expect(renderResolvConf(base)).toBe('# written by shoal run\nsearch dns.shoal\nnameserver 10.250.0.1\n');
    expect(renderResolvConf({ ...base, dns: ['192.0.2.53'], dnsSearch: ['corp'] })).toBe('# written by shoal run\nsearch corp dns.shoal\nnameserver 192.0.2.53\n');
  });

  it('resolv.conf: without network DNS, the host servers that are reachable from the sandbox', () => {
    const none = { ...base, resultNameservers: [], resultSearch: [] };
    expect(renderResolvConf(none)).toBe('# written by shoal run\nsearch lan\nnameserver 192.0.2.1\n');
    expect(renderResolvConf({ ...none, hostNetwork: true })).toContain('nameserver 127.0.0.53');
  });

  it('hosts: loopback, own addresses, --add-host; the host file for --network host', () => {
    expect(renderHosts(base)).toBe('127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.250.0.2\tweb\n192.0.2.9\tdb\n');
    expect(renderHosts({ ...base, hostNetwork: true })).toBe('127.0.0.1 localhost\n10.0.0.5 vm\n192.0.2.9\tdb\n');
  });

  it('parses --add-host', () => {
    expect(parseAddHost('db:192.0.2.9')).toEqual({ name: 'db', ip: '192.0.2.9' });
    expect(parseAddHost('v6:fd00::1')).toEqual({ name: 'v6', ip: 'fd00::1' });
    expect(parseAddHost('nocolon')).toBeUndefined();
    expect(parseAddHost(':1.2.3.4')).toBeUndefined();
  });
});

describe('shoal run command line', () => {
  it('stops option parsing at the command, as docker does', () => {
    expect(splitCommand(['--network', 'n', '-p', '80:80', 'busybox', 'httpd', '-f', '-p', '80'])).toEqual({ options: ['--network', 'n', '-p', '80:80'], command: ['busybox', 'httpd', '-f', '-p', '80'] });
    expect(splitCommand(['-d', '--', '-weird'])).toEqual({ options: ['-d'], command: ['-weird'] });
    expect(splitCommand(['-d'])).toEqual({ options: ['-d'], command: [] });
  });

  it('formats tables', () => {
    expect(table(['A', 'BB'], [['xxx', 'y']])).toBe('A     BB\nxxx   y\n');
  });
});
