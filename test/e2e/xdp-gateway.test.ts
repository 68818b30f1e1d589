// The XDP gateway program against a LIVE OVS gateway (root; lab prefix `slt-xdp-`, torn down in `after`): a lab
// with one OVS gateway in `fields` mode carries real traffic (kernel TCP and UDP over IPv4 and IPv6 from the client
// through the router; hping3 for IP options, ECN, fragments, ICMP and a port that is not a VIP's) while tcpdump
// records the gateway's uplink (the fabric side of its veth). Then every frame the gateway received for a VIP is
// run through the XDP program (BPF_PROG_TEST_RUN, maps written from the same generation, src/compile/xdp.ts):
// where OVS sent a Geneve frame whose inner frame is that frame, the program must send the same bytes, outer
// headers included; where OVS sent nothing, the program must not transmit. The flow-derived model of
// helpers/xdp.ts (the program test's reference for crafted packets) must say the same.
//
// Negative control: the same comparison with the maps of another generation (every slot on the other host)
// disagrees on most frames.

import * as assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { initialGeneration } from '../../src/cli/explain.ts';
import { compileNode } from '../../src/compile/index.ts';
import {
  type MapWrite,
  type XdpGatewayFacts,
  xdpInstallWrites,
  xdpMapImage,
  xdpTables,
} from '../../src/compile/xdp.ts';
import { nsRun } from '../../src/lab/exec.ts';
import { packetsByKind } from '../../src/lab/flow-counters.ts';
import type { Lab } from '../../src/lab/topology.ts';
import { labDown, labUp } from '../../src/lab/topology.ts';
import { startTraffic } from '../../src/lab/traffic.ts';
import { parseIp } from '../../src/model/ip.ts';
import type { Config, HashMode } from '../../src/model/types.ts';
import { applyFlowSet } from '../../src/openflow/applier.ts';
import type { Generation } from '../../src/rollout/types.ts';
import { attachedSteps, attachXdp, attachXdpPass, detachXdp, sumCounters } from '../../src/xdp/attach.ts';
import { runXdpSteps, XDP, type XdpStepResult } from '../../src/xdp/bpftool.ts';
import { ovsEchoReply, ovsFlowKey, ovsGatewayOutput, readPcap, toHex } from './helpers/xdp.ts';

const PREFIX = 'slt-xdp-';
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const isRoot = process.getuid?.() === 0;
const VIPS = { web: '203.0.113.10', web6: '2001:db8::10', dns: '203.0.113.53', dns6: '2001:db8::53' };
const BACKENDS = ['host1-b1', 'host2-b1'];

let lab: Lab;
let config: Config;
let gen: Generation;
let dir: string;
let object: string;

function gatewayFacts(name = 'gw1'): XdpGatewayFacts {
  const gw = lab.node(name);
  const hosts = ['host1', 'host2'].map((h) => lab.node(h));
  return {
    tunnelIp: gw.tunnelIp,
    mac: gw.brPhyMac,
    neighbours: new Map(hosts.map((h) => [h.tunnelIp, h.brPhyMac])),
  };
}

/** The writes that install generation `g` of gateway `name` in copy 0 of empty maps, and flip to it. */
function installWrites(g: Generation, name = 'gw1', c: Config = config): MapWrite[] {
  return xdpInstallWrites(undefined, xdpMapImage(xdpTables(c, g, gatewayFacts(name)), 0), 0);
}

/** Programs every node of the lab with `c` (generation `gen`). */
async function applyAll(c: Config): Promise<void> {
  for (const n of ['host1', 'host2', 'gw1', 'gw2'])
    await applyFlowSet(lab.node(n), compileNode(c, gen, lab.compilerFacts(n)));
}

/** `gen` with every slot of every pool on `host`'s member: a generation the OVS gateways do not run. */
function allOn(host: string): Generation {
  const pools = [...gen.pools].map(([name, p]) => {
    const m = p.members.findIndex((x) => x.host === host);
    return [name, { ...p, primary: new Uint16Array(p.primary.length).fill(m) }] as const;
  });
  return { ...gen, pools: new Map(pools) };
}

/** tcpdump on the fabric side of gw1's uplink; resolves once it listens. */
async function startCapture(file: string): Promise<ChildProcess> {
  const child = spawn(
    'ip',
    ['netns', 'exec', lab.facts.fabricNetns, 'tcpdump', '-i', 'gw1', '-n', '-U', '-s', '0', '-w', file],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let err = '';
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`tcpdump did not start: ${err}`)), 10_000);
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes('listening on')) {
        clearTimeout(t);
        resolve();
      }
    });
    child.on('exit', () => reject(new Error(`tcpdump exited: ${err}`)));
  });
  return child;
}

async function stopCapture(child: ChildProcess): Promise<void> {
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGINT');
  await exited;
}

/** hping3 in the client namespace: `count` packets with `args`, to `vip`. */
async function hping(args: readonly string[], vip: string, count = 3): Promise<void> {
  await nsRun(lab.clients[0].netns, 'hping3', ['-q', '-i', 'u20000', '-c', String(count), ...args, vip], {
    allowFail: true,
    timeoutMs: 15_000,
  });
}

/** Real traffic to the four VIPs, plus the packets only hping3 makes. */
async function sendTraffic(): Promise<void> {
  const runs = [
    startTraffic(lab, { vip: VIPS.web, port: 80, count: 30, rate: 200, expectBackends: BACKENDS }),
    startTraffic(lab, { vip: VIPS.web6, port: 80, count: 20, rate: 200, expectBackends: BACKENDS }),
    ...[VIPS.dns, VIPS.dns6].map((vip) =>
      startTraffic(lab, {
        vip,
        port: 53,
        protocol: 'udp',
        count: 20,
        rate: 200,
        intervalMs: 200,
        expectBackends: BACKENDS,
      }),
    ),
  ];
  const traffic = await Promise.all(runs);
  try {
    await Promise.all([traffic[0].waitOpened(30), traffic[1].waitOpened(20)]);
    await sleep(1000);
  } finally {
    for (const t of traffic) await t.stop();
  }
  await hping(['-S', '-p', '80', '-G'], VIPS.web); // IP option: record route
  await hping(['-S', '-p', '80', '-o', '3'], VIPS.web); // ECN CE
  await hping(['-S', '-p', '80', '-o', '1'], VIPS.web); // ECN ECT(1)
  await hping(['-S', '-p', '80', '-d', '120', '-m', '48'], VIPS.web); // fragments, ports in the first
  await hping(['-2', '-p', '53', '-d', '100', '-m', '56'], VIPS.dns); // UDP fragments
  await hping(['-1'], VIPS.web); // ICMP echo to a VIP
  await hping(['-S', '-p', '81'], VIPS.web); // a port that is not the VIP's
  await hping(['-2', '-p', '80'], VIPS.web); // UDP to a TCP VIP
}

describe('XDP gateway program vs a live OVS gateway', { skip: !isRoot && 'needs root' }, () => {
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-xdp-live-'));
    object = join(dir, 'gateway.bpf.o');
    execFileSync('bash', [join(ROOT, 'scripts/build-xdp.sh'), dir], { stdio: 'pipe' });
    const vip = (name: keyof typeof VIPS, protocol: 'tcp' | 'udp', port: number) => {
      const family = VIPS[name].includes(':') ? (6 as const) : (4 as const);
      return { name, vip: VIPS[name], family, protocol, port, backends: BACKENDS };
    };
    const vips = [
      vip('web', 'tcp', 80),
      vip('web6', 'tcp', 80),
      vip('dns', 'udp', 53),
      vip('dns6', 'udp', 53),
    ];
    const sizes = { gateways: 2, hosts: 2, backendsPerHost: 1, clients: 1 };
    lab = await labUp({ prefix: PREFIX, ...sizes, ipv6: true, vips }, { replace: true });
    config = lab.sluiceConfig({ hashMode: 'fields', slotBits: 8 });
    gen = initialGeneration(config);
    await applyAll(config);
  });

  after(async () => {
    if (lab) await labDown(PREFIX);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  // In each hash mode (dp_hash: the userspace datapath's dp_hash, which the program reproduces), with every node
  // programmed in that mode. The mixed-set test below runs in fields mode (applied last).
  for (const mode of ['dp_hash', 'fields'] as const)
    test(`${mode} mode: every frame the OVS gateway received, the XDP program sends the bytes OVS sent, or nothing`, async (t) => {
      const c = mode === 'fields' ? config : lab.sluiceConfig({ hashMode: mode, slotBits: 8 });
      await applyAll(c);
      await compareWithOvs(t, c, mode);
    });

  async function compareWithOvs(t: TestContext, c: Config, mode: HashMode): Promise<void> {
    await lab.setEcmpGateways(['gw1']);
    const pcap = join(dir, `gw1-${mode}.pcap`);
    const capture = await startCapture(pcap);
    try {
      await sendTraffic();
      await sleep(500);
    } finally {
      await stopCapture(capture);
    }
    const frames = readPcap(readFileSync(pcap));
    const gw = lab.node('gw1');
    const vipBytes = new Set(Object.values(VIPS).map((v) => toHex(parseIp(v)!.bytes)));
    const isGeneveFromGw = (f: Uint8Array) =>
      f.length > 74 &&
      f[23] === 17 &&
      f[36] === 0x17 &&
      f[37] === 0xc1 &&
      [...f.subarray(26, 30)].join('.') === gw.tunnelIp;
    // Echo requests to a VIP: OVS answers them itself (src/compile/icmp.ts); the replies it sent, by their bytes.
    const isEchoRequest = (f: Uint8Array) => f[23] === 1 && f[14 + (f[14] & 0xf) * 4] === 8;
    const replies = new Set(
      frames
        .filter((f) => toHex(f.subarray(6, 12)) === gw.brPhyMac.replaceAll(':', '') && f[23] === 1)
        .map((f) => toHex(f)),
    );
    const echoSent = (f: Uint8Array) => {
      const want = toHex(ovsEchoReply(f));
      return replies.has(want) ? want : `no reply OVS sent equals ${want}`;
    };
    const sent = new Map<string, string>();
    for (const f of frames.filter(isGeneveFromGw)) sent.set(toHex(f.subarray(74)), toHex(f));
    const received = frames.filter((f) => {
      const k = ovsFlowKey(f);
      return (
        k !== undefined &&
        toHex(f.subarray(0, 6)) === gw.brPhyMac.replaceAll(':', '') &&
        vipBytes.has(toHex(k.dst))
      );
    });
    assert.ok(sent.size > 100, `the OVS gateway encapsulated ${sent.size} frames`);
    const brInt = compileNode(c, gen, lab.compilerFacts('gw1')).bridges.get('br-int')!;
    const underlay = { mac: gw.brPhyMac, ip: gw.tunnelIp, neighbours: gatewayFacts().neighbours };

    const run = async (g: Generation, tables: Config = c) => {
      const setup = installWrites(g, 'gw1', tables);
      const res = await runXdpSteps(object, [
        ...setup,
        ...received.map((packet) => ({ kind: 'run' as const, packet })),
      ]);
      return res.slice(setup.length) as Extract<XdpStepResult, { kind: 'run' }>[];
    };
    const runs = await run(gen);
    const tally: Record<string, number> = {};
    let agree = 0;
    let modelAgrees = 0;
    for (let i = 0; i < received.length; i++) {
      const f = received[i];
      const k = ovsFlowKey(f)!;
      const echo = k.family === 4 && k.frag === 'no' && isEchoRequest(f);
      const ovs = echo ? echoSent(f) : sent.get(toHex(f));
      const kind = `${k.family === 4 ? 'v4' : 'v6'}/${k.proto}${k.frag !== 'no' ? `/${k.frag}-frag` : ''}${
        k.family === 4 && (f[14] & 0xf) > 5 ? '/options' : ''
      }${(f[15] & 3) !== 0 && k.family === 4 ? `/ecn${f[15] & 3}` : ''}/${echo ? 'echo-answered' : ovs ? 'sent' : 'not-sent'}`;
      tally[kind] = (tally[kind] ?? 0) + 1;
      const xdp = runs[i].retval === XDP.TX ? toHex(runs[i].output) : undefined;
      if (xdp === ovs) agree++;
      else assert.equal(xdp, ovs, `frame ${i} (${kind}) ${toHex(f)}`);
      const model = echo ? ovsEchoReply(f) : ovsGatewayOutput(brInt.flows, f, underlay, brInt.groups);
      if ((model ? toHex(model) : undefined) === ovs) modelAgrees++;
    }
    t.diagnostic(
      `${mode}: ${received.length} frames for the VIPs, ${sent.size} encapsulated by OVS: ${JSON.stringify(tally)}`,
    );
    t.diagnostic(
      `${mode}: XDP = OVS on ${agree}/${received.length}; flow model = OVS on ${modelAgrees}/${received.length}`,
    );
    assert.equal(agree, received.length);
    assert.equal(modelAgrees, received.length);
    for (const want of [
      'v4/6/sent',
      'v6/6/sent',
      'v4/17/sent',
      'v6/17/sent',
      'v4/6/options/sent',
      'v4/1/echo-answered',
    ]) {
      assert.ok(tally[want] > 0, `traffic includes ${want}`);
    }
    // OVS looks fragments up without ports (`normal` fragment handling): not even a first fragment is sent.
    for (const want of [
      'v4/6/first-frag/not-sent',
      'v4/6/later-frag/not-sent',
      'v4/6/ecn3/sent',
      'v6/17/sent',
    ]) {
      assert.ok(tally[want] > 0, `traffic includes ${want}`);
    }

    // Negative control: in fields mode the maps of another generation (every slot on host2); in dp_hash mode the
    // same generation hashed the fields way. Both must disagree.
    const wrong = mode === 'fields' ? await run(allOn('host2')) : await run(gen, config);
    const sentIdx = received.flatMap((f, i) => (sent.has(toHex(f)) ? [i] : []));
    const wrongAgree = sentIdx.filter((i) => toHex(wrong[i].output) === sent.get(toHex(received[i]))).length;
    t.diagnostic(
      `${mode}: negative control (${mode === 'fields' ? 'every slot on host2' : 'the fields hash'}): XDP = OVS on ${wrongAgree}/${sentIdx.length} encapsulated`,
    );
    assert.ok(
      wrongAgree < sentIdx.length * 0.75,
      `a wrong generation or hash must disagree (${wrongAgree}/${sentIdx.length})`,
    );
  }

  // A mixed ECMP set: gw1 runs OVS, gw2 the XDP program on its uplink (before OVS: what it transmits never reaches
  // gw2's switch; what it passes does). Connections start spread over both, then all move to gw2, then all to gw1.
  // They survive only if both gateways send every packet to the same host. Negative control: gw2's maps hold a
  // generation the OVS gateway does not run (every slot on host2): connections break.
  test('mixed set (OVS gw1, XDP gw2): connections move between the gateways, 0 broken', async (t) => {
    const gw2 = lab.node('gw2');
    // XDP_TX on a veth reaches the peer only if the peer runs XDP too: a program that passes everything.
    await attachXdpPass(lab.facts.fabricNetns, 'gw2', join(dir, 'pass.bpf.o'));
    const att = await attachXdp(gw2.netns, 'eth0', object);
    try {
      const moves = async () => {
        await lab.setEcmpGateways(['gw1', 'gw2']);
        const opts = { intervalMs: 100, timeoutMs: 2000, rate: 200, expectBackends: BACKENDS };
        const traffic = await Promise.all([
          startTraffic(lab, { vip: VIPS.web, port: 80, count: 40, ...opts }),
          startTraffic(lab, { vip: VIPS.web6, port: 80, count: 20, ...opts }),
        ]);
        try {
          await Promise.all([traffic[0].waitOpened(40), traffic[1].waitOpened(20)]);
          await sleep(1500);
          await lab.setEcmpGateways(['gw2']);
          await sleep(3000);
          await lab.setEcmpGateways(['gw1']);
          await sleep(3000);
          const r = await Promise.all(traffic.map((x) => x.report()));
          return r.reduce(
            (n, c) => ({ opened: n.opened + c.opened, broken: n.broken + c.broken + c.failed }),
            {
              opened: 0,
              broken: 0,
            },
          );
        } finally {
          for (const x of traffic) await x.stop();
          await lab.setEcmpGateways(['gw1', 'gw2']);
        }
      };
      const ovsBefore = (await packetsByKind([gw2])).GW_SLOT ?? 0;
      await attachedSteps(att, installWrites(gen, 'gw2'));
      const good = await moves();
      const [dump] = await attachedSteps(att, [{ kind: 'dump', map: 'sluice_stats' }]);
      const xdpPackets = [
        ...sumCounters((dump as Extract<XdpStepResult, { kind: 'dump' }>).entries).values(),
      ].reduce((n, c) => n + c.packets, 0);
      const ovsOnGw2 = ((await packetsByKind([gw2])).GW_SLOT ?? 0) - ovsBefore;
      t.diagnostic(
        `same generation: ${good.opened} opened, ${good.broken} broken; XDP sent ${xdpPackets} packets, gw2's OVS ${ovsOnGw2}`,
      );
      assert.equal(good.opened, 60);
      assert.equal(good.broken, 0);
      assert.ok(xdpPackets > 500, 'gw2 carried traffic in XDP');
      assert.equal(ovsOnGw2, 0, "no VIP packet reached gw2's OVS");

      await attachedSteps(att, installWrites(allOn('host2'), 'gw2'));
      const bad = await moves();
      t.diagnostic(
        `negative control (gw2's maps: every slot on host2): ${bad.opened} opened, ${bad.broken} broken`,
      );
      assert.ok(bad.broken > 5, `a disagreeing XDP gateway breaks connections (${bad.broken})`);
    } finally {
      await detachXdp(gw2.netns, 'eth0');
      await detachXdp(lab.facts.fabricNetns, 'gw2');
    }
  });
});
