import { describe, expect, it } from 'vitest';
import { encodeRequest, encodeResponse, greeting, MAX_STDIN_BYTES, ProtocolError, RequestReader } from '../../src/daemon/cni-protocol.js';

const req = { type: 'shoal-bridge', env: { CNI_COMMAND: 'ADD', CNI_ARGS: 'A=1;B=2', EMPTY: '' }, stdin: '{"cniVersion":"1.0.0","name":"ü"}' };

describe('CNI fast path protocol', () => {
  it('reads a request however the stream cuts it', () => {
    const bytes = encodeRequest(req);
    for (const step of [1, 3, 7, bytes.length]) {
      const reader = new RequestReader();
      let got;
      for (let i = 0; i < bytes.length; i += step) {
        expect(got).toBeUndefined();
        got = reader.push(bytes.subarray(i, i + step));
      }
      expect(got).toEqual(req);
    }
  });

  it('reads the environment as getenv does: "=" in values, first of a key wins, "__proto__" is a key', () => {
    const env = Buffer.from('A=x=y\0A=second\0NOEQUALS\0__proto__=p\0');
    const bytes = Buffer.concat([Buffer.from(`REQ shoal-ipam ${env.length} 0\n`), env]);
    const got = new RequestReader().push(bytes)!;
    expect(Object.entries(got.env)).toEqual([['A', 'x=y'], ['__proto__', 'p']]);
    expect(Object.getPrototypeOf(got.env)).toBeNull();
  });

  it('refuses malformed, oversized and overlong requests', () => {
    expect(() => new RequestReader().push(Buffer.from('GET / HTTP/1.1\n'))).toThrow(ProtocolError);
    expect(() => new RequestReader().push(Buffer.from('REQ ../etc/passwd 0 0\n'))).toThrow(/invalid plugin type/);
    expect(() => new RequestReader().push(Buffer.from(`REQ shoal-ipam 0 ${MAX_STDIN_BYTES + 1}\n`))).toThrow(/over the limit/);
    expect(() => new RequestReader().push(Buffer.alloc(300, 0x41))).toThrow(/header too long/);
    expect(() => new RequestReader().push(Buffer.from('REQ shoal-ipam 0 1\nab'))).toThrow(/more bytes/);
  });

  it('writes the greeting and the response the forwarder parses', () => {
    expect(greeting('0123456789abcdef', 60000, { net: 1, mnt: 2, pid: 3 })).toBe('SHOAL-CNI/1 0123456789abcdef 60000 1 2 3\n');
    const res = encodeResponse({ exitCode: 1, stdout: '{"code":11}\n', stderr: 'é\n' });
    expect(res.toString('utf8')).toBe('RES 1 12 3\n{"code":11}\né\n');
  });
});
