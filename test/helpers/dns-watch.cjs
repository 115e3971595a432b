// Runs inside a container's netns (started by continuity.ts through nsenter): every interval
// sends one A query to the server, cycling through the names given as name=expected-address,
// and counts what came back. A query unanswered after 1 s, or answered with anything but the
// expected address, is recorded. On "stop" (a line on stdin) it stops sending, waits for the
// last answers, prints one JSON report and exits.
const dgram = require('node:dgram');

const [server, intervalText, ...pairs] = process.argv.slice(2);
const interval = Number(intervalText);
const names = pairs.map((p) => {
  const [name, expected] = p.split('=');
  return { name, expected };
});
const TIMEOUT_MS = 1000;

function encodeQuery(id, name) {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x0100, 2); // RD
  header.writeUInt16BE(1, 4);
  const labels = name.split('.').filter(Boolean).map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  return Buffer.concat([header, ...labels, Buffer.from([0, 0, 1, 0, 1])]);
}

/** The A records of the answer section (names are skipped by their length or pointer). */
function answersOf(msg) {
  let off = 12;
  const skipName = () => {
    for (;;) {
      const len = msg[off];
      if (len === 0) return void (off += 1);
      if ((len & 0xc0) === 0xc0) return void (off += 2);
      off += 1 + len;
    }
  };
  for (let i = msg.readUInt16BE(4); i > 0; i--) {
    skipName();
    off += 4;
  }
  const out = [];
  for (let i = msg.readUInt16BE(6); i > 0; i--) {
    skipName();
    const type = msg.readUInt16BE(off);
    const rdlen = msg.readUInt16BE(off + 8);
    if (type === 1 && rdlen === 4) out.push(Array.from(msg.subarray(off + 10, off + 14)).join('.'));
    off += 10 + rdlen;
  }
  return out;
}

const pending = new Map();
const report = { sent: 0, answered: 0, lost: [], wrong: [], maxLatencyMs: 0 };
const sock = dgram.createSocket('udp4');
let id = 0;
let timer;

sock.on('message', (msg) => {
  const q = pending.get(msg.readUInt16BE(0));
  if (!q) return;
  pending.delete(msg.readUInt16BE(0));
  const latency = Date.now() - q.at;
  report.maxLatencyMs = Math.max(report.maxLatencyMs, latency);
  const answers = answersOf(msg);
  if (answers.length === 1 && answers[0] === q.expected) report.answered += 1;
  else report.wrong.push({ name: q.name, at: q.at, rcode: msg[3] & 0xf, answers });
});

function expire(now) {
  for (const [key, q] of pending) {
    if (now - q.at < TIMEOUT_MS) continue;
    pending.delete(key);
    report.lost.push({ name: q.name, at: q.at });
  }
}

sock.bind(0, () => {
  timer = setInterval(() => {
    const now = Date.now();
    expire(now);
    id = (id + 1) & 0xffff;
    const q = names[report.sent % names.length];
    pending.set(id, { ...q, at: now });
    report.sent += 1;
    sock.send(encodeQuery(id, q.name), 53, server);
  }, interval);
  process.stdout.write('ready\n');
});

process.stdin.on('data', () => {
  clearInterval(timer);
  setTimeout(() => {
    expire(Infinity);
    process.stdout.write(`${JSON.stringify(report)}\n`);
    process.exit(0);
  }, TIMEOUT_MS + 100);
});
