/**
 * A stable, non-cryptographic hash for derived names (veth names, nftables chain names, owner
 * comments that must fit 128 bytes). node:crypto costs ~9 ms to load in a CNI process and these
 * names need spread, not secrecy: FNV-1a 64 (a public, well-studied hash) over the UTF-8 bytes.
 * Longer digests chain another round over the previous digest, so any length is available.
 */
const FNV_OFFSET = 0xcbf29ce484222325n;
const FNV_PRIME = 0x100000001b3n;
const MASK_64 = 0xffffffffffffffffn;
const encoder = new TextEncoder();

function fnv1a64(bytes: Uint8Array, seed: bigint): bigint {
  let h = seed;
  for (const b of bytes) {
    h ^= BigInt(b);
    h = (h * FNV_PRIME) & MASK_64;
  }
  return h;
}

/** `hexChars` lowercase hex digits derived from `text` (default 16 = 64 bits). */
export function stableHash(text: string, hexChars = 16): string {
  const bytes = encoder.encode(text);
  let out = '';
  let seed = FNV_OFFSET;
  while (out.length < hexChars) {
    seed = fnv1a64(bytes, seed);
    out += seed.toString(16).padStart(16, '0');
  }
  return out.slice(0, hexChars);
}
