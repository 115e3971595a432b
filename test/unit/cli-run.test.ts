import { describe, expect, it } from 'vitest';
import { assignHostPorts, heldPorts, NoFreeHostPortError, readHostPortState, type HostPortState } from '../../src/network/host-ports.js';
import { parsePortSpec, parsePortSpecs, PortSpecError } from '../../src/network/ports.js';
import { parseAddHost, renderHosts, renderResolvConf } from '../../src/network/sandbox-files.js';
import { splitCommand } from '../../src/cli/run.js';
import { table } from '../../src/cli/common.js';

describe('port specs', () => {
  const one = (spec: string) => {
    const out = parsePortSpec(spec);
    expect(out).toHaveLength(1);
    const { hostIP, hostPort, containerPort, protocol, hostRange } = out[0]!;
    return hostRange ? { hostIP, hostPort, containerPort, protocol, hostRange } : { hostIP, hostPort, containerPort, protocol };
  };

  it('parses docker syntax', () => {
    expect(one('8080:80')).toEqual({ hostIP: '', hostPort: 8080, containerPort: 80, protocol: 'tcp' });
    expect(one('127.0.0.1:53:5353/udp')).toEqual({ hostIP: '127.0.0.1', hostPort: 53, containerPort: 5353, protocol: 'udp' });
    expect(one('[::1]:8080:80/sctp')).toEqual({ hostIP: '::1', hostPort: 8080, containerPort: 80, protocol: 'sctp' });
  });

  it('leaves the host port open (0) when the spec does, as docker does', () => {
    expect(one('80')).toEqual({ hostIP: '', hostPort: 0, containerPort: 80, protocol: 'tcp' });
    expect(one('53/udp')).toEqual({ hostIP: '', hostPort: 0, containerPort: 53, protocol: 'udp' });
    expect(one('127.0.0.1::80')).toEqual({ hostIP: '127.0.0.1', hostPort: 0, containerPort: 80, protocol: 'tcp' });
    expect(one('[::1]::80')).toEqual({ hostIP: '::1', hostPort: 0, containerPort: 80, protocol: 'tcp' });
    expect(one('8000-8010:80')).toEqual({ hostIP: '', hostPort: 0, containerPort: 80, protocol: 'tcp', hostRange: [8000, 8010] });
  });

  it('expands ranges pairwise, or to open host ports', () => {
    expect(parsePortSpec('8000-8002:80-82/udp').map((m) => [m.hostPort, m.containerPort, m.protocol])).toEqual([[8000, 80, 'udp'], [8001, 81, 'udp'], [8002, 82, 'udp']]);
    expect(parsePortSpec('80-81').map((m) => [m.hostPort, m.containerPort])).toEqual([[0, 80], [0, 81]]);
    expect(parsePortSpec('8000:8000').map((m) => m.hostPort)).toEqual([8000]);
  });

  it('refuses bad specs with one line naming the spec', () => {
    for (const bad of ['0:80', '99999:80', '8080:80/icmp', 'x:8080:80', '[::1:8080:80', 'a:b', '80-79', '8000-8001:80-82', '8000:80-81', '1:2:3:4', '']) {
      expect(() => parsePortSpec(bad), bad).toThrow(PortSpecError);
    }
    expect(() => parsePortSpec('99999:80')).toThrow('invalid port spec "99999:80": host port "99999" is not a port 1-65535 or a range of them');
    expect(() => parsePortSpec('8000-8001:80-82')).toThrow('invalid port spec "8000-8001:80-82": the host range has 2 ports and the container range 3; they must match');
    expect(() => parsePortSpecs(['8080:80', '8080:81'])).toThrow(/given twice/);
    expect(parsePortSpecs(['8080:80', '8080:80/udp'])).toHaveLength(2);
    expect(parsePortSpecs(['80', '80'])).toHaveLength(2);
  });
});

describe('choosing host ports', () => {
  const state = (over: Partial<HostPortState> = {}): HostPortState => ({ published: [], held: new Set(), ephemeral: [40000, 40009], ...over });

  it('takes the first free port of a host range, skipping what Shoal publishes and what host sockets hold', () => {
    const published = [{ hostIP: '', hostPort: 8000, containerPort: 1, protocol: 'tcp' }];
    const got = assignHostPorts(parsePortSpecs(['8000-8010:80']), state({ published, held: new Set(['tcp/8001']) }));
    expect(got).toEqual([{ hostIP: '', hostPort: 8002, containerPort: 80, protocol: 'tcp' }]);
    // Another protocol, or another host address, does not collide.
    expect(assignHostPorts(parsePortSpecs(['8000-8010:80/udp']), state({ published }))[0]!.hostPort).toBe(8000);
    const onOne = [{ hostIP: '127.0.0.1', hostPort: 8000, containerPort: 1, protocol: 'tcp' }];
    expect(assignHostPorts(parsePortSpecs(['127.0.0.2:8000-8010:80']), state({ published: onOne }))[0]!.hostPort).toBe(8000);
    expect(assignHostPorts(parsePortSpecs(['8000-8010:80']), state({ published: onOne }))[0]!.hostPort).toBe(8001);
  });

  it('chooses distinct ephemeral ports for open requests, avoiding fixed ones of the same command', () => {
    const got = assignHostPorts(parsePortSpecs(['40000:1', '80-82']), state(), 0);
    expect(got.map((m) => m.hostPort)).toEqual([40000, 40001, 40002, 40003]);
    const wrapped = assignHostPorts(parsePortSpecs(['80', '81']), state(), 0.95);
    expect(wrapped.map((m) => m.hostPort)).toEqual([40009, 40000]);
  });

  it('fails naming the spec and the range when nothing is free', () => {
    const held = new Set(Array.from({ length: 3 }, (_, i) => `tcp/${8000 + i}`));
    expect(() => assignHostPorts(parsePortSpecs(['8000-8002:80']), state({ held }))).toThrow('cannot publish "8000-8002:80": no free host port for tcp in the host range 8000-8002');
    expect(() => assignHostPorts(parsePortSpecs(['1-11']), state())).toThrow(NoFreeHostPortError);
  });

  it('reads listening TCP and bound UDP ports from /proc/net tables', () => {
    const tcp = [
      '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
      '   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1',
      '   1: 0100007F:A000 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 2 1',
    ].join('\n');
    expect(heldPorts(tcp, true)).toEqual([8080]);
    expect(heldPorts(tcp, false)).toEqual([8080, 40960]);
    const real = readHostPortState('/nonexistent-portmap-dir');
    expect(real.published).toEqual([]);
    expect(real.ephemeral[0]).toBeLessThanOrEqual(real.ephemeral[1]);
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
