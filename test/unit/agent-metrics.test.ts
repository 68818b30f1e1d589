// The agent's Prometheus metrics read at scrape time from the bridges, with a FAKE Runner (canned `dump-flows`
// output) and no store connection (the daemon is constructed, never started).

import * as assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import { Counter, Registry } from 'prom-client';
import { AgentDaemon } from '../../src/agent/daemon.ts';
import { countFlows, parseMeterStats, ReadingCounters } from '../../src/agent/flow-counts.ts';
import type { NodeFacts } from '../../src/compile/facts.ts';
import { cookie, lbIds } from '../../src/compile/registry.ts';
import type { Runner } from '../../src/openflow/runner.ts';
import { labHost1Facts } from '../scenarios/fake-facts.ts';

const facts: NodeFacts = labHost1Facts();

const flow = (c: bigint, packets: number) =>
  ` cookie=0x${c.toString(16)}, duration=1.0s, table=40, n_packets=${packets}, n_bytes=0, priority=100 actions=drop`;

const runner: Runner = {
  async ofctl(bridge) {
    const lines =
      bridge === 'br-int'
        ? [
            flow(cookie('SECOND_CHANCE', 1), 7),
            flow(cookie('SECOND_CHANCE', 2), 5),
            flow(cookie('TUN_REJECT'), 1),
          ]
        : [' cookie=0x0, duration=1.0s, table=0, n_packets=3, n_bytes=0, priority=0 actions=NORMAL'];
    return { code: 0, stdout: `OFPST_FLOW reply (OF1.5):\n${lines.join('\n')}\n`, stderr: '' };
  },
  async appctl() {
    return { code: 0, stdout: '', stderr: '' };
  },
};

describe('agent metrics (fake runner)', () => {
  test('flows by kind and second-chance packets come from the installed flows, at scrape time', async () => {
    const d = new AgentDaemon({
      role: 'host',
      node: 'host1',
      remotes: ['unix:/nonexistent'],
      runner,
      facts,
      log: pino({ level: 'silent' }),
    });
    const text = await d.registry.metrics();
    assert.match(text, /^sluice_agent_flows\{kind="SECOND_CHANCE"\} 2$/m);
    assert.match(text, /^sluice_agent_flows\{kind="TUN_REJECT"\} 1$/m);
    assert.match(text, /^sluice_agent_second_chance_sent_packets_total 12$/m);
    assert.match(text, /^sluice_agent_flow_packets_total\{kind="SECOND_CHANCE"\} 12$/m);
    assert.doesNotMatch(text, /kind="undefined"/);
    await d.stop();
  });

  test('one read of the bridges serves every scrape for flowCacheMs (each scrape used to run two dump-flows)', async () => {
    let dumps = 0;
    const counting: Runner = {
      ...runner,
      async ofctl(bridge, args, opts) {
        dumps++;
        return runner.ofctl(bridge, args, opts);
      },
    };
    const d = new AgentDaemon({
      role: 'host',
      node: 'host1',
      remotes: ['unix:/nonexistent'],
      runner: counting,
      facts,
      log: pino({ level: 'silent' }),
      flowCacheMs: 60_000,
    });
    for (let i = 0; i < 5; i++)
      assert.match(await d.registry.metrics(), /^sluice_agent_second_chance_sent_packets_total 12$/m);
    assert.equal(dumps, 2, 'one dump-flows per bridge for five scrapes');
    await d.stop();
  });

  test('a runner that streams: the dump is counted line by line, never asked for whole', async () => {
    // A host's dump at 10,000 VIPs is tens of MB every few seconds (a gateway's 695 MiB): read as a stream.
    const streamed: string[] = [];
    const streaming: Runner = {
      ...runner,
      async ofctl(bridge, args, opts) {
        if (args[0] === 'dump-flows') throw new Error('dump-flows read whole');
        return runner.ofctl(bridge, args, opts);
      },
      async ofctlLines(bridge, args, onLine) {
        streamed.push(bridge);
        for (const line of (await runner.ofctl(bridge, args)).stdout.split('\n')) onLine(line);
        return { code: 0, stderr: '' };
      },
    };
    const d = new AgentDaemon({
      role: 'host',
      node: 'host1',
      remotes: ['unix:/nonexistent'],
      runner: streaming,
      facts,
      log: pino({ level: 'silent' }),
    });
    const text = await d.registry.metrics();
    assert.deepEqual(streamed.sort(), ['br-int', 'br-phy']);
    assert.match(text, /^sluice_agent_flows\{kind="SECOND_CHANCE"\} 2$/m);
    assert.match(text, /^sluice_agent_second_chance_sent_packets_total 12$/m);
    await d.stop();
  });

  test('second-chance packets per load balancer come from TUN_VIP_SECOND cookies (lb id -> name)', () => {
    const ids = lbIds(['web', 'api']);
    const dump = [
      flow(cookie('TUN_VIP_SECOND', ids.get('web')!, 0, 80), 4),
      flow(cookie('TUN_VIP_SECOND', ids.get('web')!, 0, 80), 3),
      flow(cookie('TUN_VIP_SECOND', ids.get('api')!, 0, 80), 2),
      flow(cookie('TUN_VIP_SECOND', 0xfff0, 0, 80), 9), // a load balancer not in the applied config: not named
      flow(cookie('TUN_VIP', ids.get('web')!, 0, 80), 100),
    ].join('\n');
    const c = countFlows(dump, ids);
    assert.deepEqual([...c.perLb].sort(), [
      ['api', 2],
      ['web', 7],
    ]);
    assert.deepEqual(c.byKind.get('TUN_VIP_SECOND'), { flows: 4, packets: 18 });
  });

  test('counters fed from flow readings never go down when flows are re-installed', async () => {
    const registry = new Registry();
    const counter = new Counter({ name: 't_total', help: 't', labelNames: ['lb'], registers: [registry] });
    const rc = new ReadingCounters();
    assert.equal(rc.advance(counter, { lb: 'web' }, 10), 10);
    assert.equal(rc.advance(counter, { lb: 'web' }, 15), 15);
    assert.equal(rc.advance(counter, { lb: 'web' }, 3), 18, 'a reading that went down restarted from 0');
    assert.equal(rc.advance(counter, { lb: 'api' }, 0), 0);
    const text = await registry.metrics();
    assert.match(text, /^t_total\{lb="web"\} 18$/m);
    assert.match(text, /^t_total\{lb="api"\} 0$/m);
  });
});

test('parseMeterStats: packets in and dropped by the bands, per meter', () => {
  // What `ovs-ofctl -O OpenFlow15 meter-stats` printed on a scratch switch under hping3 (docs/design/ovs-facts.md).
  const m = parseMeterStats(`OFPST_METER reply (OF1.5) (xid=0x2):
meter:1358954497 flow_count:2 packet_in_count:4635 byte_in_count:250290 duration:5.100s bands:
0: packet_count:4127 byte_count:222858

meter:2 flow_count:0 packet_in_count:0 byte_in_count:0 duration:0.009s bands:
0: packet_count:0 byte_count:0
`);
  assert.deepEqual(m.get(1358954497), { packets: 4635, dropped: 4127 });
  assert.deepEqual(m.get(2), { packets: 0, dropped: 0 });
  assert.equal(parseMeterStats('ovs-ofctl: br-int is not a bridge').size, 0);
});
