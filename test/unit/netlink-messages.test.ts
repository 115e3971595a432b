import { describe, expect, it } from 'vitest';
import { addressAttrs, decodeAddress, encodeIfaddrmsg } from '../../src/kernel/address.js';
import { bridgePortAttrs, commonLinkAttrs, decodeLink, encodeIfinfomsg, linkInfoAttr } from '../../src/kernel/link-codec.js';
import { attr, AttrSet, encodeAttrs } from '../../src/kernel/netlink/codec.js';
import {
  AF_BRIDGE,
  IFA_BROADCAST,
  IFA_FLAGS,
  IFA_F_NODAD,
  IFLA_IFNAME,
  IFLA_INFO_DATA,
  IFLA_INFO_KIND,
  IFLA_INFO_SLAVE_DATA,
  IFLA_INFO_SLAVE_KIND,
  IFLA_LINKINFO,
  IFLA_MTU,
  IFLA_NET_NS_FD,
  IFLA_PROTINFO,
  NDA_DST,
  NDA_LLADDR,
  NLA_F_NESTED,
  NTF_MASTER,
  NTF_SELF,
  NUD,
  RTA_DST,
  RTA_GATEWAY,
  RTA_OIF,
  RTA_PRIORITY,
  RTA_TABLE,
  RTNH_F_ONLINK,
  RT_SCOPE,
} from '../../src/kernel/netlink/constants.js';
import { decodeFdbEntry, decodeNeighbour, encodeNdmsg, fdbMessage, neighbourMessage } from '../../src/kernel/neighbour.js';
import { routeMessage } from '../../src/kernel/route.js';

/** Encodes a single attribute and returns its bytes as hex. */
const hex = (a: ReturnType<typeof attr.u8>) => encodeAttrs([a]).toString('hex');

function infoData(spec: Parameters<typeof linkInfoAttr>[0]): AttrSet {
  const linkinfo = new AttrSet(encodeAttrs([linkInfoAttr(spec)])).nested(IFLA_LINKINFO);
  expect(linkinfo?.str(IFLA_INFO_KIND)).toBe(spec.kind);
  return linkinfo?.nested(IFLA_INFO_DATA) ?? new AttrSet(Buffer.alloc(0));
}

describe('link messages', () => {
  it('encodes ifinfomsg with index, flags and change mask', () => {
    expect(encodeIfinfomsg({ family: AF_BRIDGE, index: 5, flags: 1, change: 1 }).toString('hex')).toBe('07000000' + '05000000' + '01000000' + '01000000');
  });

  it('encodes a macvlan exactly', () => {
    // 28 bytes: IFLA_LINKINFO|NESTED { IFLA_INFO_KIND "macvlan\0", IFLA_INFO_DATA|NESTED { MODE u32 } }
    expect(hex(linkInfoAttr({ kind: 'macvlan', mode: 'bridge' }))).toBe(
      '1c00' + '1280' + '0c00' + '0100' + '6d6163766c616e00' + '0c00' + '0280' + '0800' + '0100' + '04000000',
    );
    expect(
      (['private', 'vepa', 'bridge', 'passthru', 'source'] as const).map((mode) => infoData({ kind: 'macvlan', mode }).u32(1)),
    ).toEqual([1, 2, 4, 8, 16]);
  });

  it('encodes ipvlan mode and flags as u16', () => {
    expect((['l2', 'l3', 'l3s'] as const).map((mode) => infoData({ kind: 'ipvlan', mode }).u16(1))).toEqual([0, 1, 2]);
    const d = infoData({ kind: 'ipvlan', mode: 'l3s', flag: 'private' });
    expect(d.get(1)?.toString('hex')).toBe('0200');
    expect(d.get(2)?.toString('hex')).toBe('0100');
    expect(infoData({ kind: 'ipvlan', mode: 'l2' }).u16(2)).toBe(0); // bridge
  });

  it('encodes vxlan VNI, local, port (network order), learning and underlay', () => {
    const d = infoData({ kind: 'vxlan', vni: 0x123456, local: '192.0.2.1', port: 4789, learning: false, underlayIndex: 3 });
    expect(d.get(1)?.toString('hex')).toBe('56341200'); // IFLA_VXLAN_ID u32 LE
    expect(d.get(4)?.toString('hex')).toBe('c0000201'); // IFLA_VXLAN_LOCAL
    expect(d.get(15)?.toString('hex')).toBe('12b5'); // IFLA_VXLAN_PORT big-endian
    expect(d.u8(7)).toBe(0); // IFLA_VXLAN_LEARNING
    expect(d.u32(3)).toBe(3); // IFLA_VXLAN_LINK
    const v6 = infoData({ kind: 'vxlan', vni: 1, local: 'fd00::1' });
    expect(v6.has(4)).toBe(false);
    expect(v6.get(17)?.toString('hex')).toBe('fd000000000000000000000000000001'); // LOCAL6
    expect(() => linkInfoAttr({ kind: 'vxlan', vni: -1 })).toThrow(TypeError);
  });

  it('encodes the veth peer as an ifinfomsg followed by name and netns fd', () => {
    const d = infoData({ kind: 'veth', peer: { name: 'eth0', netnsFd: 21, mtu: 1450 } });
    const peer = d.get(1); // VETH_INFO_PEER
    expect(peer?.subarray(0, 16).equals(Buffer.alloc(16))).toBe(true);
    const attrs = new AttrSet(peer?.subarray(16) ?? Buffer.alloc(0));
    expect(attrs.str(IFLA_IFNAME)).toBe('eth0');
    expect(attrs.u32(IFLA_NET_NS_FD)).toBe(21);
    expect(attrs.u32(IFLA_MTU)).toBe(1450);
    // The peer attribute itself is not flagged as a nest: its payload starts with a struct.
    const raw = new AttrSet(encodeAttrs([linkInfoAttr({ kind: 'veth', peer: { name: 'x' } })])).nested(IFLA_LINKINFO)?.get(IFLA_INFO_DATA);
    expect(raw?.readUInt16LE(2)).toBe(1);
  });

  it('a bridge has a kind and no data', () => {
    const linkinfo = new AttrSet(encodeAttrs([linkInfoAttr({ kind: 'bridge' })])).nested(IFLA_LINKINFO);
    expect(linkinfo?.types()).toEqual([IFLA_INFO_KIND]);
  });

  it('nests bridge port flags under IFLA_PROTINFO with NLA_F_NESTED', () => {
    const buf = encodeAttrs([attr.nested(IFLA_PROTINFO, bridgePortAttrs({ hairpin: true, learning: false, isolated: true }))]);
    expect(buf.readUInt16LE(2)).toBe(IFLA_PROTINFO | NLA_F_NESTED);
    const p = new AttrSet(buf).nested(IFLA_PROTINFO);
    expect([p?.u8(4), p?.u8(8), p?.u8(33)]).toEqual([1, 0, 1]);
    expect(bridgePortAttrs({})).toEqual([]);
  });

  it('encodes and decodes neigh_suppress as IFLA_BRPORT_NEIGH_SUPPRESS (32 in linux/if_link.h)', () => {
    const p = new AttrSet(encodeAttrs(bridgePortAttrs({ learning: false, neighSuppress: true })));
    expect([p.u8(8), p.u8(32)]).toEqual([0, 1]);
    const port = Buffer.concat([
      encodeIfinfomsg({ index: 5 }),
      encodeAttrs([attr.nested(IFLA_LINKINFO, [attr.str(IFLA_INFO_KIND, 'vxlan'), attr.str(IFLA_INFO_SLAVE_KIND, 'bridge'), attr.nested(IFLA_INFO_SLAVE_DATA, bridgePortAttrs({ learning: false, neighSuppress: true }))])]),
    ]);
    expect(decodeLink(port).bridgePort).toMatchObject({ learning: false, neighSuppress: true });
  });

  it('decodes a link with vxlan data and bridge port info', () => {
    const payload = Buffer.concat([
      encodeIfinfomsg({ index: 9, flags: 0x10001 }),
      encodeAttrs([
        ...commonLinkAttrs({ name: 'vx0', mtu: 1450, mac: '02:00:00:00:00:09', masterIndex: 4 }),
        linkInfoAttr({ kind: 'vxlan', vni: 42, port: 4789, learning: false, local: '10.0.0.1' }),
      ]),
    ]);
    const l = decodeLink(payload);
    expect(l).toMatchObject({ index: 9, name: 'vx0', kind: 'vxlan', up: true, lowerUp: true, mtu: 1450, mac: '02:00:00:00:00:09', masterIndex: 4 });
    expect(l.vxlan).toEqual({ vni: 42, port: 4789, learning: false, local: '10.0.0.1' });

    const port = Buffer.concat([
      encodeIfinfomsg({ index: 5 }),
      encodeAttrs([
        attr.str(IFLA_IFNAME, 'p0'),
        attr.nested(IFLA_LINKINFO, [attr.str(IFLA_INFO_KIND, 'veth'), attr.str(IFLA_INFO_SLAVE_KIND, 'bridge'), attr.nested(IFLA_INFO_SLAVE_DATA, bridgePortAttrs({ hairpin: true, learning: true, isolated: false }))]),
      ]),
    ]);
    expect(decodeLink(port).bridgePort).toMatchObject({ hairpin: true, learning: true, isolated: false });
  });
});

describe('address messages', () => {
  it('sends IFA_FLAGS NODAD and a computed broadcast', () => {
    const a = new AttrSet(encodeAttrs(addressAttrs('10.1.2.3/20', { broadcast: true, nodad: true })));
    expect(a.get(IFA_BROADCAST)?.toString('hex')).toBe('0a010fff');
    expect(a.u32(IFA_FLAGS)).toBe(IFA_F_NODAD);
    expect(encodeIfaddrmsg(10, 64, IFA_F_NODAD, 0, 7).toString('hex')).toBe('0a400200' + '07000000');
    expect(() => addressAttrs('fd00::1/64', { broadcast: true })).toThrow(/IPv4/);
  });

  it('decodes an address', () => {
    const payload = Buffer.concat([encodeIfaddrmsg(2, 24, 0x80, 0, 3), encodeAttrs(addressAttrs('10.0.0.2/24', { broadcast: true }))]);
    expect(decodeAddress(payload)).toMatchObject({ index: 3, cidr: '10.0.0.2/24', broadcast: '10.0.0.255', permanent: true, peer: undefined });
  });
});

describe('route messages', () => {
  it('encodes a default route via a gateway with metric, onlink and a table above 255', () => {
    const { header, attrs } = routeMessage({ dst: 'default', gateway: '10.0.0.1', onlink: true, metric: 100, table: 1000 }, 4, false);
    expect(header.readUInt8(0)).toBe(2); // AF_INET
    expect(header.readUInt8(1)).toBe(0); // dst_len
    expect(header.readUInt8(4)).toBe(0); // RT_TABLE_UNSPEC: the id is in RTA_TABLE
    expect(header.readUInt8(6)).toBe(RT_SCOPE.universe);
    expect(header.readUInt8(7)).toBe(1); // RTN_UNICAST
    expect(header.readUInt32LE(8)).toBe(RTNH_F_ONLINK);
    const a = new AttrSet(encodeAttrs(attrs));
    expect(a.u32(RTA_TABLE)).toBe(1000);
    expect(a.get(RTA_GATEWAY)?.toString('hex')).toBe('0a000001');
    expect(a.u32(RTA_OIF)).toBe(4);
    expect(a.u32(RTA_PRIORITY)).toBe(100);
    expect(a.has(RTA_DST)).toBe(false);
  });

  it('uses scope link for an IPv4 device route and "any" matching for delete', () => {
    expect(routeMessage({ dst: '10.5.0.0/16' }, 2, false).header.readUInt8(6)).toBe(RT_SCOPE.link);
    expect(routeMessage({ dst: 'fd00::/64' }, 2, false).header.readUInt8(6)).toBe(RT_SCOPE.universe);
    const del = routeMessage({ dst: '10.5.0.0/16' }, undefined, true).header;
    expect([del.readUInt8(1), del.readUInt8(4), del.readUInt8(5), del.readUInt8(6), del.readUInt8(7)]).toEqual([16, 254, 0, RT_SCOPE.nowhere, 0]);
    expect(() => routeMessage({ dst: 'default' }, undefined, false)).toThrow(/family/);
    expect(() => routeMessage({ dst: '10.0.0.0/8', gateway: 'fd00::1' }, undefined, false)).toThrow(/family/);
  });
});

describe('neighbour and FDB messages', () => {
  it('encodes a permanent IPv4 neighbour', () => {
    const { header, attrs } = neighbourMessage(6, { dev: 6, ip: '10.0.0.9', mac: '02:00:00:00:00:09' });
    expect(header.toString('hex')).toBe('02000000' + '06000000' + '8000' + '00' + '00');
    const a = new AttrSet(encodeAttrs(attrs));
    expect(a.get(NDA_DST)?.toString('hex')).toBe('0a000009');
    expect(a.get(NDA_LLADDR)?.toString('hex')).toBe('020000000009');
  });

  it('encodes a VXLAN flood entry (AF_BRIDGE, NTF_SELF, remote dst)', () => {
    const { header, attrs } = fdbMessage(8, { dev: 8, mac: '00:00:00:00:00:00', dst: '192.0.2.7' });
    expect(header.readUInt8(0)).toBe(AF_BRIDGE);
    expect(header.readInt32LE(4)).toBe(8);
    expect(header.readUInt16LE(8)).toBe(NUD.permanent);
    expect(header.readUInt8(10)).toBe(NTF_SELF);
    const a = new AttrSet(encodeAttrs(attrs));
    expect(a.get(NDA_LLADDR)?.toString('hex')).toBe('000000000000');
    expect(a.get(NDA_DST)?.toString('hex')).toBe('c0000207');
    expect(fdbMessage(8, { dev: 8, mac: '02:00:00:00:00:01', on: 'master' }).header.readUInt8(10)).toBe(NTF_MASTER);
  });

  it('tags a neighbour with NDA_PROTOCOL (12 in linux/neighbour.h) and reads the tag back', () => {
    const { header, attrs } = neighbourMessage(6, { dev: 6, ip: '10.0.0.9', mac: '02:00:00:00:00:09', protocol: 83 });
    const a = new AttrSet(encodeAttrs(attrs));
    expect(a.u8(12)).toBe(83);
    expect(decodeNeighbour(Buffer.concat([header, encodeAttrs(attrs)]))).toMatchObject({ ip: '10.0.0.9', mac: '02:00:00:00:00:09', permanent: true, protocol: 83 });
    const untagged = neighbourMessage(6, { dev: 6, ip: '10.0.0.9', mac: '02:00:00:00:00:09' });
    expect(decodeNeighbour(Buffer.concat([untagged.header, encodeAttrs(untagged.attrs)])).protocol).toBeUndefined();
  });

  it('marks an FDB entry extern_learn with NTF_EXT_LEARNED (0x10) next to self or master, and decodes it', () => {
    expect(fdbMessage(8, { dev: 8, mac: '02:00:00:00:00:01', dst: '192.0.2.7', externLearned: true }).header.readUInt8(10)).toBe(0x02 | 0x10);
    expect(fdbMessage(8, { dev: 8, mac: '02:00:00:00:00:01', on: 'master', externLearned: true }).header.readUInt8(10)).toBe(0x04 | 0x10);
    const entry = decodeFdbEntry(Buffer.concat([encodeNdmsg(AF_BRIDGE, 8, NUD.permanent, 0x02 | 0x10), encodeAttrs([attr.bytes(NDA_LLADDR, Buffer.from('020000000001', 'hex'))])]));
    expect(entry).toMatchObject({ mac: '02:00:00:00:00:01', self: true, externLearned: true, permanent: true });
    expect(decodeFdbEntry(Buffer.concat([encodeNdmsg(AF_BRIDGE, 8, NUD.permanent, 0x02), encodeAttrs([attr.bytes(NDA_LLADDR, Buffer.from('020000000001', 'hex'))])])).externLearned).toBe(false);
  });
});
