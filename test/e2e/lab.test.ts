// End-to-end: the lab builds the whole topology on this machine and removes it again (root, real OVS, namespaces).
// Uses its own prefixes (slt-lab-, slt-labx-, slt-labf-); touches only namespaces and processes it created (lab down
// is shown to leave alone namespaces named like its own and a process whose pid one of its pid files names).

import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DEFAULT_RUN_ROOT, labNamespacePattern } from '../../src/lab/config.ts';
import { LabController } from '../../src/lab/controller.ts';
import { nsRun, pidAlive, readPidFile, run } from '../../src/lab/exec.ts';
import { LAB_TLV_MAP } from '../../src/lab/node.ts';
import { attachLab, type Lab, labDown, labStatus, labUp, listNamespaces } from '../../src/lab/topology.ts';
import { startTraffic, TrafficRunner } from '../../src/lab/traffic.ts';
import { SluiceError } from '../../src/model/errors.ts';
import { execSluice } from './helpers/sluice-children.ts';

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const PREFIX = 'slt-lab-';
const CRASH_PREFIX = 'slt-labx-';
const FILE_PREFIX = 'slt-labf-';

function pidFilesUnder(dir: string): string[] {
  const out: string[] = [];
  if (!existsSync(dir)) return out;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory()) out.push(...pidFilesUnder(p));
    else if (e.name.endsWith('.pid')) out.push(p);
  }
  return out;
}

async function labNamespaces(prefix: string): Promise<string[]> {
  const re = labNamespacePattern(prefix);
  return (await listNamespaces()).filter((n) => re.test(n));
}

describe('lab', { skip: isRoot ? false : 'needs root', timeout: 300_000 }, () => {
  let lab: Lab;
  let upMs = 0;

  before(async () => {
    await labDown(PREFIX); // leftovers of an earlier crashed run of this very test (same prefix) only
    const t0 = Date.now();
    lab = await labUp({ prefix: PREFIX });
    upMs = Date.now() - t0;
  });

  after(async () => {
    await labDown(PREFIX);
  });

  test('builds 15 namespaces and the default sizes (2 gateways, 3 hosts, 2 backends each, 2 clients)', async () => {
    const ns = await labNamespaces(PREFIX);
    assert.equal(ns.length, 1 + 1 + 2 + 3 + 6 + 2, `namespaces: ${ns.join(' ')}`);
    assert.deepEqual(
      lab.nodes.map((n) => `${n.name}:${n.role}`),
      ['gw1:gateway', 'gw2:gateway', 'host1:host', 'host2:host', 'host3:host'],
    );
    assert.equal(lab.backends().length, 6);
    process.stderr.write(`lab up took ${upMs} ms\n`);
  });

  test('labUp refuses to build over an existing lab with the same prefix', async () => {
    await assert.rejects(
      () => labUp({ prefix: PREFIX }),
      (e: unknown) => e instanceof SluiceError && e.code === 'SLUICE_E_LAB_EXISTS',
    );
  });

  test('another process cannot replace a lab whose builder still runs (it would take its namespaces away)', async () => {
    const r = await execSluice(['lab', 'up', '--replace', '--no-control-plane', '--prefix', PREFIX]);
    assert.notEqual(r.code, 0, r.stdout);
    assert.match(r.stderr, new RegExp(`in use: process ${process.pid}, which built it, still runs`));
    assert.equal((await labNamespaces(PREFIX)).length, 15, 'the lab is intact');
  });

  test("every node's own OVS answers, with br-phy/br-int, the ports of the plan and the TLV map", async () => {
    for (const n of lab.nodes) {
      const v = await n.appctl(['version']);
      assert.match(v.stdout, /Open vSwitch/);
      const br = await n.vsctl(['list-br']);
      assert.deepEqual(br.stdout.trim().split('\n').sort(), ['br-int', 'br-phy']);
      // The facts' port numbers are the ones OVSDB reports.
      const ofport = async (iface: string) =>
        Number((await n.vsctl(['get', 'Interface', iface, 'ofport'])).stdout.trim());
      assert.equal(await ofport('eth0'), n.ports.eth0);
      assert.equal(await ofport('phy-to-int'), n.ports.phyToInt);
      assert.equal(await ofport('int-to-phy'), n.ports.intToPhy);
      assert.equal(await ofport('geneve0'), n.ports.geneve);
      for (const b of n.backends) assert.equal(await ofport(b.vmPort), b.ofport);
      assert.equal((await n.vsctl(['get', 'Interface', 'geneve0', 'type'])).stdout.trim(), 'geneve');
      assert.equal((await n.vsctl(['get', 'Bridge', 'br-int', 'datapath_type'])).stdout.trim(), 'netdev');
      // ofctl hook: OpenFlow 1.5 against this node's bridge.
      const flows = await n.ofctl('br-int', ['dump-flows']);
      assert.match(flows.stdout, /OFPST_FLOW reply \(OF1\.5\)/);
      const tlv = await n.ofctl('br-int', ['dump-tlv-map']);
      for (const i of [0, 1, 2]) assert.match(tlv.stdout, new RegExp(`tun_metadata${i}\\b`));
      assert.match(LAB_TLV_MAP, /type=0x80/);
      // Pitfalls: eth0 has its own MAC, arp off, MTU 1600, tx checksum offload off.
      const link = await n.exec('ip', ['-j', 'link', 'show', 'eth0']);
      const [eth0] = JSON.parse(link.stdout) as Array<{ address: string; mtu: number; flags: string[] }>;
      assert.equal(eth0.address, n.eth0Mac);
      assert.notEqual(n.eth0Mac, n.brPhyMac);
      assert.equal(eth0.mtu, 1600);
      assert.ok(eth0.flags.includes('NOARP'), `eth0 flags ${eth0.flags}`);
      const k = await n.exec('ethtool', ['-k', 'eth0']);
      assert.match(k.stdout, /tx-checksumming: off/);
    }
  });

  test('underlay: every node pings every other node, and the router pings every node', async () => {
    const pings = await lab.checkUnderlay();
    assert.equal(pings.length, 5 * 4 + 5);
    assert.deepEqual(
      pings.filter((p) => !p.ok),
      [],
    );
  });

  test('backends answer through br-int from their host namespace with their own name (TCP and UDP)', async () => {
    const probes = await lab.probeBackends();
    assert.equal(probes.length, 6);
    for (const p of probes) {
      assert.equal(p.tcpGreeting, p.backend);
      assert.equal(p.udpReply, p.backend);
    }
  });

  test('a backend server can be stopped and started again by its pid file', async () => {
    const pid = lab.backendPid('host3-b2');
    assert.ok(pid !== undefined);
    assert.equal(await lab.stopBackend('host3-b2'), pid);
    assert.equal(lab.backendPid('host3-b2'), undefined);
    const down = await lab.probeBackends();
    assert.deepEqual(
      down.filter((p) => !p.ok).map((p) => p.backend),
      ['host3-b2'],
    );
    const again = await lab.startBackend('host3-b2');
    assert.notEqual(again, pid);
    assert.ok((await lab.probeBackends()).every((p) => p.ok));
    // Killed and started again at once, several times: the new server must find the port free (stopBackend returns
    // only once the old one has exited, sockets closed; a dying server with its memory already gone held the port).
    for (let i = 0; i < 5; i++) {
      await lab.stopBackend('host3-b2', 'SIGKILL');
      await lab.startBackend('host3-b2');
    }
    assert.ok((await lab.probeBackends()).every((p) => p.ok));
  });

  test("set-up's wait for the backends: it waits for one that answers late, and names what was not ready", async () => {
    // A backend that starts answering after the first probes (a loaded machine): waited for, not failed at once.
    await lab.stopBackend('host3-b2');
    const waited = lab.waitBackendsAnswer(20_000);
    await new Promise((r) => setTimeout(r, 1000));
    await lab.startBackend('host3-b2');
    await waited;
    // Negative control, within a short deadline: a backend that does not answer (its server stopped) on a switch
    // with a flow that is not the lab's (harmless here; an agent left over from an earlier lab would add many).
    const h2 = lab.node('host2');
    const b = lab.backend('host2-b1');
    await lab.stopBackend('host2-b1');
    await h2.ofctl('br-int', ['add-flow', 'priority=1,arp,actions=NORMAL']);
    try {
      await assert.rejects(lab.waitBackendsAnswer(500), (e: Error) => {
        const want = `host2-b1 (tcp "", udp ""; br-int neighbour ${b.ip}: `;
        assert.ok(e.message.includes(want), e.message);
        assert.match(
          e.message,
          /port vm-host2-b1 link up; server not running; br-int flows 2, 1 not the lab's NORMAL; programmed by no process/,
        );
        assert.ok(!e.message.includes('host2-b2'), 'only the backend that did not answer is named');
        return true;
      });
    } finally {
      await h2.ofctl('br-int', ['--strict', 'del-flows', 'priority=1,arp']);
      await lab.startBackend('host2-b1');
    }
    await lab.waitBackendsAnswer(5000);
  });

  test('a backend echoes over a long-lived connection (harness in the backend namespace, 0 broken)', async () => {
    const b = lab.backend('host2-b1');
    const r = await TrafficRunner.start(lab, { netns: b.netns, vip: b.ip, port: 80, count: 20, rate: 200 });
    try {
      await r.waitUntil(() => r.counters.opened >= 20, 10_000, '20 opened');
      await new Promise((res) => setTimeout(res, 1000));
      const c = await r.report();
      assert.equal(c.broken, 0);
      assert.ok(c.echoes >= 20, `echoes ${c.echoes}`);
      assert.deepEqual(Object.keys(c.perBackend), ['host2-b1']);
      const s = await r.stop();
      assert.equal(s.broken, 0);
      assert.equal(s.closed, 20);
    } finally {
      await r.kill();
    }
  });

  test('the lab carries traffic end to end: client -> ECMP router -> both gateways -> Geneve+TLV -> host -> backend -> direct return', async () => {
    // Hand-written stateless flows (cookie 0x1ab, removed afterwards), standing in for sluice's compiled ones: every
    // connection to 203.0.113.10 goes to host1-b1. This checks the lab's plumbing, not sluice.
    const COOKIE = 'cookie=0x1ab';
    const h = lab.node('host1');
    const b = lab.backend('host1-b1');
    const vip = '203.0.113.10';
    for (const g of lab.gateways) {
      await g.ofctl('br-phy', [
        'add-flow',
        `${COOKIE},priority=100,in_port=${g.ports.eth0},ip,nw_dst=${vip} actions=output:${g.ports.phyToInt}`,
      ]);
      await g.ofctl('br-int', [
        'add-flow',
        `${COOKIE},priority=100,in_port=${g.ports.intToPhy},tcp,nw_dst=${vip} actions=set_field:${h.tunnelIp}->tun_dst,` +
          `set_field:0x10001->tun_metadata0,set_field:0->tun_metadata1,set_field:0->tun_metadata2,output:${g.ports.geneve}`,
      ]);
    }
    await h.ofctl('br-phy', [
      'add-flow',
      `${COOKIE},priority=100,in_port=${h.ports.phyToInt} actions=output:${h.ports.eth0}`,
    ]);
    await h.ofctl('br-int', [
      'add-flow',
      `${COOKIE},priority=100,in_port=${h.ports.geneve},tcp,nw_dst=${vip},tun_metadata0=0x10001 actions=` +
        `set_field:${b.ip}->nw_dst,set_field:${b.gatewayMac}->eth_src,set_field:${b.mac}->eth_dst,output:${b.ofport}`,
    ]);
    await h.ofctl('br-int', [
      'add-flow',
      `${COOKIE},priority=100,in_port=${b.ofport},tcp,nw_src=${b.ip} actions=set_field:${vip}->nw_src,` +
        `set_field:${h.brPhyMac}->eth_src,set_field:${lab.facts.router.underlayMac}->eth_dst,output:${h.ports.intToPhy}`,
    ]);
    const t = await startTraffic(lab, { vip, port: 80, count: 100, rate: 200, expectBackends: ['host1-b1'] });
    try {
      await t.waitOpened(100, 20_000);
      await new Promise((res) => setTimeout(res, 1000));
      const c = await t.report();
      assert.equal(c.broken, 0, JSON.stringify(t.brokenEvents()));
      assert.equal(c.failed, 0);
      assert.equal(c.perBackend['host1-b1']?.alive, 100);
      const s = await t.stop();
      assert.equal(s.broken, 0);
      assert.equal(s.closed, 100);
      // The router's L4 hash spread the connections over both gateways.
      for (const g of lab.gateways) {
        const flows = (await g.ofctl('br-int', ['dump-flows', `${COOKIE}/-1`])).stdout;
        const n = Number(/n_packets=(\d+)/.exec(flows)?.[1] ?? 0);
        assert.ok(n > 0, `${g.name} carried no packets`);
      }
    } finally {
      await t.kill();
      for (const n of [...lab.gateways, h]) {
        await n.ofctl('br-phy', ['del-flows', `${COOKIE}/-1`]);
        await n.ofctl('br-int', ['del-flows', `${COOKIE}/-1`]);
      }
    }
  });

  test('router: ECMP route over both gateways for each VIP; the set can shrink and grow', async () => {
    const r = await nsRun(lab.facts.router.netns, 'ip', ['route', 'show', '203.0.113.10']);
    assert.match(r.stdout, /nexthop via 192\.168\.100\.1 /);
    assert.match(r.stdout, /nexthop via 192\.168\.100\.2 /);
    const policy = await nsRun(lab.facts.router.netns, 'sysctl', [
      '-n',
      'net.ipv4.fib_multipath_hash_policy',
    ]);
    assert.equal(policy.stdout.trim(), '1');
    assert.deepEqual(await lab.ecmpGateways(), {
      '203.0.113.10': ['gw1', 'gw2'],
      '203.0.113.20': ['gw1', 'gw2'],
    });
    await lab.setEcmpGateways(['gw2']);
    assert.deepEqual(await lab.ecmpGateways(), { '203.0.113.10': ['gw2'], '203.0.113.20': ['gw2'] });
    await lab.setEcmpGateways(['gw1', 'gw2']);
    assert.deepEqual(await lab.ecmpGateways(), {
      '203.0.113.10': ['gw1', 'gw2'],
      '203.0.113.20': ['gw1', 'gw2'],
    });
  });

  test('the derived sluice config: 2 VIPs, 4 and 3 backends, one backend in both', () => {
    const cfg = lab.sluiceConfig();
    assert.equal(cfg.nodes.length, 5);
    const web = cfg.loadBalancers.find((lb) => lb.vip === '203.0.113.10')!;
    const api = cfg.loadBalancers.find((lb) => lb.vip === '203.0.113.20')!;
    assert.equal(web.vip, '203.0.113.10');
    assert.equal(web.backends.length, 4);
    assert.equal(api.vip, '203.0.113.20');
    assert.equal(api.backends.length, 3);
    const shared = web.backends.filter((b) => api.backends.some((x) => x.address === b.address));
    assert.equal(shared.length, 1);
    // Every backend address lives on the host the config says.
    for (const lb of cfg.loadBalancers) {
      for (const b of lb.backends) {
        const owner = lab.hosts.find((h) => h.backends.some((x) => x.ip === b.address));
        assert.equal(owner?.name, b.host);
      }
    }
  });

  test("ovs-vswitchd killed by its pid file and restarted: the lab's runtime state comes back", async () => {
    const gw = lab.node('gw1');
    const oldPid = gw.vswitchdPid();
    assert.ok(oldPid !== undefined);
    const killed = await gw.killVswitchd();
    assert.equal(killed, oldPid);
    assert.equal(pidAlive(oldPid), false);
    const dead = await gw.appctl(['version'], { allowFail: true }).catch(() => ({ code: -1 }));
    assert.notEqual(dead.code, 0);
    const t0 = Date.now();
    const pid = await gw.restartVswitchd();
    process.stderr.write(`ovs-vswitchd restart took ${Date.now() - t0} ms\n`);
    assert.notEqual(pid, oldPid);
    assert.match((await gw.ofctl('br-int', ['dump-tlv-map'])).stdout, /tun_metadata2/);
    assert.match((await gw.appctl(['tnl/neigh/show'])).stdout, /192\.168\.100\.11/);
    // The restarted switch relearns its neighbours: give the underlay a few seconds (one ping each, repeated)
    // before calling a pair broken; a loaded CI machine lost single pings right after the restart.
    let failed = (await lab.checkUnderlay()).filter((p) => !p.ok);
    for (let i = 0; i < 10 && failed.length > 0; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      failed = (await lab.checkUnderlay()).filter((p) => !p.ok);
    }
    assert.deepEqual(failed, []);
  });

  test('another process can attach to the running lab; status lists namespaces, processes, versions, ECMP', async () => {
    const again = attachLab(PREFIX);
    assert.deepEqual(again.facts.nodes, JSON.parse(JSON.stringify(lab.facts.nodes)));
    const s = await labStatus(PREFIX);
    assert.equal(s.exists, true);
    assert.equal(s.namespaces.length, 15);
    assert.equal(s.nodes.length, 5);
    for (const n of s.nodes) {
      assert.ok(n.ovsdbAlive && n.vswitchdAlive, n.name);
      assert.match(n.ovsVersion ?? '', /Open vSwitch/);
    }
    assert.ok(s.processes.length >= 16);
    assert.deepEqual(
      s.processes.filter((p) => !p.alive),
      [],
    );
    assert.deepEqual(s.ecmp['203.0.113.10'], ['gw1', 'gw2']);
  });

  test('lab down removes every namespace with the prefix and every process from its pid files, nothing else', async () => {
    const pids = pidFilesUnder(`${DEFAULT_RUN_ROOT}/${PREFIX}`)
      .map((f) => readPidFile(f))
      .filter((p): p is number => p !== undefined);
    assert.ok(pids.length >= 16, `pids ${pids}`);
    // Not this lab's: namespaces with names close to its own, and a process (started here) whose pid sits in one of
    // the lab's pid files as if its pid had been recycled: a backend-server by name, but in no namespace of the lab.
    const foreignNs = [`${PREFIX}x-gw1`, `${PREFIX}gw1x`, 'slt-labz-gw1'];
    for (const n of foreignNs) await run('ip', ['netns', 'add', n]);
    const foreign = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)', 'backend-server'], {
      stdio: 'ignore',
    });
    writeFileSync(`${DEFAULT_RUN_ROOT}/${PREFIX}/pids/backend-recycled.pid`, `${foreign.pid}\n`);
    let r: Awaited<ReturnType<typeof labDown>>;
    try {
      const t0 = Date.now();
      r = await labDown(PREFIX);
      process.stderr.write(`lab down took ${Date.now() - t0} ms\n`);
      const left = await listNamespaces();
      assert.deepEqual(
        foreignNs.filter((n) => !left.includes(n)),
        [],
        'foreign namespaces survive',
      );
      assert.ok(pidAlive(foreign.pid!, 'backend-server'), 'the foreign process survives');
      assert.ok(!r.killed.includes(foreign.pid!));
    } finally {
      foreign.kill('SIGKILL');
      for (const n of foreignNs) await run('ip', ['netns', 'del', n], { allowFail: true });
    }
    assert.equal(r.namespaces.length, 15);
    assert.deepEqual(await labNamespaces(PREFIX), []);
    assert.deepEqual(
      pids.filter((p) => pidAlive(p)),
      [],
    );
    assert.equal(existsSync(`${DEFAULT_RUN_ROOT}/${PREFIX}`), false);
    const again = await labDown(PREFIX);
    assert.deepEqual(again.killed, []);
    assert.deepEqual(again.namespaces, []);
  });
});

describe('lab down after a crash', { skip: isRoot ? false : 'needs root', timeout: 300_000 }, () => {
  after(async () => {
    await labDown(CRASH_PREFIX);
  });

  test('a lab process killed with SIGKILL leaves processes running (also its control plane); labDown removes them all', async () => {
    await labDown(CRASH_PREFIX);
    const topology = fileURLToPath(new URL('../../src/lab/topology.ts', import.meta.url));
    const controlPlane = fileURLToPath(new URL('../../src/lab/control-plane.ts', import.meta.url));
    // The child builds a small lab with its control plane (as `sluice lab up` does), then kills itself without
    // cleaning up.
    const code = `
      import { labUp } from ${JSON.stringify(topology)};
      import { startControlPlane } from ${JSON.stringify(controlPlane)};
      const lab = await labUp({ prefix: ${JSON.stringify(CRASH_PREFIX)}, gateways: 1, hosts: 1, backendsPerHost: 1, clients: 1 }, { probe: false });
      await startControlPlane(lab, { planners: 1 });
      process.kill(process.pid, 'SIGKILL');
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      stdio: ['ignore', 'ignore', 'pipe'],
      cwd: fileURLToPath(new URL('../..', import.meta.url)),
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const signal = await new Promise<string | null>((res) => child.on('exit', (_c, s) => res(s)));
    assert.equal(signal, 'SIGKILL', `child did not crash as planned: ${stderr}`);

    const runDir = `${DEFAULT_RUN_ROOT}/${CRASH_PREFIX}`;
    const files = pidFilesUnder(runDir);
    const pids = files.map((f) => readPidFile(f)).filter((p): p is number => p !== undefined);
    // 1 gateway + 1 host: 2 ovsdb-server + 2 ovs-vswitchd, 1 backend; the control plane: the store, 1 planner and
    // 2 agents.
    assert.equal(pids.length, 9, `pid files: ${files.join(' ')}`);
    assert.deepEqual(
      files
        .filter((f) => f.includes('/cp/'))
        .map((f) => f.split('/').pop())
        .sort(),
      ['agent-gw1.pid', 'agent-host1.pid', 'planner-a.pid', 'store.pid'],
    );
    for (const p of pids) assert.ok(pidAlive(p), `pid ${p} should still run after the crash`);
    assert.equal((await labNamespaces(CRASH_PREFIX)).length, 1 + 1 + 1 + 1 + 1 + 1);
    assert.match(readFileSync(`${runDir}/lab.json`, 'utf8'), /"state": "up"/);

    const r = await labDown(CRASH_PREFIX);
    assert.equal(r.killed.length, 9);
    for (const p of pids) assert.equal(pidAlive(p), false, `pid ${p} survived labDown`);
    assert.deepEqual(await labNamespaces(CRASH_PREFIX), []);
    // Idempotent.
    const again = await labDown(CRASH_PREFIX);
    assert.deepEqual([again.killed.length, again.namespaces.length], [0, 0]);
    // The other lab prefix (slt-lab-) pattern does not match slt-labx- names and vice versa.
    assert.equal(labNamespacePattern('slt-lab-').test('slt-labx-gw1'), false);
    const { stdout } = await run('ip', ['netns', 'list']);
    assert.doesNotMatch(stdout, /slt-labx-/);
  });
});

describe('lab up --config (the real CLI)', { skip: isRoot ? false : 'needs root', timeout: 300_000 }, () => {
  let dir: string;
  before(async () => {
    await labDown(FILE_PREFIX); // leftovers of an earlier crashed run of this very test only
    dir = mkdtempSync(join(tmpdir(), 'sluice-lab-config-'));
  });
  after(async () => {
    await labDown(FILE_PREFIX);
    rmSync(dir, { recursive: true, force: true });
  });

  test('a bad file: exit 2, every problem with its path, nothing built', async () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(
      file,
      [
        'vips:',
        '  - { name: shop, vip: 203.0.113.300, port: 8080, backends: [host1-b1, host9-b1] }',
        '  - { name: shop, vip: 203.0.113.31, port: 0, backends: [] }',
      ].join('\n'),
    );
    const r = await execSluice([
      'lab',
      'up',
      '--config',
      file,
      '--no-control-plane',
      '--prefix',
      FILE_PREFIX,
    ]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /invalid lab config .*: 5 problems \[SLUICE_E_CONFIG_INVALID\]/);
    for (const path of [
      'vips[0].vip',
      'vips[0].backends[1]',
      'vips[1].name',
      'vips[1].port',
      'vips[1].backends',
    ])
      assert.ok(r.stderr.includes(`\n  ${path}: `), `${path} missing in:\n${r.stderr}`);
    assert.match(r.stderr, /vips\[0\]\.backends\[1\]: unknown backend host9-b1/);
    assert.deepEqual(await labNamespaces(FILE_PREFIX), []);
    assert.equal(existsSync(`${DEFAULT_RUN_ROOT}/${FILE_PREFIX}`), false);
  });

  test('a VIP from the file that is not a default (shop 203.0.113.30:8080 -> host1-b1, host2-b1) greets a client through the ECMP router', async () => {
    // hosts: 1 in the file, --hosts 2 on the command line: the typed flag wins (else host2-b1 would be unknown).
    const file = join(dir, 'lab.yaml');
    writeFileSync(
      file,
      [
        'gateways: 2',
        'hosts: 1',
        'backendsPerHost: 1',
        'clients: 1',
        'vips:',
        '  - name: shop',
        '    vip: 203.0.113.30',
        '    port: 8080',
        '    backends: [host1-b1, host2-b1]',
      ].join('\n'),
    );
    const t0 = Date.now();
    const up = await execSluice([
      'lab',
      'up',
      '-f',
      file,
      '--hosts',
      '2',
      '--no-control-plane',
      '--prefix',
      FILE_PREFIX,
    ]);
    process.stderr.write(`sluice lab up --config took ${Date.now() - t0} ms\n`);
    assert.equal(up.code, 0, up.stderr);
    assert.match(up.stdout, /VIP shop 203\.0\.113\.30 tcp\/8080 -> host1-b1, host2-b1/);
    assert.doesNotMatch(up.stdout, /VIP (web|api) /);
    assert.equal((await labNamespaces(FILE_PREFIX)).length, 1 + 1 + 2 + 2 + 2 + 1);

    const status = await execSluice(['lab', 'status', '--prefix', FILE_PREFIX]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /\n {2}shop 203\.0\.113\.30 tcp\/8080 -> host1-b1, host2-b1\n/);
    assert.match(status.stdout, /203\.0\.113\.30 -> gw1, gw2/);

    // The lab's derived sluice config (what the control plane would get) has the file's VIP; programmed directly.
    const lab = attachLab(FILE_PREFIX);
    const config = lab.sluiceConfig();
    assert.deepEqual(
      config.loadBalancers.map((lb) => [
        lb.name,
        lb.vip,
        lb.ports.join(','),
        lb.backends.map((b) => `${b.address}:${b.port}`).join(' '),
      ]),
      [['shop', '203.0.113.30', '8080', '10.0.1.11:80 10.0.2.11:80']],
    );
    const ctl = new LabController(lab);
    await ctl.start(config);
    const t = await startTraffic(lab, {
      vip: '203.0.113.30',
      port: 8080,
      count: 20,
      rate: 50,
      expectBackends: ['host1-b1', 'host2-b1'],
    });
    try {
      await t.waitOpened(20, 30_000);
      const c = await t.report();
      assert.equal(c.failed, 0, JSON.stringify(t.failedEvents()));
      assert.equal(c.broken, 0, JSON.stringify(t.brokenEvents()));
      // Every greeting came from one of the VIP's two backends.
      assert.deepEqual(
        Object.keys(c.perBackend).filter((b) => !['host1-b1', 'host2-b1'].includes(b)),
        [],
      );
      assert.equal(
        Object.values(c.perBackend).reduce((n, b) => n + b.opened, 0),
        20,
      );
      const s = await t.stop();
      assert.equal(s.closed, 20);
    } finally {
      await t.kill();
    }

    const down = await execSluice(['lab', 'down', '--prefix', FILE_PREFIX]);
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual(await labNamespaces(FILE_PREFIX), []);
  });
});
