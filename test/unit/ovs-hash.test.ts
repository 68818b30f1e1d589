// OVS 3.1's packet hashes as sluice reproduces them (src/hashing/ovs.ts), pinned to answers read from a real
// ovs-vswitchd 3.1.0 (Debian amd64, userspace datapath) on 2026-12-05 by the procedure in docs/design/hash.md:
// `fields`: `ofproto/trace` of `multipath(symmetric_l3l4+udp,0,modulo_n,65536,0,reg1[0..15])` (the low 16 bits);
// `dp_hash`: a raw frame per tuple through a `selection_method=dp_hash` group that copies all 32 bits of
// NXM_NX_DP_HASH, read back from the recirculated datapath flow's `dp_hash(...)` match. Pure; nothing faked.

import * as assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { tupleHash } from '../../src/explain.ts';
import {
  fieldsModeHash,
  ovsHashSymmetricL3L4,
  ovsJhashBytes,
  ovsUserspaceDpHash,
  type PacketKey,
} from '../../src/hashing/ovs.ts';
import { parseIp } from '../../src/model/ip.ts';

// proto, src, sport, dst, dport, fields hash & 0xffff, dp_hash (all 32 bits)
const KNOWN: readonly [string, string, number, string, number, number, number][] = [
  ['tcp', '198.51.100.7', 40000, '203.0.113.10', 80, 0x4c6e, 0x00ffe93e],
  ['tcp', '10.0.0.1', 1, '10.0.0.2', 2, 0x8770, 0xfbe73382],
  ['udp', '198.51.100.7', 40000, '203.0.113.10', 53, 0xb80e, 0x82565dc9],
  ['udp', '192.0.2.55', 65535, '203.0.113.11', 443, 0xf468, 0x8bf570f0],
  ['tcp', '2001:db8:1::7', 40000, '2001:db8::10', 80, 0xdb5a, 0xecc3ef77],
  ['udp', '2001:db8:1::7', 40000, '2001:db8::10', 53, 0xe1c4, 0x4351a523],
  ['tcp', 'fd00::abcd:1', 12345, '2001:db8::10', 8080, 0xd26b, 0x27fa4957],
];

function key(proto: string, src: string, sport: number, dst: string, dport: number): PacketKey {
  return { proto: proto as 'tcp', src: parseIp(src)!.bytes, dst: parseIp(dst)!.bytes, sport, dport };
}

describe('OVS 3.1 hashes, known answers from a real ovs-vswitchd', () => {
  for (const [proto, src, sport, dst, dport, fields16, dp] of KNOWN) {
    test(`${proto} ${src}:${sport} -> ${dst}:${dport}`, () => {
      const k = key(proto, src, sport, dst, dport);
      assert.equal(fieldsModeHash(k) & 0xffff, fields16, 'multipath symmetric_l3l4+udp');
      assert.equal(ovsUserspaceDpHash(k), dp, 'userspace dp_hash');
    });
  }

  test('a basis off by one gives other answers (the known answers can fail)', () => {
    const wrong = KNOWN.filter(([p, s, sp, d, dp, f16, h]) => {
      const k = key(p, s, sp, d, dp);
      return (ovsHashSymmetricL3L4(k, 1) & 0xffff) === f16 || ovsUserspaceDpHash(k, 1) === h;
    });
    assert.equal(wrong.length, 0);
  });

  test('the fields hash includes UDP ports and is the same in both directions', () => {
    const a = fieldsModeHash(key('udp', '198.51.100.7', 40000, '203.0.113.10', 53));
    const b = fieldsModeHash(key('udp', '198.51.100.7', 40001, '203.0.113.10', 53));
    assert.notEqual(a, b);
    assert.equal(a, fieldsModeHash(key('udp', '203.0.113.10', 53, '198.51.100.7', 40000)));
  });

  test('jhash_bytes: lookup3 of an empty input is its seed mix (0xdeadbeef)', () => {
    // lookup3's hashlittle("", 0) = 0xdeadbeef (Bob Jenkins' own test vector).
    assert.equal(ovsJhashBytes(new Uint8Array(0), 0), 0xdeadbeef);
  });

  test('mixed families are refused, not hashed', () => {
    assert.throws(() => fieldsModeHash(key('tcp', '10.0.0.1', 1, '2001:db8::1', 2)), /both be IPv4/);
  });
});

describe('tupleHash: what explain computes, and where it refuses', () => {
  const t = { proto: 'tcp' as const, src: '198.51.100.7', sport: 40000, dst: '203.0.113.10', dport: 80 };
  test('fields and netdev dp_hash are known', () => {
    const f = tupleHash('fields', t);
    assert.ok(f.known && (f.hash & 0xffff) === 0x4c6e);
    const d = tupleHash('dp_hash', t, 'netdev');
    assert.ok(d.known && d.hash === 0x00ffe93e);
  });
  test('the kernel datapath and NIC RSS hashes are not guessed', () => {
    const k = tupleHash('dp_hash', t, 'system');
    assert.ok(!k.known && /random value at boot/.test(k.why));
    const r = tupleHash('dp_hash', t, 'netdev-rss');
    assert.ok(!r.known && /RSS/.test(r.why));
    assert.ok(tupleHash('fields', t, 'system').known, 'fields mode is known on any datapath');
  });
});
