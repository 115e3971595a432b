import fs from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { NetlinkError } from '../../src/kernel/errors.js';
import { createLink, getLink, listLinks } from '../../src/kernel/link.js';
import { encodeIfinfomsg } from '../../src/kernel/link-codec.js';
import { encodeMessage } from '../../src/kernel/netlink/codec.js';
import { NLM_F_DUMP, NLM_F_REQUEST, RTM_GETLINK, RTM_NEWLINK, RTM_SETLINK } from '../../src/kernel/netlink/constants.js';
import { NetlinkSocket, NetlinkTimeoutError } from '../../src/kernel/netlink/socket.js';
import { warmThreadpool } from '../../src/kernel/netns.js';
import { openRtnl, withRtnl } from '../../src/kernel/rtnl.js';
import { ipJson, KernelObjects, waitNoLeftovers } from '../helpers/kernel-objects.js';

const PREFIX = 'nls';
const objs = new KernelObjects(PREFIX);

beforeAll(async () => {
  await warmThreadpool();
});
afterEach(() => objs.cleanup());
afterAll(async () => {
  objs.cleanup();
  expect(await waitNoLeftovers(PREFIX)).toEqual([]);
});

describe('NetlinkSocket', () => {
  it('collects a multi-part dump until NLMSG_DONE', () => {
    const ns = objs.netns();
    const names = Array.from({ length: 60 }, (_, i) => objs.trackLink(`b${i}`, ns.name));
    withRtnl(ns.path, (nl) => {
      for (const name of names) createLink(nl, { kind: 'bridge', name });
    });
    // 60 bridges plus lo are well beyond one ~32 KiB dump datagram.
    const listed = withRtnl(ns.path, (nl) => {
      const before = nl.sock.datagramsReceived;
      const names = listLinks(nl).map((l) => l.name);
      expect(nl.sock.datagramsReceived - before).toBeGreaterThan(1);
      return names;
    });
    const viaIp = ipJson<{ ifname: string }[]>(['link', 'show'], ns.name).map((l) => l.ifname);
    expect(listed.sort()).toEqual(viaIp.sort());
    expect(listed).toHaveLength(61);
  });

  it('turns a missing reply into a NetlinkTimeoutError instead of hanging', () => {
    const sock = NetlinkSocket.open(200);
    try {
      // Send a request the kernel answers with silence (no NLM_F_ACK), then wait for a reply.
      const seq = 4242;
      const lo = getLinkIndexOfLo();
      fs.writeSync(sock.fd, encodeMessage({ type: RTM_SETLINK, flags: NLM_F_REQUEST, header: encodeIfinfomsg({ index: lo }) }, seq));
      const started = Date.now();
      const receive = (sock as unknown as { receive(seq: number, what: string, dump: boolean): unknown }).receive.bind(sock);
      expect(() => receive(seq, 'failed to wait for "lo"', false)).toThrow(NetlinkTimeoutError);
      expect(Date.now() - started).toBeLessThan(2000);
    } finally {
      sock.close();
    }
  });

  it('refuses to dump a non-GET type and to send a dump through request()', () => {
    const sock = NetlinkSocket.open();
    try {
      expect(() => sock.dump({ type: RTM_NEWLINK, flags: 0, header: encodeIfinfomsg() }, 'x')).toThrow(/only RTM_GET/);
      expect(() => sock.request({ type: RTM_GETLINK, flags: NLM_F_DUMP, header: encodeIfinfomsg() }, 'x')).toThrow(/dump\(\)/);
      // A NEW request with NLM_F_EXCL (same bit as NLM_F_MATCH) is still a plain request.
      expect(() => sock.request({ type: RTM_NEWLINK, flags: 0x200 | 0x400, header: encodeIfinfomsg({ index: -5 }) }, 'failed to create link "bad"')).toThrow(NetlinkError);
    } finally {
      sock.close();
    }
  });

  it('keeps working after an error reply (sequence numbers stay in step)', () => {
    const nl = openRtnl();
    try {
      expect(() => getLink(nl, 'nlsnothere0')).toThrow();
      expect(getLink(nl, 'lo').index).toBe(1);
    } finally {
      nl.close();
    }
  });
});

function getLinkIndexOfLo(): number {
  return Number(fs.readFileSync('/sys/class/net/lo/ifindex', 'utf8'));
}
