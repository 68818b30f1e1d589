// Strict IPv4/IPv6 address parsing, canonical formatting and comparison. Pure.
//
// Accepted text forms:
//   IPv4: exactly four decimal octets 0..255, no leading zeros ("10.0.1.11"; not "010.0.1.11", "10.1", "0x0a.0.0.1").
//   IPv6: RFC 4291 section 2.2: eight groups of 1..4 hex digits, at most one "::", an optional dotted IPv4 tail
//         ("::ffff:192.0.2.1"), either case. No zone index ("fe80::1%eth0"), no brackets, no prefix length.
// Canonical text (formatIp / normalizeIp) is RFC 5952: lowercase, no leading zeros, the longest run (leftmost on a
// tie) of two or more zero groups shortened to "::", IPv4-mapped addresses written "::ffff:a.b.c.d".

import { SluiceError } from './errors.ts';
import type { IpFamily } from './types.ts';

/** A parsed address: 4 bytes (IPv4) or 16 bytes (IPv6), network byte order. */
export interface ParsedIp {
  readonly family: IpFamily;
  readonly bytes: Uint8Array;
}

const V6_GROUP = /^[0-9a-fA-F]{1,4}$/;
const V6_CHARS = /^[0-9a-fA-F:.]+$/;

/** Parses dotted-quad IPv4 text into 4 bytes, or returns undefined. */
export function parseIPv4(text: string): Uint8Array | undefined {
  if (text.length < 7 || text.length > 15) return undefined;
  const out = new Uint8Array(4);
  let octet = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 46; // a virtual '.' ends the last octet
    if (c === 46) {
      if (digits === 0 || octet > 3) return undefined;
      out[octet++] = value;
      value = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && value === 0) return undefined; // leading zero
      value = value * 10 + (c - 48);
      if (value > 255) return undefined;
      digits++;
    } else {
      return undefined;
    }
  }
  return octet === 4 ? out : undefined;
}

/** Parses IPv6 text into 16 bytes, or returns undefined. */
export function parseIPv6(text: string): Uint8Array | undefined {
  // Longest form: "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255" (45 characters).
  if (text.length < 2 || text.length > 45 || !V6_CHARS.test(text)) return undefined;
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const compressed = halves.length === 2;
  const head = halves[0] === '' ? [] : halves[0].split(':');
  const tail = compressed ? (halves[1] === '' ? [] : halves[1].split(':')) : [];
  // Groups as 16-bit numbers; a dotted IPv4 tail is allowed only as the very last piece of the address.
  const toGroups = (pieces: string[], endsAddress: boolean): number[] | undefined => {
    const groups: number[] = [];
    for (let i = 0; i < pieces.length; i++) {
      const p = pieces[i];
      if (endsAddress && i === pieces.length - 1 && p.includes('.')) {
        const v4 = parseIPv4(p);
        if (v4 === undefined) return undefined;
        groups.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else {
        if (!V6_GROUP.test(p)) return undefined;
        groups.push(Number.parseInt(p, 16));
      }
    }
    return groups;
  };
  const headGroups = toGroups(head, !compressed);
  const tailGroups = toGroups(tail, true);
  if (headGroups === undefined || tailGroups === undefined) return undefined;
  const count = headGroups.length + tailGroups.length;
  if (compressed ? count > 7 : count !== 8) return undefined;
  const groups = [...headGroups, ...new Array<number>(8 - count).fill(0), ...tailGroups];
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    out[2 * i] = groups[i] >> 8;
    out[2 * i + 1] = groups[i] & 0xff;
  }
  return out;
}

/** Parses IPv4 or IPv6 text, or returns undefined. */
export function parseIp(text: string): ParsedIp | undefined {
  if (text.includes(':')) {
    const bytes = parseIPv6(text);
    return bytes === undefined ? undefined : { family: 6, bytes };
  }
  const bytes = parseIPv4(text);
  return bytes === undefined ? undefined : { family: 4, bytes };
}

/** 4, 6, or undefined when the text is not a valid address. */
export function ipFamily(text: string): IpFamily | undefined {
  return parseIp(text)?.family;
}

export function isIPv4(text: string): boolean {
  return parseIPv4(text) !== undefined;
}

export function isIPv6(text: string): boolean {
  return parseIPv6(text) !== undefined;
}

function mustParse(text: string): ParsedIp {
  const p = parseIp(text);
  if (p === undefined) throw new SluiceError('SLUICE_E_CONFIG_INVALID_IP', `not an IP address: "${text}"`);
  return p;
}

function isV4Mapped(b: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/** Canonical (RFC 5952) text of a parsed address. */
export function formatIp(ip: ParsedIp): string {
  const b = ip.bytes;
  if (ip.family === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  if (isV4Mapped(b)) return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push((b[2 * i] << 8) | b[2 * i + 1]);
  // Longest run of zero groups, length >= 2, leftmost on a tie.
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (gs: number[]) => gs.map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`;
}

/** Canonical text of an address given as text. Throws SluiceError(SLUICE_E_CONFIG_INVALID_IP) if invalid. */
export function normalizeIp(text: string): string {
  return formatIp(mustParse(text));
}

/** Full IPv6 text, eight groups of four lowercase hex digits: "2001:0db8:0000:0000:0000:0000:0000:0001". */
export function expandIPv6(text: string): string {
  const p = mustParse(text);
  if (p.family !== 6) throw new SluiceError('SLUICE_E_CONFIG_INVALID_IP', `not an IPv6 address: "${text}"`);
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) {
    groups.push(((p.bytes[2 * i] << 8) | p.bytes[2 * i + 1]).toString(16).padStart(4, '0'));
  }
  return groups.join(':');
}

/** The address as one hex number, "0x" + 8 (IPv4) or 32 (IPv6) lowercase digits (OpenFlow field values). */
export function ipToHex(text: string): string {
  const p = mustParse(text);
  let s = '0x';
  for (const byte of p.bytes) s += byte.toString(16).padStart(2, '0');
  return s;
}

/** An IPv4 address as an unsigned 32-bit number. */
export function ipv4ToUint32(text: string): number {
  const b = parseIPv4(text);
  if (b === undefined) throw new SluiceError('SLUICE_E_CONFIG_INVALID_IP', `not an IPv4 address: "${text}"`);
  return ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0;
}

/** Total order: IPv4 before IPv6, then numerically. Throws on invalid text. */
export function compareIp(a: string, b: string): number {
  const pa = mustParse(a);
  const pb = mustParse(b);
  if (pa.family !== pb.family) return pa.family - pb.family;
  for (let i = 0; i < pa.bytes.length; i++) {
    if (pa.bytes[i] !== pb.bytes[i]) return pa.bytes[i] - pb.bytes[i];
  }
  return 0;
}

/** Same address, whatever its spelling ("2001:DB8::1" equals "2001:db8:0:0::1"). Throws on invalid text. */
export function ipEquals(a: string, b: string): boolean {
  return compareIp(a, b) === 0;
}

/**
 * Why an address cannot be a VIP, a backend or a tunnel endpoint, or undefined if it can:
 * unspecified (0.0.0.0, ::), "this network" (0/8), loopback (127/8, ::1), link-local (169.254/16, fe80::/10),
 * multicast (224/4, ff00::/8), reserved (240/4) and limited broadcast (255.255.255.255), or IPv4-mapped IPv6
 * (::ffff:0:0/96; write the IPv4 address instead). None of them is routed to a unicast service across an underlay:
 * a packet for one is dropped, answered by the wrong stack or flooded (docs/config.md, docs/security.md).
 */
export function unusableReason(ip: ParsedIp): string | undefined {
  const b = ip.bytes;
  if (b.every((x) => x === 0)) return 'the unspecified address';
  if (ip.family === 4) {
    if (b[0] === 0) return 'in 0.0.0.0/8 ("this network")';
    if (b[0] === 127) return 'a loopback address';
    if (b[0] === 169 && b[1] === 254) return 'a link-local address (169.254.0.0/16)';
    if (b[0] >= 224 && b[0] <= 239) return 'a multicast address';
    if (b.every((x) => x === 255)) return 'the broadcast address';
    if (b[0] >= 240) return 'a reserved address (240.0.0.0/4)';
    return undefined;
  }
  if (b[0] === 0xff) return 'a multicast address';
  if (b[0] === 0xfe && (b[1]! & 0xc0) === 0x80) return 'a link-local address (fe80::/10)';
  if (b[15] === 1 && b.subarray(0, 15).every((x) => x === 0)) return 'a loopback address';
  if (isV4Mapped(b)) return 'an IPv4-mapped IPv6 address (write the IPv4 address)';
  return undefined;
}
