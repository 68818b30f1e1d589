// Small helpers the flow builders share: number/address formatting exactly as `ovs-ofctl` prints it. Pure.

import type { IpFamily, Protocol } from '../model/types.ts';

/** A number as ovs-ofctl prints register/metadata values: `0` or lower-case hex `0x1f`. */
export function ofNum(n: number): string {
  return n === 0 ? '0' : `0x${(n >>> 0).toString(16)}`;
}

/** `NXM_NX_REG1[0..7]`, `NXM_NX_REG1[0]` for one bit, as ovs-ofctl prints a subfield of the low `bits` bits. */
export function lowBits(nxm: string, bits: number): string {
  return bits === 1 ? `${nxm}[0]` : `${nxm}[0..${bits - 1}]`;
}

/** Dotted IPv4 -> unsigned 32-bit number. */
export function ipv4ToInt(ip: string): number {
  const p = ip.split('.').map(Number);
  if (p.length !== 4 || p.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) {
    throw new Error(`not an IPv4 address: ${ip}`);
  }
  return ((p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]) >>> 0;
}

/** Match keyword of the L3 protocol: `ip` / `ipv6`. */
export function l3(family: IpFamily): string {
  return family === 6 ? 'ipv6' : 'ip';
}

/** Match keyword of the L4 protocol: `tcp`, `udp`, `tcp6`, `udp6`. */
export function l4(protocol: Protocol, family: IpFamily): string {
  return family === 6 ? `${protocol}6` : protocol;
}

/** Match field of the destination address: `nw_dst=` / `ipv6_dst=`. */
export function dstField(family: IpFamily): string {
  return family === 6 ? 'ipv6_dst' : 'nw_dst';
}

export function familyOf(address: string): IpFamily {
  return address.includes(':') ? 6 : 4;
}

/** `nat(dst=...)` target: `10.0.1.11`, `10.0.1.11:8080`, `fd00::11`, `[fd00::11]:8080`. */
export function natTarget(address: string, port: number | undefined): string {
  if (port === undefined) return address;
  return familyOf(address) === 6 ? `[${address}]:${port}` : `${address}:${port}`;
}

/** Joins match pieces, dropping empty ones. Callers list pieces in the order ovs-ofctl prints them:
 *  ct_state, ct_zone, ct_mark, protocol, reg0.., tun_src, tun_metadataN.., in_port, nw/ipv6 addresses, tp_dst,
 *  tcp_flags. */
export function match(...pieces: (string | undefined | false)[]): string {
  return pieces.filter((p): p is string => typeof p === 'string' && p.length > 0).join(',');
}

export function actions(...pieces: (string | false)[]): string {
  return pieces.filter((p) => p !== false).join(',');
}
