// The XDP datapath's install sequence (src/xdp/datapath.ts) and the agent's XDP part (src/agent/xdp-gateway.ts)
// with a FAKE device (XdpOps recording attaches and map writes; canned counter dumps) and a FAKE Runner (canned
// `tnl/neigh/show`). The program and the kernel are exercised in test/e2e/xdp-*.test.ts.

import * as assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Registry } from 'prom-client';
import {
  agentXdpGateway,
  datapathFactsFromIds,
  parseTnlNeigh,
  XdpGateway,
} from '../../src/agent/xdp-gateway.ts';
import { initialGeneration } from '../../src/cli/explain.ts';
import { type MapWrite, xdpTables } from '../../src/compile/xdp.ts';
import { nodeBrPhyMac } from '../../src/lab/config.ts';
import { SluiceError } from '../../src/model/errors.ts';
import type { Runner } from '../../src/openflow/runner.ts';
import type { Generation } from '../../src/rollout/types.ts';
import type { XdpAttachment } from '../../src/xdp/attach.ts';
import type { XdpStep, XdpStepResult } from '../../src/xdp/bpftool.ts';
import { XdpDatapath, XdpDatapathError, type XdpOps } from '../../src/xdp/datapath.ts';
import { labHost1Facts } from '../scenarios/fake-facts.ts';
import { xdpFixture } from '../scenarios/xdp-fixture.ts';

const { config, gen, hosts, facts } = xdpFixture(false);

/** `gen` with web's slots all on its first member, numbered `n`. */
function moved(n: number): Generation {
  const pools = [...gen.pools].map(
    ([name, p]) => [name, { ...p, primary: new Uint16Array(p.primary.length).fill(0) }] as const,
  );
  return { ...gen, number: n, pools: new Map(pools) };
}

/** A fake device: records every call; `fail` makes the next attach or steps call throw. */
function fakeOps() {
  const calls: string[] = [];
  const batches: (MapWrite | XdpStep)[][] = [];
  let progs = 0;
  const fail = { attach: false, steps: false };
  let dump: Extract<XdpStepResult, { kind: 'dump' }> = { kind: 'dump', entries: [] };
  let icmpDump: Extract<XdpStepResult, { kind: 'dump' }> = { kind: 'dump', entries: [] };
  const ops: XdpOps = {
    async attach(): Promise<XdpAttachment> {
      calls.push('attach');
      if (fail.attach) throw new Error('libbpf: prog: the verifier said no');
      progs++;
      const maps = {
        sluice_active: 1,
        sluice_config: 2,
        sluice_vips: 3,
        sluice_slots: 4,
        sluice_stats: 5,
        sluice_icmpvips: 6,
        sluice_icmpconf: 7,
        sluice_icmpstat: 8,
      };
      return { netns: 'ns', dev: 'eth0', progId: 100 + progs, maps };
    },
    async steps(_att, steps) {
      calls.push(`steps ${steps.length}`);
      if (fail.steps) throw new Error('bpftool batch: map update failed');
      batches.push([...steps]);
      return steps.map((s) =>
        s.kind === 'dump' ? (s.map === 'sluice_icmpstat' ? icmpDump : dump) : { kind: s.kind },
      );
    },
    async detach() {
      calls.push('detach');
    },
  };
  return {
    ops,
    calls,
    batches,
    fail,
    setDump(d: typeof dump) {
      dump = d;
    },
    setIcmpDump(d: typeof dump) {
      icmpDump = d;
    },
  };
}

const copyOf = (w: MapWrite) => (w.kind === 'update' ? w.entry.key[0] : w.key[0]);

describe('XdpDatapath install (fake device)', () => {
  test('attach once; each generation is written to the copy not in force, the flip last', async () => {
    const f = fakeOps();
    const dp = new XdpDatapath(f.ops);
    const a = await dp.install(config, gen, facts);
    const b = await dp.install(config, moved(2), facts);
    // Generation 3 drops api: its VIP and slots must leave copy 0, which held them in generation 1.
    const noApi = { ...config, loadBalancers: config.loadBalancers.filter((l) => l.name !== 'api') };
    const c = await dp.install(noApi, { ...initialGeneration(noApi), number: 3 }, facts);
    assert.deepEqual([a.copy, b.copy, c.copy], [0, 1, 0]);
    assert.deepEqual([a.attached, b.attached, c.attached], [true, false, false]);
    assert.equal(f.calls.filter((x) => x === 'attach').length, 1);
    for (const [i, batch] of f.batches.entries()) {
      const writes = batch as MapWrite[];
      const flip = writes.at(-1)!;
      assert.equal(flip.kind, 'update');
      assert.equal(flip.map, 'sluice_active', 'the flip is the last write');
      const copy = i % 2;
      assert.equal((flip as Extract<MapWrite, { kind: 'update' }>).entry.value[0], copy);
      // Every other write goes to the copy being installed, never to the one in force.
      for (const w of writes.slice(0, -1)) assert.equal(copyOf(w), copy, `${w.kind} ${w.map}`);
    }
    const deletes = (f.batches[2] as MapWrite[]).filter((w) => w.kind === 'delete');
    const apiSlots = gen.pools.get('api')!.primary.length;
    assert.deepEqual(
      [
        deletes.filter((w) => w.map === 'sluice_vips').length,
        deletes.filter((w) => w.map === 'sluice_slots').length,
      ],
      [xdpTables(config, gen, facts).vips.filter((v) => v.lb === 'api').length, apiSlots],
      "api's VIP entry and slots are deleted from the reused copy",
    );
  });

  test('a generation the maps cannot hold is refused before the device is touched', async () => {
    const f = fakeOps();
    const dp = new XdpDatapath(f.ops);
    const noNeigh = { ...facts, neighbours: new Map([[hosts[0], nodeBrPhyMac(hosts[0])]]) };
    await assert.rejects(dp.install(config, gen, noNeigh), (e: unknown) => {
      assert.ok(e instanceof SluiceError && e.code === 'SLUICE_E_XDP');
      assert.ok(!(e instanceof XdpDatapathError), 'a refusal, not a device failure');
      assert.match((e as Error).message, /no neighbour MAC for host tunnel IP/);
      return true;
    });
    assert.deepEqual(f.calls, [], 'nothing attached, nothing written');
    // After a good install, a refused one leaves the copy in force alone.
    await dp.install(config, gen, facts);
    await assert.rejects(dp.install(config, { ...gen, number: 2 }, noNeigh), /no neighbour MAC/);
    assert.deepEqual(f.calls, ['attach', `steps ${f.batches[0].length}`]);
  });

  test('an attach or a map write that fails: XdpDatapathError with the reason; the next install starts over', async () => {
    const f = fakeOps();
    const dp = new XdpDatapath(f.ops);
    f.fail.attach = true;
    await assert.rejects(dp.install(config, gen, facts), (e: unknown) => {
      assert.ok(e instanceof XdpDatapathError);
      assert.match((e as Error).message, /attaching the program failed: libbpf: prog: the verifier said no/);
      return true;
    });
    assert.equal(dp.attachment, undefined);
    f.fail.attach = false;
    await dp.install(config, gen, facts);
    f.fail.steps = true;
    await assert.rejects(
      dp.install(config, moved(2), facts),
      /writing the maps of program 101 failed: bpftool batch: map update failed/,
    );
    assert.equal(f.calls.at(-1), 'detach', 'a program whose maps are unknown is detached');
    f.fail.steps = false;
    const again = await dp.install(config, moved(2), facts);
    assert.equal(again.attached, true);
    assert.equal(again.copy, 0, 'a fresh program: empty maps, written from copy 0');
    assert.equal((dp.attachment as XdpAttachment | undefined)?.progId, 102);
    const writes = f.batches.at(-1) as MapWrite[];
    assert.ok(
      writes.every((w) => w.kind === 'update'),
      'nothing to delete in fresh maps',
    );
  });
});

describe("the agent's XDP part (fake runner, fake device)", () => {
  const neighShow = [
    'IP                                            MAC                 Bridge',
    '==========================================================================',
    ...hosts.map((h) => `${h.padEnd(46)}${nodeBrPhyMac(h)}   br-phy`),
    'fd00:100::fe                                  02:00:c0:a8:64:fe   br-phy',
    '',
  ].join('\n');

  test('tnl/neigh/show: IPv4 neighbours by address', () => {
    const m = parseTnlNeigh(neighShow);
    assert.deepEqual([...m.keys()], hosts);
    assert.equal(m.get(hosts[1]), nodeBrPhyMac(hosts[1]));
  });

  test('datapath facts: ovs by default; xdp needs its uplink; a bad value names the key', () => {
    const ids = (o: Record<string, string>) => (k: string) => o[k] ?? '';
    assert.deepEqual(datapathFactsFromIds(ids({})), { datapath: 'ovs' });
    assert.deepEqual(
      datapathFactsFromIds(
        ids({
          'sluice-gateway-datapath': 'xdp',
          'sluice-underlay-iface': 'eth0',
          'sluice-xdp-netns': 'sl-gw1',
        }),
      ),
      { datapath: 'xdp', uplink: 'eth0', netns: 'sl-gw1' },
    );
    assert.throws(
      () => datapathFactsFromIds(ids({ 'sluice-gateway-datapath': 'xdp' })),
      /external_ids:sluice-underlay-iface: an xdp gateway must name its uplink/,
    );
    assert.throws(
      () => datapathFactsFromIds(ids({ 'sluice-gateway-datapath': 'dpdk' })),
      /external_ids:sluice-gateway-datapath: expected ovs or xdp, got "dpdk"/,
    );
  });

  const runner: Runner = {
    async ofctl() {
      return { code: 0, stdout: '', stderr: '' };
    },
    async appctl(args) {
      assert.deepEqual(args, ['tnl/neigh/show']);
      return { code: 0, stdout: neighShow, stderr: '' };
    },
  };
  const nodeFacts = { ...labHost1Facts(), name: 'gw1', role: 'gateway' as const, tunnelIp: facts.tunnelIp };

  test('install uses OVS tunnel neighbours; per-VIP counters become metrics', async () => {
    const f = fakeOps();
    const gw = new XdpGateway(runner, new XdpDatapath(f.ops));
    const registry = new Registry();
    gw.registerMetrics(registry);
    const r = await gw.install(config, gen, nodeFacts);
    assert.equal(r.generation, gen.number);
    assert.deepEqual(gw.status(), {
      datapath: 'xdp',
      program: { id: 101, dev: 'eth0', netns: 'ns' },
      copy: 0,
      generation: gen.number,
    });
    const u64 = (...n: number[]) => {
      const b = new Uint8Array(40); // struct vip_stats: five u64
      for (const [i, x] of n.entries()) new DataView(b.buffer).setBigUint64(8 * i, BigInt(x), true);
      return b;
    };
    // api:80's counter on two CPUs: 3+4 packets, 300+400 bytes, 1 drop without a primary, 2+5 for another MAC.
    const at = xdpTables(config, gen, facts).vips.find((v) => v.lb === 'api' && v.proto === 'tcp')!.counter;
    f.setDump({
      kind: 'dump',
      entries: [{ key: Uint8Array.of(at, 0, 0, 0), values: [u64(3, 300, 1, 0, 2), u64(4, 400, 0, 0, 5)] }],
    });
    // The ICMP program's counters (one entry) on two CPUs: 5 errors, 10 copies, 2 over the meter.
    f.setIcmpDump({
      kind: 'dump',
      entries: [{ key: Uint8Array.of(0, 0, 0, 0), values: [u64(3, 6, 2, 0), u64(2, 4, 0, 0)] }],
    });
    const text = await registry.metrics();
    assert.match(text, /^sluice_agent_xdp_icmp_total\{what="errors"\} 5$/m);
    assert.match(text, /^sluice_agent_xdp_icmp_total\{what="copies"\} 10$/m);
    assert.match(text, /^sluice_agent_xdp_icmp_total\{what="dropped"\} 2$/m);
    assert.match(text, /^sluice_agent_xdp_icmp_total\{what="refused"\} 0$/m);
    const api = 'lb="api",vip="203.0.113.20",proto="tcp",port="80"';
    assert.match(text, new RegExp(`^sluice_agent_xdp_packets_total\\{${api}\\} 7$`, 'm'));
    assert.match(text, new RegExp(`^sluice_agent_xdp_bytes_total\\{${api}\\} 700$`, 'm'));
    assert.match(text, new RegExp(`^sluice_agent_xdp_drops_total\\{${api},reason="no_slot"\\} 1$`, 'm'));
    assert.match(text, new RegExp(`^sluice_agent_xdp_drops_total\\{${api},reason="not_mine"\\} 7$`, 'm'));
    assert.match(text, /^sluice_agent_xdp_packets_total\{lb="web",.*\} 0$/m);
    assert.match(text, /^sluice_agent_xdp_attached 1$/m);
    assert.equal(
      f.calls.filter((c) => c === 'steps 2').length,
      1,
      'one batch of two dumps serves every counter',
    );
  });

  test('an xdp node without --xdp-object: every install fails with that reason', async () => {
    const ids: Record<string, string> = {
      'sluice-gateway-datapath': 'xdp',
      'sluice-underlay-iface': 'eth0',
    };
    const vsctlRunner: Runner = {
      ...runner,
      async vsctl(args) {
        const key = args.at(-1)!.replace('external_ids:', '');
        return { code: 0, stdout: ids[key] === undefined ? '' : `"${ids[key]}"\n`, stderr: '' };
      },
    };
    const gw = await agentXdpGateway(vsctlRunner, undefined);
    assert.ok(gw !== undefined);
    await assert.rejects(gw.install(config, gen, nodeFacts), (e: unknown) => {
      assert.ok(e instanceof XdpDatapathError);
      assert.match((e as Error).message, /no --xdp-object/);
      return true;
    });
    ids['sluice-gateway-datapath'] = 'ovs';
    assert.equal(await agentXdpGateway(vsctlRunner, undefined), undefined);
  });
});
