// Agents read their node facts from their own OVS (root, REAL ovsdb-server/ovs-vswitchd of a small lab): the lab
// writes the sluice-* external_ids convention (docs/design/control-plane.md "Node facts from the local OVSDB") when it
// builds each node, and src/agent/facts.ts reads them back. Checks: the facts read from every node equal what the
// lab computes; they still do after a host's ovs-vswitchd restart; `sluice agent` without --facts (nor --node/--role)
// converges with a planner and a standalone store (child processes of this test, killed by their own PIDs) and a
// client reaches a backend through the VIP; an ofport that changes across a vswitchd restart is read again by the
// agent, which re-applies with it; a live gateway the operator confirms fenced (`sluice node confirm-fenced`) is
// withdrawn by its agent, which rejoins and deletes the record.

import * as assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { readNodeFacts } from '../../src/agent/facts.ts';
import { labEcmpCommand } from '../../src/lab/ecmp.ts';
import { nsRun } from '../../src/lab/exec.ts';
import { type Lab, labDown, labUp } from '../../src/lab/topology.ts';
import type { Config } from '../../src/model/types.ts';
import { type MonitorSet, OvsdbClient } from '../../src/ovsdb/client.ts';
import { type OvsdbServerProcess, startStandalone } from '../../src/ovsdb/server.ts';
import {
  BackendStatusTable,
  DB_NAME,
  DESIRED_STATE_MONITOR,
  desiredStateOps,
  fenceMarks,
  gatewayGeneration,
  nodeAcks,
  nodeStatus,
  publishedGeneration,
  rows,
  splitMonitor,
} from '../../src/store/db/index.ts';
import { runSluice, SluiceChildren } from './helpers/sluice-children.ts';

const PREFIX = 'slt-af-';
const isRoot = process.getuid?.() === 0;

let lab: Lab;
let dir: string;
let srv: OvsdbServerProcess | undefined;
let client: OvsdbClient | undefined;
let status: MonitorSet;
const children = new SluiceChildren(() => dir);

async function waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await sleep(200);
  }
}

/** Every node acknowledged the store's latest generation, which is also released to gateways. */
function converged(): boolean {
  const r = status.replica;
  const gen = publishedGeneration(r);
  const acks = new Map([...nodeAcks(r)].map(([node, ack]) => [node, ack.appliedGeneration]));
  return gen > 0 && gatewayGeneration(r) === gen && lab.nodes.every((n) => acks.get(n.name) === gen);
}

/** One TCP connection from the client namespace to `vip:port`: the greeting line (the backend's name), or ''. */
async function greeting(vip: string, port: number): Promise<string> {
  const r = await nsRun(
    lab.clients[0]!.netns,
    'timeout',
    ['5', 'bash', '-c', `exec 3<>/dev/tcp/${vip}/${port} && head -n1 <&3`],
    { allowFail: true },
  );
  return r.stdout.trim();
}

/** Greetings through the VIP of load balancer `lb` (a few attempts: the first SYN may race the last bundle). */
async function reachThroughVip(config: Config, lbName: string): Promise<string[]> {
  const lb = config.loadBalancers.find((l) => l.name === lbName)!;
  const names: string[] = [];
  for (let i = 0; i < 20 && names.length < 3; i++) {
    const g = await greeting(lb.vip, lb.ports[0]!);
    if (g !== '') names.push(g);
    else await sleep(500);
  }
  return names;
}

describe('agents read their node facts from their own OVS', { skip: !isRoot && 'needs root' }, () => {
  let config: Config;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-af-'));
    lab = await labUp(
      { prefix: PREFIX, gateways: 1, hosts: 1, backendsPerHost: 2, clients: 1 },
      { replace: true },
    );
    config = lab.sluiceConfig();
  });

  after(async () => {
    await children.killAll();
    client?.close();
    await srv?.stop();
    if (lab) await labDown(PREFIX);
    if (process.env.SLUICE_KEEP_LOGS) process.stderr.write(`logs kept in ${dir}\n`);
    else rmSync(dir, { recursive: true, force: true });
  });

  test('facts read from every node equal the lab facts; backends carry their probe namespace', async () => {
    for (const n of lab.nodes) {
      const r = await readNodeFacts(n);
      assert.deepEqual(r.facts, lab.compilerFacts(n.name), n.name);
      const want: Record<string, string> = {};
      for (const b of n.backends) {
        want[b.ip] = b.netns;
        want[b.ip6] = b.netns;
      }
      assert.deepEqual(r.probeNetns, want, n.name);
    }
    assert.ok(Object.keys(lab.compilerFacts('host1').vms).length === 4, 'host1 has 2 backends x 2 families');
  });

  test("after a host's ovs-vswitchd restart the facts read still equal the lab's", async () => {
    const h = lab.node('host1');
    const before = h.vswitchdPid();
    const pid = await h.restartVswitchd();
    assert.notEqual(pid, before);
    assert.deepEqual((await readNodeFacts(h)).facts, lab.compilerFacts('host1'));
  });

  test('`sluice agent` without --facts converges with a planner; a client reaches a backend', async () => {
    srv = await startStandalone(dir);
    client = new OvsdbClient({ remotes: [`unix:${srv.unixPath}`] });
    await client.connect();
    const desired = await client.monitor(DB_NAME, DESIRED_STATE_MONITOR);
    status = await client.monitorDatabases(
      splitMonitor({ Global: {}, Node_Status: {}, Node_Heartbeat: {}, Backend_Status: {} }),
    );
    await client.transact(DB_NAME, ...desiredStateOps(desired.replica, config));
    children.start('planner', ['planner', '--db', `unix:${srv.unixPath}`, '--lease', '10', '--margin', '3']);
    for (const n of lab.nodes) {
      const fence =
        n.role === 'gateway'
          ? [
              '--withdraw-cmd',
              labEcmpCommand(lab, n.name, 'withdraw'),
              '--announce-cmd',
              labEcmpCommand(lab, n.name, 'announce'),
            ]
          : [];
      // No --facts, --node or --role: all from the node's OVS (hosts name themselves, to check they agree).
      children.start(`agent-${n.name}`, [
        'agent',
        '--db',
        `unix:${srv.unixPath}`,
        '--ovs-rundir',
        n.ovsDir,
        ...(n.role === 'host' ? ['--node', n.name] : []),
        ...fence,
      ]);
    }
    const t0 = Date.now();
    await waitFor(converged, 120_000, 'every node acknowledged the generation');
    process.stderr.write(`converged in ${Date.now() - t0} ms (incl. process start)\n`);
    for (const n of lab.nodes) {
      const f = children.records(`agent-${n.name}`).find((r) => r.event === 'facts');
      assert.ok(f, `agent-${n.name} logged its facts`);
      assert.match(String(f.source), /^the OVSDB in /);
      assert.deepEqual(f.facts, lab.compilerFacts(n.name));
    }
    const webBackends = config.loadBalancers
      .find((l) => l.name === 'web')!
      .backends.map((b) => lab.backends().find((x) => x.ip === b.address)!.name);
    const got = await reachThroughVip(config, 'web');
    assert.ok(got.length > 0, 'a connection through the VIP got a greeting');
    for (const g of got) assert.ok(webBackends.includes(g), `greeting ${g} is a backend of web`);
    // Health probes run in the namespaces the backend ports name (sluice-probe-netns): every backend turns up.
    const backends = config.loadBalancers.reduce((n, lb) => n + lb.backends.length, 0);
    await waitFor(
      () => {
        const reports = rows(status.replica, BackendStatusTable);
        return reports.length === backends && reports.every((x) => x.health === 'up');
      },
      60_000,
      `all ${backends} backends reported up`,
    );
  });

  test('--node that OVS contradicts: exit 2 with the names, nothing started', async () => {
    const h = lab.node('host1');
    const child = children.start('agent-wrong', [
      'agent',
      '--db',
      `unix:${srv!.unixPath}`,
      '--ovs-rundir',
      h.ovsDir,
      '--node',
      'gw1',
    ]);
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    assert.equal(code, 2);
    const text = children.lines('agent-wrong').join('\n');
    assert.match(text, /describes host1 \(host\), not gw1 \(host\) \[SLUICE_E_USAGE\]/);
  });

  test('an ofport changed across a vswitchd restart is read again and used', async () => {
    const h = lab.node('host1');
    // `api` has one backend (on host1): every connection through its VIP must reach it on its new port.
    const api = config.loadBalancers.find((l) => l.name === 'api')!;
    assert.equal(api.backends.length, 1);
    const b = lab.backends().find((x) => x.ip === api.backends[0]!.address)!;
    const newPort = 21;
    assert.notEqual(b.ofport, newPort);
    await h.killVswitchd();
    await h.vsctl(['--no-wait', 'set', 'Interface', b.vmPort, `ofport_request=${newPort}`]);
    await h.restartVswitchd();
    assert.equal((await readNodeFacts(h)).facts.vms[b.ip]?.ofport, newPort);
    const agent = 'agent-host1';
    await waitFor(
      () => {
        // A `facts` record with the new port, then an `applied` one.
        let reread = false;
        for (const r of children.records(agent)) {
          const vms = (r.facts as { vms?: Record<string, { ofport: number }> } | undefined)?.vms;
          if (r.event === 'facts' && vms?.[b.ip]?.ofport === newPort) reread = true;
          else if (reread && r.event === 'applied') return true;
        }
        return false;
      },
      60_000,
      `${agent} re-read the facts (ofport ${newPort}) and applied`,
    );
    const flows = (await h.ofctl('br-int', ['dump-flows'])).stdout;
    assert.match(flows, new RegExp(`output:${newPort}\\b`), 'br-int sends to the new ofport');
    assert.doesNotMatch(flows, new RegExp(`output:${b.ofport}\\b`), 'and no longer to the old one');
    const got = await reachThroughVip(config, 'api');
    assert.ok(got.length > 0, 'a connection through the VIP got a greeting after the ofport changed');
    for (const g of got) assert.equal(g, b.name);
  });

  test('the operator confirms a live gateway fenced: its agent turns withdrawn, rejoins and deletes the record', async () => {
    const n0 = children.records('agent-gw1').length;
    const out = await runSluice(['node', 'confirm-fenced', 'gw1', '--db', `unix:${srv!.unixPath}`]);
    assert.match(out, /gw1: confirmed fenced by the operator/);
    const fresh = () => children.records('agent-gw1').slice(n0);
    await waitFor(
      () => {
        const i = fresh().findIndex((r) => r.event === 'fenced-by-operator');
        return (
          i >= 0 &&
          fresh()
            .slice(i)
            .some((r) => r.event === 'announced')
        );
      },
      60_000,
      'agent-gw1 saw the operator record, then announced again',
    );
    const gw1Record = () => fenceMarks(nodeStatus(status.replica, 'gw1')).byOperator;
    await waitFor(() => gw1Record() === undefined, 30_000, 'the rejoin deleted fenced_by_operator');
    assert.ok(converged(), 'every node still on the latest generation');
  });
});
