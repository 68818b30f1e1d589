// The XDP gateway program (src/xdp/gateway.bpf.c) on crafted packets, through the kernel's BPF_PROG_TEST_RUN
// (`bpftool prog run`, src/xdp/bpftool.ts: a private mount namespace and bpffs, nothing left behind). Root, clang
// and bpftool (scripts/ensure-deps.sh). No lab: the program is built, verified and JIT-run by this kernel.
//
// The reference is the OVS gateway: every output is compared byte for byte with what an OVS gateway running the
// same generation's compiled flows sends (helpers/xdp.ts `ovsGatewayOutput`, derived from the flows' multipath and
// set_field actions; test/e2e/xdp-gateway.test.ts pins that model against a live OVS gateway), and every slot with
// src/hashing/ovs.ts `fieldsModeHash` (fields mode) or `ovsUserspaceDpHash` (dp_hash mode, the userspace datapath's
// dp_hash). Negative controls: the slots a wrong hash (basis 1; in dp_hash mode the fields hash) predicts disagree.

import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { initialGeneration } from '../../src/cli/explain.ts';
import type { NodeFacts } from '../../src/compile/facts.ts';
import { gatewayClassifyFlows, gatewayGroups, gatewaySlotFlows } from '../../src/compile/gateway.ts';
import { gatewayIcmpFlows } from '../../src/compile/icmp.ts';
import { lbInputs } from '../../src/compile/index.ts';
import {
  type XdpGatewayFacts,
  type XdpTables,
  xdpFlip,
  xdpInstallWrites,
  xdpMapImage,
  xdpTables,
} from '../../src/compile/xdp.ts';
import type { Flow } from '../../src/flowset/types.ts';
import {
  fieldsModeHash,
  ovsHashSymmetricL3L4,
  ovsUserspaceDpHash,
  type PacketKey,
} from '../../src/hashing/ovs.ts';
import { NO_OWNER } from '../../src/hashing/slots.ts';
import { labSluiceConfig, nodeBrPhyMac, resolveLabConfig } from '../../src/lab/config.ts';
import { parseIp } from '../../src/model/ip.ts';
import type { Config } from '../../src/model/types.ts';
import type { Generation } from '../../src/rollout/types.ts';
import { sumCounters, sumIcmpCounters } from '../../src/xdp/attach.ts';
import { runXdpSteps, TC_ACT, type XdpStep, type XdpStepResult } from '../../src/xdp/bpftool.ts';
import {
  craftFrame,
  type FrameSpec,
  type GatewayUnderlay,
  ovsEchoReply,
  ovsFlowKey,
  ovsGatewayOutput,
  ovsIcmpCopies,
  toHex,
  withIcmpChecksums,
} from './helpers/xdp.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const isRoot = process.getuid?.() === 0;
const GW_IP = '192.168.100.1';
const GW_MAC = nodeBrPhyMac(GW_IP);
const HOSTS = ['192.168.100.11', '192.168.100.12', '192.168.100.13'];
const CLIENT4 = '10.200.0.11';
const CLIENT6 = 'fd00:200::11';
const VIPS = { web: '203.0.113.10', web6: '2001:db8::10', dns: '203.0.113.53', dns6: '2001:db8::53' };

let dir: string;
let object: string;
let config: Config;
let gen: Generation;
let flows: Flow[];
let underlay: GatewayUnderlay;
let facts: XdpGatewayFacts;

/** Deterministic pseudo-random numbers (tests must be repeatable). */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s;
  };
}

/** The lab's address plan as a sluice config, fields mode, 256 slots; `web` also listens on 443. */
function testConfig(): Config {
  const b = (n: number) => [`host${n}-b1`, `host${n}-b2`];
  const lab = resolveLabConfig({
    gateways: 1,
    hosts: 3,
    backendsPerHost: 2,
    vips: [
      {
        name: 'web',
        vip: VIPS.web,
        family: 4,
        protocol: 'tcp',
        port: 80,
        backends: [...b(1), ...b(2), ...b(3)],
      },
      { name: 'web6', vip: VIPS.web6, family: 6, protocol: 'tcp', port: 80, backends: [...b(1), ...b(2)] },
      { name: 'dns', vip: VIPS.dns, family: 4, protocol: 'udp', port: 53, backends: [...b(2), ...b(3)] },
      { name: 'dns6', vip: VIPS.dns6, family: 6, protocol: 'udp', port: 53, backends: [...b(1), ...b(3)] },
    ],
  });
  const c = labSluiceConfig(lab, { hashMode: 'fields', slotBits: 8 });
  return {
    ...c,
    loadBalancers: c.loadBalancers.map((l) => (l.name === 'web' ? { ...l, ports: [80, 443] } : l)),
  };
}

/** `gen` with the slots of `lb` below `n` left without a primary (as while a table is being built). */
function withEmptySlots(g: Generation, lb: string, n: number): Generation {
  const pools = new Map(g.pools);
  const p = g.pools.get(lb)!;
  const primary = Uint16Array.from(p.primary, (x, i) => (i < n ? NO_OWNER : x));
  pools.set(lb, { ...p, primary });
  return { ...g, pools };
}

/** The OVS gateway's br-int flows for a generation (CLASSIFY and GW_SLOTS; ports are irrelevant here). */
function gatewayFlows(g: Generation, c: Config = config): Flow[] {
  const lbs = lbInputs(c, g);
  const nodeFacts = { ports: { geneve: 2 } } as NodeFacts;
  return [...gatewayClassifyFlows(c, lbs), ...gatewaySlotFlows(c, lbs, nodeFacts)];
}

/** Steps that write `tables` into copy `copy` (empty before) and, unless `flip` is false, make it the one in force. */
function loadSteps(tables: XdpTables, copy: 0 | 1, flip = true): XdpStep[] {
  const writes = xdpInstallWrites(undefined, xdpMapImage(tables, copy), copy);
  return flip ? writes : writes.slice(0, -1);
}

type Run = Extract<XdpStepResult, { kind: 'run' }>;

async function runFrames(setup: XdpStep[], frames: readonly Uint8Array[], tail: XdpStep[] = []) {
  const steps = [...setup, ...frames.map((packet) => ({ kind: 'run' as const, packet })), ...tail];
  const res = await runXdpSteps(object, steps);
  const runs = res.slice(setup.length, setup.length + frames.length) as Run[];
  return { runs, tail: res.slice(setup.length + frames.length) };
}

/** An ICMP (or, to an IPv6 address, ICMPv6) message of `type` per `s`, its checksums valid. */
function icmpTo(s: FrameSpec, type: number): Uint8Array {
  const six = s.dst.includes(':');
  const f = craftFrame({ ...s, proto: six ? 58 : 1, payload: s.payload ?? 24 });
  f[six ? 54 : 34] = type;
  return withIcmpChecksums(f);
}

/** An ICMP(v6) message of `type` per `s` (any options or extension headers before it); checksums not set. */
function icmpFrame(s: FrameSpec, type: number): Uint8Array {
  const f = craftFrame({ ...s, proto: s.dst.includes(':') ? 58 : 1, payload: s.payload ?? 24 });
  const at = ovsFlowKey(f)?.l4;
  if (at !== undefined && at < f.length) f[at] = type;
  return f;
}

const verdict = (r: Run) =>
  (['ABORTED', 'DROP', 'PASS', 'TX', 'REDIRECT'] as const)[r.retval] ?? String(r.retval);

/** Many TCP and UDP tuples over the four VIPs (and web's second port). */
function randomSpecs(count: number): FrameSpec[] {
  const rnd = prng(15);
  const out: FrameSpec[] = [];
  const kinds = [
    { src: CLIENT4, dst: VIPS.web, proto: 6, dport: 80 },
    { src: CLIENT4, dst: VIPS.web, proto: 6, dport: 443 },
    { src: CLIENT6, dst: VIPS.web6, proto: 6, dport: 80 },
    { src: CLIENT4, dst: VIPS.dns, proto: 17, dport: 53 },
    { src: CLIENT6, dst: VIPS.dns6, proto: 17, dport: 53 },
  ];
  for (let i = 0; i < count; i++) {
    const k = kinds[i % kinds.length];
    const r = rnd();
    const src = k.src.includes(':')
      ? `fd00:200::${(r & 0xffff).toString(16)}:${(rnd() & 0xffff).toString(16)}`
      : `10.200.${(r >>> 8) & 0xff}.${r & 0xff}`;
    out.push({ ...k, src, sport: 1024 + (rnd() % 64000), payload: rnd() % 64, dstMac: GW_MAC });
  }
  return out;
}

describe('XDP gateway program (BPF_PROG_TEST_RUN)', {
  skip: !isRoot && 'needs root (bpftool, BPF_PROG_TEST_RUN)',
}, () => {
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-xdp-test-'));
    object = join(dir, 'gateway.bpf.o');
    execFileSync('bash', [join(ROOT, 'scripts/build-xdp.sh'), dir], { stdio: 'pipe' });
    config = testConfig();
    gen = initialGeneration(config);
    flows = gatewayFlows(gen);
    const neighbours = new Map(HOSTS.map((h) => [h, nodeBrPhyMac(h)]));
    underlay = { mac: GW_MAC, ip: GW_IP, neighbours };
    facts = { tunnelIp: GW_IP, mac: GW_MAC, neighbours };
  });

  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  // Each output is compared with the OVS model for the same mode's flows (and groups), its slot with the hash
  // src/hashing/ovs.ts gives for that mode; the other mode's hash is the negative control.
  for (const mode of ['fields', 'dp_hash'] as const)
    test(`2000 TCP/UDP IPv4/IPv6 tuples in ${mode} mode: the OVS gateway bytes, and the slot of src/hashing/ovs.ts`, async (t) => {
      const c: Config = { ...config, hashMode: mode };
      const lbs = lbInputs(c, gen);
      const groups = gatewayGroups(c, lbs);
      const modeFlows = mode === 'fields' ? flows : gatewayFlows(gen, c);
      const hash = (k: PacketKey) => (mode === 'fields' ? fieldsModeHash(k) : ovsUserspaceDpHash(k, 0));
      const other = (k: PacketKey) => (mode === 'fields' ? ovsHashSymmetricL3L4(k, 1) : fieldsModeHash(k));
      const specs = randomSpecs(2000);
      const frames = specs.map(craftFrame);
      const { runs } = await runFrames(loadSteps(xdpTables(c, gen, facts), 1), frames);
      let same = 0;
      let slotsAgree = 0;
      let wrongHashAgrees = 0;
      for (let i = 0; i < frames.length; i++) {
        const want = ovsGatewayOutput(modeFlows, frames[i], underlay, groups);
        assert.ok(want, `the OVS model forwards ${JSON.stringify(specs[i])}`);
        assert.equal(verdict(runs[i]), 'TX', JSON.stringify(specs[i]));
        if (toHex(runs[i].output) === toHex(want)) same++;
        else assert.equal(toHex(runs[i].output), toHex(want), JSON.stringify(specs[i]));
        // The slot the program put in TUN_LB_SLOT (outer bytes 54..57, low 16 bits) against src/hashing/ovs.ts.
        const out = runs[i].output;
        const slot = new DataView(out.buffer, out.byteOffset).getUint16(56);
        const s = specs[i];
        const key = {
          proto: s.proto === 6 ? ('tcp' as const) : ('udp' as const),
          src: parseIp(s.src)!.bytes,
          dst: parseIp(s.dst)!.bytes,
          sport: s.sport!,
          dport: s.dport!,
        };
        if (slot === hash(key) % 256) slotsAgree++;
        if (slot === other(key) % 256) wrongHashAgrees++;
      }
      t.diagnostic(
        `${mode}: ${same}/2000 byte-identical; slots = ${mode} hash ${slotsAgree}/2000; ` +
          `${mode === 'fields' ? 'basis 1' : 'the fields hash'}: ${wrongHashAgrees}`,
      );
      assert.equal(same, 2000);
      assert.equal(slotsAgree, 2000);
      assert.ok(wrongHashAgrees < 40, `a wrong hash must disagree (${wrongHashAgrees}/2000 agree)`);
    });

  test('options, extension headers, ECN, fragments, truncation, non-VIP: forwarded as OVS or passed untouched', async () => {
    const base = {
      src: CLIENT4,
      dst: VIPS.web,
      proto: 6,
      sport: 40000,
      dport: 80,
      payload: 20,
      dstMac: GW_MAC,
    };
    const base6 = { ...base, src: CLIENT6, dst: VIPS.web6 };
    const udp6 = { ...base6, dst: VIPS.dns6, proto: 17, dport: 53 };
    const nop = Uint8Array.of(1, 1, 1, 0);
    const rr = Uint8Array.of(7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    const cases: [string, FrameSpec | Uint8Array, 'TX' | 'PASS'][] = [
      ['IPv4 options (NOPs)', { ...base, ipOptions: nop }, 'TX'],
      ['IPv4 options (record route)', { ...base, ipOptions: rr }, 'TX'],
      ['ECN ECT(1)', { ...base, tos: 0x01 }, 'TX'],
      ['ECN CE (sent as ECT(0))', { ...base, tos: 0xb3 }, 'TX'],
      ['IPv6 ECN CE', { ...base6, tos: 0x03 }, 'TX'],
      ['IPv6 hop-by-hop', { ...base6, v6Ext: [0] }, 'TX'],
      ['IPv6 destination options + routing', { ...udp6, v6Ext: [60, 43] }, 'TX'],
      ['IPv4 first fragment', { ...base, frag: { offset: 0, more: true } }, 'PASS'],
      [
        'IPv4 UDP first fragment',
        { ...base, dst: VIPS.dns, proto: 17, dport: 53, frag: { offset: 0, more: true } },
        'PASS',
      ],
      ['IPv6 first fragment', { ...udp6, frag: { offset: 0, more: true } }, 'PASS'],
      ['IPv4 later fragment', { ...base, frag: { offset: 8, more: false } }, 'PASS'],
      ['IPv6 later fragment', { ...base6, frag: { offset: 8, more: true } }, 'PASS'],
      ['TCP header cut to 12 bytes', { ...base, payload: 0, l4Bytes: 12 }, 'PASS'],
      ['UDP header cut to 6 bytes', { ...udp6, payload: 0, l4Bytes: 6 }, 'PASS'],
      ['IPv4 total length beyond the frame', craftFrame({ ...base, payload: 20 }).subarray(0, 60), 'PASS'],
      ['IPv4 header cut', craftFrame(base).subarray(0, 30), 'PASS'],
      ['IPv6 header cut', craftFrame(base6).subarray(0, 50), 'PASS'],
      ['Ethernet header only', craftFrame(base).subarray(0, 14), 'PASS'],
      [
        'ARP',
        Uint8Array.from([...craftFrame(base).subarray(0, 12), 0x08, 0x06, ...new Uint8Array(28)]),
        'PASS',
      ],
      ['not a VIP', { ...base, dst: '198.51.100.7' }, 'PASS'],
      ['VIP, other port', { ...base, dport: 81 }, 'PASS'],
      ['VIP, other protocol (UDP to a TCP VIP)', { ...base, proto: 17 }, 'PASS'],
      ['ICMP error (destination unreachable) to a VIP', icmpTo(base, 3), 'PASS'],
      ['ICMPv6 error (packet too big) to a VIP', icmpTo(base6, 2), 'PASS'],
      ['ICMP echo reply to a VIP', icmpTo(base, 0), 'PASS'],
      ['ICMP echo to a non-VIP address', icmpTo({ ...base, dst: '203.0.113.99' }, 8), 'PASS'],
      [
        'ICMP echo, first fragment',
        craftFrame({ ...base, proto: 1, frag: { offset: 0, more: true } }),
        'PASS',
      ],
      ['ICMP echo cut to 6 bytes', craftFrame({ ...base, proto: 1, payload: 0, l4Bytes: 6 }), 'PASS'],
    ];
    const frames = cases.map(([, c]) => (c instanceof Uint8Array ? c : craftFrame(c)));
    const { runs } = await runFrames(loadSteps(xdpTables(config, gen, facts), 0), frames);
    for (let i = 0; i < cases.length; i++) {
      const [what, , expect] = cases[i];
      assert.equal(verdict(runs[i]), expect, what);
      const ovs = ovsGatewayOutput(flows, frames[i], underlay);
      if (expect === 'TX') assert.equal(toHex(runs[i].output), toHex(ovs!), what);
      else {
        assert.equal(ovs, undefined, `${what}: the OVS gateway sends nothing either`);
        assert.equal(toHex(runs[i].output), toHex(frames[i]), `${what}: untouched`);
      }
    }
  });

  test('echo requests to a VIP address: answered in place, the bytes of the OVS echo flow, counted', async () => {
    const frames = [VIPS.web, VIPS.dns, VIPS.web6, VIPS.dns6].flatMap((dst, i) => {
      const src = dst.includes(':') ? CLIENT6 : CLIENT4;
      return [4, 17, 56, 1000].map((payload) =>
        icmpTo({ src, dst, proto: 1, payload: payload + i, dstMac: GW_MAC }, dst.includes(':') ? 128 : 8),
      );
    });
    const tables = xdpTables(config, gen, facts);
    const { runs, tail } = await runFrames(loadSteps(tables, 0), frames, [
      { kind: 'dump', map: 'sluice_stats' },
    ]);
    for (let i = 0; i < frames.length; i++) {
      assert.equal(verdict(runs[i]), 'TX', toHex(frames[i]));
      assert.equal(toHex(runs[i].output), toHex(ovsEchoReply(frames[i])), toHex(frames[i]));
    }
    const counters = sumCounters((tail[0] as Extract<XdpStepResult, { kind: 'dump' }>).entries);
    for (const v of tables.vips.filter((x) => x.proto === 'icmp'))
      assert.equal(counters.get(v.counter)?.packets, 4, `echo replies counted for ${v.vip}`);
  });

  test('slot without a primary: dropped and counted; counters per VIP:port', async () => {
    const g = withEmptySlots(gen, 'dns', 128);
    const tables = xdpTables(config, g, facts);
    const specs = randomSpecs(500);
    const frames = specs.map(craftFrame);
    const g2flows = gatewayFlows(g);
    const { runs, tail } = await runFrames(loadSteps(tables, 0), frames, [
      { kind: 'dump', map: 'sluice_stats' },
    ]);
    const want = new Map<number, { packets: number; bytes: number; noSlot: number }>();
    for (let i = 0; i < frames.length; i++) {
      const counter = tables.vips.find((v) => v.vip === specs[i].dst && v.port === specs[i].dport)!.counter;
      const w = want.get(counter) ?? { packets: 0, bytes: 0, noSlot: 0 };
      const ovs = ovsGatewayOutput(g2flows, frames[i], underlay);
      if (ovs) {
        assert.equal(verdict(runs[i]), 'TX');
        assert.equal(toHex(runs[i].output), toHex(ovs));
        w.packets++;
        w.bytes += frames[i].length;
      } else {
        assert.equal(verdict(runs[i]), 'DROP', 'a VIP packet whose slot has no primary');
        w.noSlot++;
      }
      want.set(counter, w);
    }
    const got = sumCounters((tail[0] as Extract<XdpStepResult, { kind: 'dump' }>).entries);
    const dns = tables.vips.find((v) => v.lb === 'dns' && v.proto === 'udp')!.counter;
    assert.ok((want.get(dns)?.noSlot ?? 0) > 20, 'half of dns has no primary');
    for (const [counter, w] of want) {
      const c = got.get(counter);
      assert.deepEqual(
        { packets: c?.packets, bytes: c?.bytes, noSlot: c?.dropNoSlot },
        w,
        `counter ${counter}`,
      );
    }
    assert.equal(got.size, want.size, 'no other counter moved');
  });

  // ICMP errors (src/xdp/icmp.bpf.c, the tc program): each error to a VIP becomes one Geneve copy per host of the
  // VIP, the bytes of the OVS gateway's GW_ICMP flow (helpers/xdp.ts ovsIcmpCopies). BPF_PROG_TEST_RUN returns the
  // skb as the program left it, i.e. the last copy: the VIP's host list is rotated so that every host's copy is the
  // last one once. Everything else passes untouched.
  test('ICMP errors to a VIP (tc program): one copy per host, the OVS GW_ICMP bytes; the rest untouched', async (t) => {
    const icmpFlows = gatewayIcmpFlows(config, lbInputs(config, gen), { ports: { geneve: 2 } } as NodeFacts);
    const base = { src: '198.51.100.1', proto: 1, payload: 48, dstMac: GW_MAC };
    const errors: FrameSpec[] = [];
    for (const dst of Object.values(VIPS)) {
      const six = dst.includes(':');
      const src = six ? '2001:db8:ffff::1' : base.src;
      for (const type of six ? [1, 2, 3] : [3, 11]) errors.push({ ...base, src, dst, proto: type });
    }
    const frames = [
      ...errors.map((e) => icmpFrame(e, e.proto)),
      icmpFrame({ ...base, dst: VIPS.web, ipOptions: Uint8Array.of(1, 1, 1, 0) }, 3),
      icmpFrame({ ...base, dst: VIPS.web, tos: 0x03 }, 3),
      icmpFrame({ ...base, src: '2001:db8:ffff::1', dst: VIPS.web6, v6Ext: [0, 60] }, 2),
    ];
    const tables = xdpTables(config, gen, { ...facts, icmpRate: 0 });
    let same = 0;
    let copies = 0;
    const hostsPerVip = Math.max(...tables.icmp.map((v) => v.hosts.length));
    for (let r = 0; r < hostsPerVip; r++) {
      const rot = <T>(xs: readonly T[]) => [...xs.slice(r % xs.length), ...xs.slice(0, r % xs.length)];
      const rotated = { ...tables, icmp: tables.icmp.map((v) => ({ ...v, hosts: rot(v.hosts) })) };
      const steps = frames.map((packet) => ({ kind: 'run' as const, packet, prog: 'icmp' as const }));
      const res = await runXdpSteps(object, [
        ...loadSteps(rotated, 0),
        ...steps,
        { kind: 'dump', map: 'sluice_icmpstat' },
      ]);
      const runs = res.filter((x): x is Run => x.kind === 'run');
      for (let i = 0; i < frames.length; i++) {
        const want = rot(ovsIcmpCopies(icmpFlows, frames[i], underlay));
        assert.ok(want.length >= 2, `the OVS model copies ${toHex(frames[i].subarray(0, 40))}`);
        assert.equal(runs[i].retval, TC_ACT.SHOT, 'the original is consumed');
        assert.equal(toHex(runs[i].output), toHex(want[want.length - 1]), `frame ${i}, rotation ${r}`);
        same++;
        copies += want.length;
      }
      const got = sumIcmpCounters((res.at(-1) as Extract<XdpStepResult, { kind: 'dump' }>).entries);
      assert.deepEqual(
        got,
        { errors: frames.length, copies, dropped: 0, refused: 0 },
        'every error copied to every host of its VIP',
      );
      copies = 0;
    }
    t.diagnostic(
      `${same} last copies byte-identical with the OVS GW_ICMP flows (${frames.length} errors x ${hostsPerVip} rotations)`,
    );
    const passed: [string, Uint8Array][] = [
      ['echo request', icmpFrame({ ...base, dst: VIPS.web }, 8)],
      ['error to a non-VIP address', icmpFrame({ ...base, dst: '203.0.113.99' }, 3)],
      ['redirect (type 5) to a VIP', icmpFrame({ ...base, dst: VIPS.web }, 5)],
      ['error, first fragment', icmpFrame({ ...base, dst: VIPS.web, frag: { offset: 0, more: true } }, 3)],
      [
        'error, IPv6 first fragment',
        icmpFrame({ ...base, src: '2001:db8:ffff::1', dst: VIPS.web6, frag: { offset: 0, more: true } }, 2),
      ],
      ['ICMPv6 echo request', icmpFrame({ ...base, src: '2001:db8:ffff::1', dst: VIPS.web6 }, 128)],
      ['error cut to 6 bytes', icmpFrame({ ...base, dst: VIPS.web, payload: 0, l4Bytes: 6 }, 3)],
      ['TCP to a VIP', craftFrame({ ...base, dst: VIPS.web, proto: 6, sport: 1000, dport: 80 })],
    ];
    const res = await runXdpSteps(object, [
      ...loadSteps(tables, 0),
      ...passed.map(([, packet]) => ({ kind: 'run' as const, packet, prog: 'icmp' as const })),
    ]);
    const runs = res.filter((x): x is Run => x.kind === 'run');
    passed.forEach(([what, f], i) => {
      assert.equal(ovsIcmpCopies(icmpFlows, f, underlay).length, 0, `${what}: OVS copies nothing either`);
      assert.equal(runs[i].retval, TC_ACT.OK, what);
      assert.equal(toHex(runs[i].output), toHex(f), `${what}: untouched`);
    });
  });

  test('ICMP errors: the meter lets `rate` errors through in a burst, drops and counts the rest', async (t) => {
    const frames = Array.from({ length: 30 }, (_, i) =>
      icmpFrame({ src: `198.51.100.${i + 1}`, dst: VIPS.dns, proto: 1, payload: 40, dstMac: GW_MAC }, 3),
    );
    const res = await runXdpSteps(object, [
      ...loadSteps(xdpTables(config, gen, { ...facts, icmpRate: 10 }), 1),
      ...frames.map((packet) => ({ kind: 'run' as const, packet, prog: 'icmp' as const })),
      { kind: 'dump', map: 'sluice_icmpstat' },
    ]);
    const got = sumIcmpCounters((res.at(-1) as Extract<XdpStepResult, { kind: 'dump' }>).entries);
    const hosts = xdpTables(config, gen, facts).icmp.find((v) => v.vip === VIPS.dns)!.hosts.length;
    const runs = res.filter((x): x is Run => x.kind === 'run');
    const copied = runs.filter((r) => r.output.length > frames[0].length).length;
    t.diagnostic(
      `rate 10, burst 10: 30 errors back to back, ${copied} copied, ${got.dropped} dropped by the meter`,
    );
    // The bucket starts full (10 tokens) and refills at 10 a second: one more token per 100 ms the batch takes.
    assert.ok(copied >= 10 && copied <= 12, `${copied} copied`);
    assert.deepEqual(got, { errors: 30, copies: copied * hosts, dropped: 30 - copied, refused: 0 });
  });

  // The OVS gateway's br-phy sends a VIP to br-int only in frames for its own MAC and drops the rest
  // (PHY_VIP_NOT_MINE, src/compile/phy.ts): a flooded frame must not be forwarded by every gateway that got a copy.
  test('VIP frames addressed to another MAC: dropped and counted; the same frames to the gateway still forwarded', async () => {
    const tables = xdpTables(config, gen, facts);
    const specs = randomSpecs(100);
    const other = specs.map((sp, i) => ({
      ...sp,
      dstMac: i % 2 ? '02:00:c0:a8:64:02' : 'ff:ff:ff:ff:ff:ff',
    }));
    const echo = icmpTo({ src: CLIENT4, dst: VIPS.web, proto: 1, dstMac: '02:00:c0:a8:64:02' }, 8);
    const notVip = craftFrame({ ...other[0]!, dst: '203.0.113.99' });
    const foreign = [...other.map(craftFrame), echo, notVip];
    const mine = specs.map(craftFrame);
    const { runs, tail } = await runFrames(
      loadSteps(tables, 0),
      [...foreign, ...mine],
      [{ kind: 'dump', map: 'sluice_stats' }],
    );
    const want = new Map<number, number>();
    for (let i = 0; i < foreign.length - 1; i++) {
      assert.equal(verdict(runs[i]), 'DROP', `another MAC: ${toHex(foreign[i])}`);
      assert.equal(toHex(runs[i].output), toHex(foreign[i]), 'dropped as received');
      const dst = i < other.length ? other[i]! : { dst: VIPS.web, dport: 0 };
      const v = tables.vips.find((x) => x.vip === dst.dst && x.port === (dst.dport ?? 0))!;
      want.set(v.counter, (want.get(v.counter) ?? 0) + 1);
    }
    assert.equal(
      verdict(runs[foreign.length - 1]),
      'PASS',
      'not a VIP: the kernel decides, whatever the MAC',
    );
    const flowsNow = gatewayFlows(gen);
    for (let i = 0; i < mine.length; i++) {
      const r = runs[foreign.length + i];
      assert.equal(verdict(r), 'TX', 'the same packet to the gateway MAC');
      assert.equal(toHex(r.output), toHex(ovsGatewayOutput(flowsNow, mine[i], underlay)!));
    }
    const got = sumCounters((tail[0] as Extract<XdpStepResult, { kind: 'dump' }>).entries);
    for (const [counter, n] of want) assert.equal(got.get(counter)?.dropNotMine, n, `counter ${counter}`);
    assert.equal(
      [...got.values()].reduce((n, c) => n + c.dropNotMine, 0),
      foreign.length - 1,
    );
  });

  test('generation switch: the index flip moves every packet to the other copy at once', async () => {
    const all = (host: string): Generation => {
      const pools = new Map(gen.pools);
      for (const [name, p] of gen.pools) {
        const m = p.members.findIndex((x) => x.host === host);
        if (m >= 0) pools.set(name, { ...p, primary: new Uint16Array(p.primary.length).fill(m) });
      }
      return { ...gen, number: gen.number + 1, pools };
    };
    const specs = randomSpecs(20).filter((s) => s.dst === VIPS.web);
    const frames = specs.map(craftFrame);
    const dstOf = (r: Run) => [...r.output.subarray(30, 34)].join('.');
    const steps = [
      ...loadSteps(xdpTables(config, all('host1'), facts), 0),
      ...loadSteps(xdpTables(config, all('host2'), facts), 1, false),
    ];
    const res = await runXdpSteps(object, [
      ...steps,
      ...frames.map((packet) => ({ kind: 'run' as const, packet })),
      xdpFlip(1),
      ...frames.map((packet) => ({ kind: 'run' as const, packet })),
    ]);
    const runs = res.filter((r): r is Run => r.kind === 'run');
    assert.deepEqual(new Set(runs.slice(0, frames.length).map(dstOf)), new Set([HOSTS[0]]), 'copy 0: host1');
    assert.deepEqual(
      new Set(runs.slice(frames.length).map(dstOf)),
      new Set([HOSTS[1]]),
      'after the flip: host2',
    );
  });
});
