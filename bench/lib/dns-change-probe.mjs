// Run inside the container namespace by bench/dns.mjs: how long after "go" (a line on stdin,
// written right after the server was told to reload) every one of 16 client sockets (16 source
// ports, so every SO_REUSEPORT socket of the server) gets the expected answer for a name.
//   node dns-change-probe.mjs <server> <port> <name> <expected address, or !address: anything else>
import dgram from 'node:dgram';
import { createInterface } from 'node:readline';

const [server, port, name, expected] = process.argv.slice(2);
const SOCKETS = 16;

function query(id) {
  const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x0100, 2);
  header.writeUInt16BE(1, 4);
  return Buffer.concat([header, ...labels, Buffer.from([0, 0, 1, 0, 1])]);
}

/** "NXDOMAIN", or the first A record's address. */
function outcome(msg) {
  const rcode = msg[3] & 0xf;
  if (rcode === 3) return 'NXDOMAIN';
  if (msg.readUInt16BE(6) === 0) return 'NODATA';
  return `${msg[msg.length - 4]}.${msg[msg.length - 3]}.${msg[msg.length - 2]}.${msg[msg.length - 1]}`;
}

const sockets = await Promise.all(Array.from({ length: SOCKETS }, () => new Promise((r) => { const s = dgram.createSocket('udp4'); s.bind(0, () => r(s)); })));
const pending = new Set(sockets);
let started = 0;
const wanted = (o) => (expected.startsWith('!') ? o !== expected.slice(1) : o === expected);
for (const s of sockets) s.on('message', (m) => { if (started && wanted(outcome(m))) pending.delete(s); });
console.log('ready');
createInterface({ input: process.stdin }).once('line', () => {
  started = performance.now();
  const tick = () => {
    if (pending.size === 0) {
      console.log(`seen ${(performance.now() - started).toFixed(1)}`);
      process.exit(0);
    }
    if (performance.now() - started > 60_000) {
      console.log('seen timeout');
      process.exit(1);
    }
    for (const s of pending) s.send(query(Math.floor(Math.random() * 0xffff)), Number(port), server);
    setTimeout(tick, 2);
  };
  tick();
});
