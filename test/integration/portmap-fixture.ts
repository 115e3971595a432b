/**
 * Fixture for the shoal-portmap integration tests: two bridge networks built with iproute2
 * (shoal-bridge is not done yet; the topology is what a bridge plugin would make, without any
 * masquerade), containers as named netns with dual-stack addresses, an "outside" netns behind a
 * veth whose host address stands in for a host address (never eth0's), and node TCP/UDP echo
 * servers and clients started with `ip netns exec` and killed by PID.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { KernelObjects, ipQuiet } from '../helpers/kernel-objects.js';

export function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/**
 * IPv6 forwarding for our own links only (kernel >= 6.17 `force_forwarding`): the host-wide
 * switch stays as it is (turning it on would change RA handling on eth0). Routing v6 between
 * the outside veth and a bridge needs it; a bridge plugin would normally enable forwarding.
 */
function forceForwarding6(ifname: string): void {
  const p = `/proc/sys/net/ipv6/conf/${ifname}/force_forwarding`;
  if (fs.existsSync(p)) fs.writeFileSync(p, '1');
}

export interface Ctr {
  ns: string;
  path: string;
  ip4: string;
  ip6: string;
  /** prevResult as a bridge plugin would return it (1.1 shape). */
  prevResult: Record<string, unknown>;
}

export interface Net {
  bridge: string;
  gw4: string;
  gw6: string;
  prefix4: string;
  prefix6: string;
}

export class Topology {
  readonly objects = new KernelObjects('pm');
  private hostN = 1;

  /** 10.<a>.<b>.0/24 and fd23:<a>:<b>::/64 on a new bridge. */
  network(a: number, b: number): Net {
    const bridge = this.objects.linkName();
    sh('ip', ['link', 'add', bridge, 'type', 'bridge']);
    // As shoal-bridge does (bridge-device.ts): without it, v6 DNATed from a host address waits
    // 1-2 s for the bridge's fe80:: to pass DAD, longer than a probe's patience.
    fs.writeFileSync(`/proc/sys/net/ipv6/conf/${bridge}/accept_dad`, '0');
    sh('ip', ['addr', 'add', `10.${a}.${b}.1/24`, 'dev', bridge]);
    sh('ip', ['addr', 'add', `fd23:${a}:${b}::1/64`, 'dev', bridge, 'nodad']);
    sh('ip', ['link', 'set', bridge, 'up']);
    forceForwarding6(bridge);
    return { bridge, gw4: `10.${a}.${b}.1`, gw6: `fd23:${a}:${b}::1`, prefix4: `10.${a}.${b}.`, prefix6: `fd23:${a}:${b}::` };
  }

  container(net: Net): Ctr {
    const { name: ns, path } = this.objects.netns();
    this.hostN += 1;
    const n = this.hostN;
    const hostSide = this.objects.linkName();
    sh('ip', ['link', 'add', hostSide, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    // Hairpin on the port, as podman asks of its bridge plugin: br_netfilter (loaded here)
    // DNATs a container's packet to itself while it is bridged, and sends it back out its port.
    sh('ip', ['link', 'set', hostSide, 'master', net.bridge, 'up']);
    sh('ip', ['link', 'set', hostSide, 'type', 'bridge_slave', 'hairpin', 'on']);
    const ip4 = `${net.prefix4}${n}`;
    const ip6 = `${net.prefix6}${n}`;
    sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
    sh('ip', ['-n', ns, 'addr', 'add', `${ip4}/24`, 'dev', 'eth0']);
    sh('ip', ['-n', ns, 'addr', 'add', `${ip6}/64`, 'dev', 'eth0', 'nodad']);
    sh('ip', ['-n', ns, 'route', 'add', 'default', 'via', net.gw4]);
    sh('ip', ['-n', ns, '-6', 'route', 'add', 'default', 'via', net.gw6]);
    const prevResult = {
      cniVersion: '1.0.0',
      interfaces: [{ name: net.bridge }, { name: hostSide }, { name: 'eth0', sandbox: path }],
      ips: [
        { address: `${ip4}/24`, gateway: net.gw4, interface: 2 },
        { address: `${ip6}/64`, gateway: net.gw6, interface: 2 },
      ],
    };
    return { ns, path, ip4, ip6, prevResult };
  }

  /** An "outside" netns behind a veth; the host end gets `<host4>/24` and `<host6>/64`. */
  outside(a: number, b: number): { ns: string; host4: string; host6: string; ext4: string } {
    const { name: ns } = this.objects.netns();
    const hostSide = this.objects.linkName();
    sh('ip', ['link', 'add', hostSide, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    sh('ip', ['addr', 'add', `10.${a}.${b}.1/24`, 'dev', hostSide]);
    sh('ip', ['addr', 'add', `fd23:${a}:${b}::1/64`, 'dev', hostSide, 'nodad']);
    sh('ip', ['link', 'set', hostSide, 'up']);
    forceForwarding6(hostSide);
    sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
    sh('ip', ['-n', ns, 'addr', 'add', `10.${a}.${b}.2/24`, 'dev', 'eth0']);
    sh('ip', ['-n', ns, 'addr', 'add', `fd23:${a}:${b}::2/64`, 'dev', 'eth0', 'nodad']);
    return { ns, host4: `10.${a}.${b}.1`, host6: `fd23:${a}:${b}::1`, ext4: `10.${a}.${b}.2` };
  }

  cleanup(): void {
    this.objects.cleanup();
  }
}

const SERVER = `
const net = require('net'), dgram = require('dgram');
const [tcpPort, udpPort] = process.argv.slice(1).map(Number);
net.createServer((s) => s.end('tcp ' + s.remoteAddress.replace('::ffff:', '') + '\\n')).listen(tcpPort, '::');
const u = dgram.createSocket({ type: 'udp6', ipv6Only: false });
u.on('message', (m, r) => u.send('udp ' + r.address.replace('::ffff:', '') + '\\n', r.port, r.address));
u.bind(udpPort, '::', () => process.stdout.write('ready\\n'));
`;

/** TCP and UDP echo servers in `ns` answering "<proto> <client address>". */
export async function startServers(ns: string, tcpPort: number, udpPort: number): Promise<ChildProcess> {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', SERVER, String(tcpPort), String(udpPort)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('servers did not start')), 5000);
    child.stdout?.once('data', () => {
      clearTimeout(t);
      resolve();
    });
    child.once('exit', (code) => reject(new Error(`servers exited with ${code}`)));
  });
  return child;
}

export function stopServers(child: ChildProcess | undefined): void {
  // `ip netns exec` execs node, so the PID is the server's own.
  if (child?.pid !== undefined && child.exitCode === null) process.kill(child.pid, 'SIGKILL');
}

const CLIENT = `
const net = require('net'), dgram = require('dgram');
const [proto, host, port, srcPort] = process.argv.slice(1);
const done = (t) => { process.stdout.write(t); process.exit(0); };
setTimeout(() => done('timeout'), 1500);
if (proto === 'tcp') {
  const s = net.connect(Number(port), host);
  let out = ''; s.on('data', (d) => (out += d)); s.on('end', () => done(out.trim())); s.on('error', (e) => done('error ' + e.code));
} else {
  const u = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  u.on('message', (m) => done(String(m).trim()));
  u.on('error', (e) => done('error ' + e.code));
  const send = () => u.send('hi', Number(port), host);
  if (srcPort) u.bind(Number(srcPort), send); else send();
}
`;

/** Connects from `ns` (or the host when undefined); returns the reply, "timeout" or "error CODE". */
export function probe(ns: string | undefined, proto: 'tcp' | 'udp', host: string, port: number, srcPort?: number): string {
  const args = [proto, host, String(port), ...(srcPort ? [String(srcPort)] : [])];
  const cmd = ns ? ['ip', ['netns', 'exec', ns, process.execPath, '-e', CLIENT, ...args]] : [process.execPath, ['-e', CLIENT, ...args]];
  const r = spawnSync(cmd[0] as string, cmd[1] as string[], { encoding: 'utf8', timeout: 5000 });
  return (r.stdout ?? '').trim();
}

export { ipQuiet };
