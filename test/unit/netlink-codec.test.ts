import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as constants from '../../src/kernel/netlink/constants.js';
import { align, attr, AttrSet, decodeError, encodeAttrs, encodeMessage, parseMessages } from '../../src/kernel/netlink/codec.js';
import {
  NLA_F_NESTED,
  NLMSG_ERROR,
  NLMSGERR_ATTR_MSG,
  NLMSGERR_ATTR_OFFS,
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  RTM_DELLINK,
  RTM_GETADDR,
  RTM_GETLINK,
  RTM_GETNEIGH,
  RTM_GETROUTE,
  RTM_NEWLINK,
  RTM_NEWROUTE,
  RTM_SETLINK,
  isGetType,
} from '../../src/kernel/netlink/constants.js';
import { IpAddr, IpPrefix } from '../../src/addr.js';
import { bytesToIp, bytesToMac, ipFamily, ipToBytes, macToBytes, toPrefix } from '../../src/kernel/netlink/inet.js';

describe('alignment', () => {
  it('rounds up to 4 bytes', () => {
    expect([0, 1, 2, 3, 4, 5, 8, 9].map(align)).toEqual([0, 4, 4, 4, 4, 8, 8, 12]);
  });

  it('pads each attribute to 4 bytes but records its unpadded length', () => {
    const buf = encodeAttrs([attr.u8(7, 0xab), attr.str(3, 'br0'), attr.u16(1, 0x1234)]);
    expect(buf.toString('hex')).toBe(
      [
        '0500' + '0700' + 'ab000000', // len 5, type 7, 1 byte + 3 pad
        '0800' + '0300' + '62723000', // len 8, "br0\0", no pad
        '0600' + '0100' + '34120000', // len 6, LE u16 + 2 pad
      ].join(''),
    );
  });
});

describe('attributes', () => {
  it('round-trips every value type', () => {
    const buf = encodeAttrs([
      attr.u8(1, 200),
      attr.u16(2, 65000),
      attr.be16(3, 4789),
      attr.u32(4, 0xfffffffe),
      attr.s32(5, -7),
      attr.str(6, 'eth0'),
      attr.flag(7),
      attr.bytes(8, Buffer.from([1, 2, 3])),
    ]);
    const a = new AttrSet(buf);
    expect(a.u8(1)).toBe(200);
    expect(a.u16(2)).toBe(65000);
    expect(a.be16(3)).toBe(4789);
    expect(a.get(3)?.toString('hex')).toBe('12b5');
    expect(a.u32(4)).toBe(0xfffffffe);
    expect(a.s32(5)).toBe(-7);
    expect(a.str(6)).toBe('eth0');
    expect(a.has(7)).toBe(true);
    expect(a.get(7)?.length).toBe(0);
    expect([...(a.get(8) ?? [])]).toEqual([1, 2, 3]);
    expect(a.u32(99)).toBeUndefined();
  });

  it('sets NLA_F_NESTED on nests and strips it when decoding', () => {
    const buf = encodeAttrs([attr.nested(12, [attr.u8(4, 1), attr.nested(2, [attr.u32(1, 9)])])]);
    expect(buf.readUInt16LE(2)).toBe(12 | NLA_F_NESTED);
    expect(buf.readUInt16LE(0)).toBe(4 + 8 + 4 + 8);
    const outer = new AttrSet(buf);
    expect(outer.types()).toEqual([12]);
    const inner = outer.nested(12);
    expect(inner?.u8(4)).toBe(1);
    expect(inner?.nested(2)?.u32(1)).toBe(9);
  });

  it('keeps repeated attributes and stops at a truncated tail', () => {
    const buf = Buffer.concat([encodeAttrs([attr.u32(1, 1), attr.u32(1, 2)]), Buffer.from([0x20, 0, 1, 0])]);
    const a = new AttrSet(buf);
    expect(a.all(1).map((b) => b.readUInt32LE(0))).toEqual([1, 2]);
    expect(a.u32(1)).toBe(1);
  });
});

describe('messages', () => {
  it('encodes the nlmsghdr and round-trips through parseMessages', () => {
    const header = Buffer.alloc(16, 0);
    const msg = encodeMessage({ type: RTM_NEWLINK, flags: 0x605, header, attrs: [attr.str(3, 'x')] }, 42, 7);
    expect(msg.length).toBe(16 + 16 + 8);
    expect(msg.readUInt32LE(0)).toBe(msg.length);
    expect(msg.readUInt16LE(4)).toBe(RTM_NEWLINK);
    expect(msg.readUInt16LE(6)).toBe(0x605);
    expect(msg.readUInt32LE(8)).toBe(42);
    expect(msg.readUInt32LE(12)).toBe(7);

    const two = Buffer.concat([msg, encodeMessage({ type: RTM_DELLINK, flags: 1, header }, 43)]);
    const parsed = parseMessages(two);
    expect(parsed.map((m) => [m.type, m.seq, m.payload.length])).toEqual([
      [RTM_NEWLINK, 42, 24],
      [RTM_DELLINK, 43, 16],
    ]);
    expect(new AttrSet(parsed[0]!.payload.subarray(16)).str(3)).toBe('x');
  });

  it('pads an odd-sized family header', () => {
    const msg = encodeMessage({ type: RTM_GETADDR, flags: 0, header: Buffer.from([2, 0, 0]), attrs: [attr.u8(1, 1)] }, 1);
    expect(msg.length).toBe(16 + 4 + 8);
    expect(msg.readUInt16LE(16 + 4 + 2)).toBe(1);
  });

  it('rejects a length that runs past the datagram', () => {
    const msg = encodeMessage({ type: RTM_NEWLINK, flags: 0, header: Buffer.alloc(16) }, 1);
    msg.writeUInt32LE(100, 0);
    expect(() => parseMessages(msg)).toThrow(/malformed netlink message/);
  });
});

describe('dump detection', () => {
  it('decides from the message type, since a NEW request with NLM_F_EXCL carries a dump bit', () => {
    expect([RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE, RTM_GETNEIGH].every(isGetType)).toBe(true);
    expect([RTM_NEWLINK, RTM_DELLINK, RTM_SETLINK, RTM_NEWROUTE, NLMSG_ERROR].some(isGetType)).toBe(false);
  });
});

describe('netlink constants', () => {
  it('have the values of the kernel UAPI header (linux/netlink.h) for every NLM_F_ and NLMSG_ name both define', () => {
    // An independent source: the header the addon is compiled against (Debian linux-libc-dev).
    const header = readFileSync('/usr/include/linux/netlink.h', 'utf8');
    const defined = new Map<string, number>();
    for (const [, name, value] of header.matchAll(/^#define\s+((?:NLM_F|NLMSG)_\w+)\s+(0x[0-9a-fA-F]+|\d+|\(\w+\|\w+\))/gm)) {
      const or = /^\((\w+)\|(\w+)\)$/.exec(value!);
      defined.set(name!, or ? defined.get(or[1]!)! | defined.get(or[2]!)! : Number(value));
    }
    const ours = Object.entries(constants).filter(([name, v]) => typeof v === 'number' && defined.has(name));
    expect(ours.map(([name]) => name)).toEqual(expect.arrayContaining(['NLM_F_REQUEST', 'NLM_F_ACK', 'NLM_F_DUMP', 'NLM_F_EXCL', 'NLM_F_CREATE', 'NLM_F_ACK_TLVS', 'NLMSG_ERROR', 'NLMSG_DONE']));
    for (const [name, value] of ours) expect(value, name).toBe(defined.get(name));
  });
});

/** Builds the NLMSG_ERROR payload the kernel sends: errno, echoed request, optional TLVs. */
function errorPayload(errno: number, request: Buffer, capped: boolean, tlvs: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeInt32LE(-errno);
  return Buffer.concat([head, capped ? request.subarray(0, 16) : request, tlvs]);
}

describe('extended acks', () => {
  const request = encodeMessage({ type: RTM_NEWLINK, flags: 0x605, header: Buffer.alloc(16), attrs: [attr.str(3, 'vx0'), attr.u32(99, 1)] }, 5);
  const tlvs = encodeAttrs([attr.str(NLMSGERR_ATTR_MSG, 'VXLAN ID must be lower than 16777216'), attr.u32(NLMSGERR_ATTR_OFFS, 44)]);

  it('reads the kernel text after a full echoed request', () => {
    const payload = errorPayload(34, request, false, tlvs);
    expect(decodeError({ flags: NLM_F_ACK_TLVS, payload })).toEqual({ errno: 34, message: 'VXLAN ID must be lower than 16777216', offset: 44 });
  });

  it('reads the kernel text after a capped (header-only) echo', () => {
    const payload = errorPayload(34, request, true, tlvs);
    expect(decodeError({ flags: NLM_F_ACK_TLVS | NLM_F_CAPPED, payload }).message).toBe('VXLAN ID must be lower than 16777216');
  });

  it('a plain ACK is errno 0 without text', () => {
    const payload = errorPayload(0, request, true, Buffer.alloc(0));
    expect(decodeError({ flags: NLM_F_CAPPED, payload })).toEqual({ errno: 0 });
  });

  it('an error without NLM_F_ACK_TLVS has no text', () => {
    expect(decodeError({ flags: 0, payload: errorPayload(19, request, false, Buffer.alloc(0)) })).toEqual({ errno: 19 });
  });
});

describe('address conversions', () => {
  it('converts IPv4 and IPv6 to bytes and back', () => {
    expect(ipToBytes('10.1.2.3').toString('hex')).toBe('0a010203');
    expect(ipToBytes('fd00::1').toString('hex')).toBe('fd000000000000000000000000000001');
    expect(ipToBytes('::').toString('hex')).toBe('0'.repeat(32));
    expect(ipToBytes('::ffff:1.2.3.4').toString('hex')).toBe('00000000000000000000ffff01020304');
    expect(ipToBytes(IpAddr.parse('10.1.2.3')).toString('hex')).toBe('0a010203');
    expect([ipFamily('10.0.0.1'), ipFamily(IpAddr.parse('fd00::1'))]).toEqual([2, 10]);
    expect(bytesToIp(ipToBytes('fd00:0:0:1::5'))).toBe('fd00:0:0:1::5');
    expect(bytesToIp(ipToBytes('2001:db8:0:0:1:0:0:1'))).toBe('2001:db8::1:0:0:1');
    expect(bytesToIp(ipToBytes('1:2:3:4:5:6:7:8'))).toBe('1:2:3:4:5:6:7:8');
    expect(bytesToIp(ipToBytes('1:0:3:4:5:6:7:8'))).toBe('1:0:3:4:5:6:7:8');
    expect(bytesToIp(Buffer.alloc(16))).toBe('::');
    expect(() => ipToBytes('10.0.0.256')).toThrow(TypeError);
  });

  it('takes prefixes as values or text (a bare address is the whole address)', () => {
    expect(toPrefix('10.0.0.5/24').toString()).toBe('10.0.0.5/24');
    expect(toPrefix('fd00::1').toString()).toBe('fd00::1/128');
    const p = IpPrefix.parse('10.0.0.5/24');
    expect(toPrefix(p)).toBe(p);
    expect(() => toPrefix('10.0.0.5/33')).toThrow(/prefix length 33/);
    expect(() => toPrefix('10.0.0.5/33')).toThrow(TypeError);
  });

  it('converts MAC addresses', () => {
    expect(macToBytes('02:AA:bb:00:01:ff').toString('hex')).toBe('02aabb0001ff');
    expect(bytesToMac(Buffer.from('02aabb0001ff', 'hex'))).toBe('02:aa:bb:00:01:ff');
    expect(() => macToBytes('02:aa:bb')).toThrow(TypeError);
  });
});
