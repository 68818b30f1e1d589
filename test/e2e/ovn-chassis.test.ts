// sluice's host agent beside REAL ovn-controller (Debian ovn-host) on the same ovs-vswitchd (root; lab prefix
// `slt-ovn-`, torn down in `after`). host1 of a small lab (1 gateway, 2 hosts, 1 backend each, 1 client, the
// control plane) is made an OVN chassis the way docs/ovn.md tells an operator: OVN's integration bridge `br-ovn`
// (ovn-bridge) beside sluice's own bridge, a localnet port whose bridge mapping is sluice's bridge (ovn-controller
// patches the two), the backend VM's veth on OVN's bridge bound to logical port vm1 (`external_ids:iface-id`), and
// `sluice-ct-zone=65535` for sluice's conntrack. ovn-central (NB, SB, ovn-northd) runs in a private directory.
// Every process this file starts is stopped by its own PID.
//
// - Long-lived connections to the VIP reach host1-b1 through OVN's pipeline (and host2-b1 without OVN); OVN's own
//   flows are the same before and after sluice's agents program the chassis, and none of sluice's are on OVN's bridge.
// - ovn-controller restarted under traffic with its zones allocated anew (it flushes each zone it assigns): 0 broken,
//   sluice's flows not touched.
// - An OVN ACL dropping traffic to vm1 is honoured: new connections to host1-b1 fail, host2-b1 still answers.
// - `ovn-nbctl lb-add` of a load balancer whose backend is vm1, served by `sluice ovn sync --once`: the importer
//   places the backend on host1 (its chassis' encap IP) and new connections through the gateway reach vm1.
// - host2 made a chassis too: OVN's tunnel port between host1 and host2 takes sluice's Geneve between them, so the
//   chain hops of a drain (host1 -> host2) are lost and the drained backend's connections break (negative
//   control); with sluice's Geneve on UDP port 6082 on every node the same drain breaks none.
// - Negative control: the same restart with sluice's connections in zone 1 (the default, which OVN assigns to its
//   first port) breaks host1-b1's connections.
import * as assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type ControlPlane,
  startAgent,
  startControlPlane,
  waitConverged,
} from '../../src/lab/control-plane.ts';
import { killPidFile } from '../../src/lab/exec.ts';
import type { LabNode } from '../../src/lab/node.ts';
import { expectedProgram, type Lab, labDown, labUp } from '../../src/lab/topology.ts';
import { startTraffic, type Traffic, type TrafficCounters } from '../../src/lab/traffic.ts';
import { haveOvnCentral, type OvnCentral, startOvnCentral } from './helpers/ovn-central.ts';
import { runSluice } from './helpers/sluice-children.ts';
import { isRoot, packetsByKind, WEB } from './lb-common.ts';

const PREFIX = 'slt-ovn-';
const OVN_VM = 'host1-b1';
const PLAIN_VM = 'host2-b1';
const SLUICE_ZONE = 65535;
/** sluice's Geneve UDP port where OVN's tunnel ports (6081) would take it: between two chassis. */
const SLUICE_GENEVE_PORT = 6082;
const PATCH = 'patch-ln-to-br-ovn';
/** The port of the OVN load balancer the importer serves (the lab's router already sends the VIP to the gateway). */
const SHOP_PORT = 8080; // ovn-controller's name for the localnet patch on the mapped bridge

let lab: Lab;
let cp: ControlPlane;
let ovn: OvnCentral;
let dir: string;
let h1: LabNode;
const controllers = new Map<string, ChildProcess>();
let ovnFlowsBefore = 0;
const traffics: Traffic[] = [];

const vsctl = async (...args: string[]) => (await h1.vsctl(args)).stdout.trim();
const flows = async (br: string) =>
  (await h1.ofctl(br, ['--no-stats', 'dump-flows'])).stdout
    .split('\n')
    .filter((l) => l.includes('cookie='))
    .map((l) => l.trim());
/** sluice's cookies carry 0x51 in their top byte (OVN's are the first 32 bits of a logical flow's UUID). */
const SLUICE_COOKIE = /cookie=0x51[0-9a-f]{14}[, ]/;
const sluiceFlows = async (br: string) => (await flows(br)).filter((l) => SLUICE_COOKIE.test(l));
const ovnFlows = async () => (await flows('br-ovn')).filter((l) => !SLUICE_COOKIE.test(l));

/** Polls `pred`; on timeout fails with its last error or note and the end of host1's ovn-controller log. */
async function until(what: string, pred: () => Promise<boolean | string>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    const r = await pred().catch((e: Error) => `error: ${e.message}`);
    if (r === true) return;
    if (typeof r === 'string') last = r;
    if (Date.now() > deadline) {
      const log = join(dir, 'host1', 'ovn-controller.log');
      const tail = existsSync(log) ? readFileSync(log, 'utf8').split('\n').slice(-15).join('\n') : '(no log)';
      assert.fail(`timed out waiting until ${what} (${last})\n${tail}`);
    }
    await sleep(200);
  }
}

/** ovn-controller on a node's own ovs-vswitchd (its OVS_RUNDIR: the node's run directory, where br-*.mgmt live). */
function spawnController(node: LabNode): void {
  const run = join(dir, node.name);
  mkdirSync(run, { recursive: true });
  const c = spawn(
    'ip',
    [
      'netns',
      'exec',
      node.netns,
      'ovn-controller',
      `unix:${node.ovsDir}/db.sock`,
      `--log-file=${join(run, 'ovn-controller.log')}`,
      '-vconsole:off',
    ],
    { stdio: 'ignore', env: { ...process.env, OVS_RUNDIR: node.ovsDir, OVN_RUNDIR: run } },
  );
  controllers.set(node.name, c);
}

/** host1's ovn-controller, until it has bound vm1. */
async function startController(): Promise<void> {
  spawnController(h1);
  await until('ovn-controller bound vm1', async () => {
    const zone = await vsctl('--if-exists', 'get', 'Bridge', 'br-ovn', 'external_ids:ct-zone-vm1');
    return (
      zone !== '' &&
      (await vsctl('get', 'Interface', lab.backend(OVN_VM).vmPort, 'external_ids')).includes('ovn-installed')
    );
  });
}

async function stopController(name = 'host1'): Promise<void> {
  const c = controllers.get(name);
  controllers.delete(name);
  if (c?.pid === undefined || c.exitCode !== null) return;
  const exited = new Promise((r) => c.once('exit', r));
  c.kill('SIGTERM');
  await exited;
}

/** `ovs-vsctl` arguments that make a node an OVN chassis with its own integration bridge br-ovn. */
function chassisArgs(node: LabNode): string[] {
  return [
    ...['add-br', 'br-ovn', '--', 'set', 'Bridge', 'br-ovn', 'datapath_type=netdev'],
    ...['--', 'set', 'Open_vSwitch', '.', `external_ids:ovn-remote=${ovn.sb.unixRemote}`],
    ...['external_ids:ovn-encap-type=geneve', `external_ids:ovn-encap-ip=${node.tunnelIp}`],
    ...['external_ids:ovn-bridge=br-ovn', 'external_ids:ovn-bridge-datapath-type=netdev'],
  ];
}

/** Packets host1 handed along a chain (CHAIN_HOP flows' n_packets). */
async function host1Hops(): Promise<number> {
  return (await packetsByKind(lab, ['host1'])).CHAIN_HOP ?? 0;
}

/** Drains host2-b1 under 40 connections: its moved slots' packets reach host1, which hands them to host2 over
 *  Geneve (a chain hop between two chassis). Counters 5 s after the first hop (past the runner's 3 s echo timeout),
 *  with the packets host2's sluice pipeline took from host1 (its TUN_ACCEPT flow for host1); then undrained. */
async function drainAcrossChassis(): Promise<{ c: TrafficCounters; received: number; broken: Set<string> }> {
  const h2 = lab.node('host2');
  const fromHost1 = async () => {
    await h2.appctl(['revalidator/wait']);
    const accept = (await h2.ofctl('br-int', ['dump-flows'])).stdout
      .split('\n')
      .find((l) => l.includes(`tun_src=${h1.tunnelIp},`));
    return Number(/n_packets=(\d+)/.exec(accept ?? '')?.[1] ?? 0);
  };
  const tr = await traffic(40);
  const hops0 = await host1Hops();
  const in0 = await fromHost1();
  const ip = lab.backend(PLAIN_VM).ip;
  const db = ['--db', cp.db];
  await runSluice(['backend', 'drain', 'web', ip, ...db]);
  await until('host1 hands packets to host2', async () => (await host1Hops()) > hops0);
  await sleep(5000);
  const c = await tr.report();
  const received = (await fromHost1()) - in0;
  const broken = new Set(tr.brokenEvents().map((e) => String(e.backend)));
  await tr.kill();
  await runSluice(['backend', 'undrain', 'web', ip, ...db]);
  await waitConverged(cp, 60_000);
  return { c, received, broken };
}

/** ovn-controller restarted with its zones forgotten (a chassis set up again): it assigns and flushes them anew. */
async function restartWithFreshZones(): Promise<Record<string, string>> {
  await stopController();
  const ids = await vsctl('get', 'Bridge', 'br-ovn', 'external_ids');
  for (const k of ids.matchAll(/"?(ct-zone-[^"=]+)"?=/g))
    await vsctl('remove', 'Bridge', 'br-ovn', 'external_ids', k[1]!);
  await startController();
  await until('OVN reinstalled its flows', async () => (await ovnFlows()).length >= ovnFlowsBefore);
  return zones();
}

async function zones(): Promise<Record<string, string>> {
  const ids = await vsctl('get', 'Bridge', 'br-ovn', 'external_ids');
  return Object.fromEntries([...ids.matchAll(/"?ct-zone-([^"=]+)"?="?(\d+)"?/g)].map((m) => [m[1]!, m[2]!]));
}

async function traffic(count: number): Promise<Traffic> {
  const t = await startTraffic(lab, { ...WEB, count, rate: 40, expectBackends: [OVN_VM, PLAIN_VM] });
  traffics.push(t);
  await t.waitOpened(count);
  return t;
}

/** host1's agent restarted (it reads its facts, the conntrack zone among them, at start). */
async function restartAgent(node = 'host1'): Promise<void> {
  const pid = cp.pidFile(`agent-${node}`);
  await killPidFile(pid, expectedProgram(pid)!, { signal: 'SIGTERM' });
  startAgent(cp, node);
}

describe('sluice beside real ovn-controller on its chassis', { skip: !isRoot && 'needs root' }, () => {
  before(async () => {
    assert.ok(haveOvnCentral, 'ovn-central and ovn-host are installed (scripts/ensure-deps.sh)');
    dir = mkdtempSync(join(tmpdir(), 'sluice-ovn-chassis-'));
    ovn = await startOvnCentral(dir);
    lab = await labUp(
      { prefix: PREFIX, gateways: 1, hosts: 2, backendsPerHost: 1, clients: 1, routing: 'static' },
      { replace: true },
    );
    h1 = lab.node('host1');
    const vm = lab.backend(OVN_VM);
    // The operator's OVN: one switch with the VM's port and a localnet port to sluice's bridge.
    await ovn.nbctl('ls-add', 'sw0');
    await ovn.nbctl('lsp-add', 'sw0', 'vm1');
    await ovn.nbctl('lsp-set-addresses', 'vm1', `${vm.mac} ${vm.ip}`);
    await ovn.nbctl('lsp-add', 'sw0', 'ln');
    await ovn.nbctl('lsp-set-type', 'ln', 'localnet');
    await ovn.nbctl('lsp-set-addresses', 'ln', 'unknown');
    await ovn.nbctl('lsp-set-options', 'ln', 'network_name=sluicenet');
    // The chassis: OVN's bridge beside sluice's br-int; the VM moves onto it as logical port vm1.
    await vsctl(
      ...chassisArgs(h1),
      ...['external_ids:ovn-bridge-mappings=sluicenet:br-int', `external_ids:sluice-ct-zone=${SLUICE_ZONE}`],
      ...['--', 'del-port', 'br-int', vm.vmPort, '--', 'add-port', 'br-ovn', vm.vmPort],
      ...['--', 'set', 'Interface', vm.vmPort, 'external_ids={}', 'external_ids:iface-id=vm1'],
    );
    await startController();
    await until(
      `${PATCH} on br-int`,
      async () => Number(await vsctl('get', 'Interface', PATCH, 'ofport')) > 0,
    );
    // sluice's backend port is the localnet patch: packets to the VM cross OVN's logical switch.
    await vsctl(
      ...['set', 'Interface', PATCH, `external_ids:sluice-backend-ips="${vm.ip},${vm.ip6}"`],
      ...[`external_ids:attached-mac="${vm.mac}"`, `external_ids:sluice-probe-netns=${vm.netns}`],
    );
    await until('OVN flows settled', async () => {
      const n = (await ovnFlows()).length;
      await sleep(1000);
      const m = (await ovnFlows()).length;
      return (n > 100 && n === m) || `${n} then ${m} flows`;
    });
    ovnFlowsBefore = (await ovnFlows()).length;
    cp = await startControlPlane(lab, { planners: 1 });
  });

  after(async () => {
    await Promise.all(traffics.map((t) => t.kill().catch(() => {})));
    for (const name of [...controllers.keys()]) await stopController(name);
    if (lab) await labDown(PREFIX);
    await ovn?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("the VIP reaches the OVN port through OVN's switch; OVN's flows untouched", async (t) => {
    const tr = await traffic(40);
    await sleep(2000);
    const c = await tr.report();
    t.diagnostic(`opened per backend: ${JSON.stringify(c.perBackend)}`);
    assert.equal(c.broken + c.failed, 0, JSON.stringify([c.brokenByReason, c.failedByReason]));
    assert.ok((c.perBackend[OVN_VM]?.opened ?? 0) >= 5, `${OVN_VM} (an OVN logical port) answers`);
    assert.ok((c.perBackend[PLAIN_VM]?.opened ?? 0) >= 5, `${PLAIN_VM} answers`);
    const ovnNow = (await ovnFlows()).length;
    t.diagnostic(`OVN flows on br-ovn: ${ovnFlowsBefore} before sluice's agents, ${ovnNow} after`);
    assert.equal(ovnNow, ovnFlowsBefore);
    assert.equal((await sluiceFlows('br-ovn')).length, 0, "no sluice flow on OVN's bridge");
    assert.ok(
      (await sluiceFlows('br-int')).some((l) => l.includes(`zone=${SLUICE_ZONE}`)),
      'sluice in its zone',
    );
    const ct = (await h1.appctl(['dpctl/dump-conntrack', `zone=${SLUICE_ZONE}`])).stdout;
    assert.ok(ct.includes('ESTABLISHED'), `sluice's connections are in zone ${SLUICE_ZONE}`);
  });

  test('ovn-controller restarted under traffic, zones assigned anew: 0 broken, sluice flows untouched', async (t) => {
    const tr = traffics[0]!;
    const before = await sluiceFlows('br-int');
    const c0 = await tr.report();
    const z = await restartWithFreshZones();
    t.diagnostic(`OVN's zones after the restart: ${JSON.stringify(z)}`);
    assert.ok(Object.values(z).includes('1'), 'OVN assigned zone 1 again (and flushed it)');
    await sleep(3000); // data on every connection after the flushes
    const c = await tr.report();
    t.diagnostic(`echoes during the restart: ${c.echoes - c0.echoes}; alive ${c.alive}`);
    assert.equal(c.broken + c.failed, 0, JSON.stringify([c.brokenByReason, tr.brokenEvents().slice(0, 5)]));
    assert.equal(c.alive, 40);
    assert.deepEqual(
      await sluiceFlows('br-int'),
      before,
      "ovn-controller's restart did not touch sluice's flows",
    );
  });

  test('an OVN ACL that drops traffic to vm1 is honoured; host2-b1 still answers', async () => {
    await ovn.nbctl('--wait=hv', 'acl-add', 'sw0', 'to-lport', '1001', 'outport == "vm1" && ip4', 'drop');
    try {
      const tr = await startTraffic(lab, {
        ...WEB,
        count: 20,
        rate: 40,
        timeoutMs: 1500,
        expectBackends: [OVN_VM, PLAIN_VM],
      });
      traffics.push(tr);
      await tr.runners[0]!.waitUntil(() => {
        const n = tr.counters();
        return n.opened + n.failed >= 20;
      }, 20_000);
      const c = await tr.report();
      assert.equal(c.perBackend[OVN_VM]?.opened ?? 0, 0, 'no connection reaches the dropped port');
      assert.ok(c.failed > 0, 'the dropped ones fail');
      assert.ok((c.perBackend[PLAIN_VM]?.opened ?? 0) > 0);
      await tr.kill();
    } finally {
      await ovn.nbctl('--wait=hv', 'acl-del', 'sw0', 'to-lport', '1001', 'outport == "vm1" && ip4');
    }
  });

  test('ovn-nbctl lb-add: sluice ovn sync places the backend on the chassis; connections reach vm1', async (t) => {
    const vm = lab.backend(OVN_VM);
    await ovn.nbctl('lb-add', 'shop', `${WEB.vip}:${SHOP_PORT}`, `${vm.ip}:80`);
    await ovn.nbctl('set', 'Load_Balancer', 'shop', 'external_ids:sluice=true');
    const out = await runSluice([
      'ovn',
      'sync',
      '--once',
      '--nb',
      ovn.nb.unixRemote,
      '--sb',
      ovn.sb.unixRemote,
      '--db',
      cp.db,
    ]);
    t.diagnostic(out.trim());
    assert.match(
      out,
      new RegExp(`\\+ load balancer ovn-shop-${WEB.vip.replaceAll('.', '\\.')}-${SHOP_PORT}`),
    );
    await waitConverged(cp, 60_000);
    const tr = await startTraffic(lab, {
      vip: WEB.vip,
      port: SHOP_PORT,
      count: 20,
      rate: 40,
      expectBackends: [OVN_VM],
    });
    traffics.push(tr);
    await tr.waitOpened(20);
    await sleep(2000);
    const c = await tr.report();
    assert.equal(c.broken + c.failed, 0, JSON.stringify([c.brokenByReason, c.failedByReason]));
    assert.equal(c.perBackend[OVN_VM]?.opened, 20, 'every connection reached the OVN port');
    await tr.kill();
  });

  test("two chassis: OVN's tunnel port takes sluice's Geneve between them; chain hops are lost (negative control)", async (t) => {
    await Promise.all(traffics.map((x) => x.kill().catch(() => {})));
    const h2 = lab.node('host2');
    await h2.vsctl(chassisArgs(h2));
    spawnController(h2);
    await until('OVN tunnel ports between host1 and host2', async () => {
      const a = Number(await vsctl('--if-exists', 'get', 'Interface', 'ovn-host2-0', 'ofport'));
      const b = Number((await h2.vsctl(['--if-exists', 'get', 'Interface', 'ovn-host1-0', 'ofport'])).stdout);
      return a > 0 && b > 0;
    });
    const { c, received, broken } = await drainAcrossChassis();
    t.diagnostic(
      `host2's sluice pipeline took ${received} packets from host1; broken ${c.broken} on ${[...broken]}`,
    );
    assert.equal(received, 0, "nothing from host1 reached host2's sluice pipeline");
    assert.ok(c.broken > 0, 'the drained backend lost the connections that needed the hops');
    assert.deepEqual([...broken], [PLAIN_VM]);
  });

  test(`sluice's Geneve on its own UDP port (${SLUICE_GENEVE_PORT} on every node): the same drain breaks none`, async (t) => {
    for (const n of lab.nodes)
      await n.vsctl(['set', 'Interface', 'geneve0', `options:dst_port=${SLUICE_GENEVE_PORT}`]);
    for (const n of lab.nodes) await restartAgent(n.name); // each reads its node again
    await waitConverged(cp, 60_000);
    const { c, received } = await drainAcrossChassis();
    t.diagnostic(
      `host2's sluice pipeline took ${received} packets from host1; opened ${c.opened}, broken ${c.broken}`,
    );
    assert.ok(received > 0, "host1's hops reached host2's sluice pipeline");
    assert.equal(c.broken + c.failed, 0, JSON.stringify([c.brokenByReason, c.failedByReason]));
  });

  test("negative control: sluice in zone 1, OVN's restart flushes it and host1-b1's connections break", async (t) => {
    await Promise.all(traffics.map((x) => x.kill().catch(() => {})));
    await vsctl('remove', 'Open_vSwitch', '.', 'external_ids', 'sluice-ct-zone');
    await restartAgent();
    await until('sluice flows in zone 1', async () =>
      (await sluiceFlows('br-int')).some((l) => l.includes('zone=1,') || l.includes('zone=1)')),
    );
    const tr = await traffic(40);
    const c0 = await tr.report();
    await restartWithFreshZones();
    await sleep(5000); // the runner's echo timeout (3 s) passes on every connection
    const c = await tr.report();
    t.diagnostic(
      `broken: ${c.broken} of ${c0.perBackend[OVN_VM]?.opened ?? 0} on ${OVN_VM}: ${JSON.stringify(c.brokenByReason)}`,
    );
    assert.ok(c.broken > 0, 'the flush of zone 1 broke connections');
    const brokenOn = new Set(tr.brokenEvents().map((e) => e.backend));
    assert.deepEqual([...brokenOn], [OVN_VM], 'only the chassis backend lost its connections');
  });
});
