// Run inside the container namespace by bench/dns.mjs: for each line "go <name> <expected>" on
// stdin it prints "started" and starts the clock; bench/dns.mjs tells the server to change its
// records once it reads "started", so the time printed covers the whole change: how long until every
// one of 16 client sockets (16 source ports, so every SO_REUSEPORT socket of the server) gets
// the expected answer for the name; prints "seen <ms>" (or "seen timeout" after 60 s).
//   node dns-change-probe.mjs <server> <port>
// <expected>: an address, or !address: anything else (NXDOMAIN, NODATA, another address).
import dgram from 'node:dgram';
import { createInterface } from 'node:readline';

const [server, port] = process.argv.slice(2);
const SOCKETS = 16;

function query(name, id) {
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
let round;
for (const s of sockets) s.on('message', (m) => { if (round && round.wanted(outcome(m))) round.pending.delete(s); });
console.log('ready');
createInterface({ input: process.stdin }).on('line', (line) => {
  const [, name, expected] = line.split(' ');
  const started = performance.now();
  console.log('started');
  round = { pending: new Set(sockets), wanted: (o) => (expected.startsWith('!') ? o !== expected.slice(1) : o === expected) };
  const tick = () => {
    if (round.pending.size === 0) {
      round = undefined;
      console.log(`seen ${(performance.now() - started).toFixed(1)}`);
      return;
    }
    if (performance.now() - started > 60_000) {
      round = undefined;
      console.log('seen timeout');
      return;
    }
    for (const s of round.pending) s.send(query(name, Math.floor(Math.random() * 0xffff)), Number(port), server);
    setTimeout(tick, 1);
  };
  tick();
});
