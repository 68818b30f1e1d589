// Small, fast, portable 32-bit hashes for slot-table decisions. Pure.
// These values are part of the table format: changing them changes every table (test/unit/slots.test.ts pins them).

const encoder = new TextEncoder();

/** FNV-1a, 32 bit, over the UTF-8 bytes of `s`. Unsigned result. */
export function fnv1a32(s: string): number {
  let h = 0x811c9dc5;
  let ascii = true;
  for (let i = 0; i < s.length; i++) {
    const u = s.charCodeAt(i);
    if (u >= 0x80) {
      ascii = false;
      break;
    }
    h ^= u;
    h = Math.imul(h, 0x01000193);
  }
  if (ascii) return h >>> 0; // ASCII: the code units are the UTF-8 bytes
  const bytes = encoder.encode(s);
  h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i];
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** MurmurHash3's 32-bit finaliser: a bijective avalanche mix. Unsigned result. */
export function fmix32(x: number): number {
  let h = x | 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Hash of a (key hash, slot) pair, used to pick which of a member's slots it gives up. Unsigned result. */
export function slotHash(keyHash: number, slot: number): number {
  return fmix32(keyHash ^ Math.imul(slot + 1, 0x9e3779b9));
}
