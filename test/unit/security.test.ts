// The bad-input and hostile-input suite (docs/security.md): one block per finding, each case written so
// it failed before its fix. Unit level: the planner's core with a FAKE store (hand-made StoreViews), hook commands
// through the real /bin/sh in a temp dir. The real-store and real-OVS cases are in test/e2e/security.test.ts.

import * as assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { checkNodeFacts } from '../../src/agent/facts.ts';
import { runHookCommand } from '../../src/hook-command.ts';
import { labEcmpCommand, labFenceTemplate, shellQuote } from '../../src/lab/ecmp.ts';
import type { Lab } from '../../src/lab/topology.ts';
import type { SluiceError } from '../../src/model/errors.ts';
import { parseConfigText } from '../../src/model/load.ts';
import { parseConfig, validateConfig } from '../../src/model/schema.ts';
import { OvsdbClient } from '../../src/ovsdb/client.ts';
import type { OvsdbError } from '../../src/ovsdb/errors.ts';
import { PlannerCore } from '../../src/planner/core.ts';
import { configWarnings, formatWarnings } from '../../src/rollout/warnings.ts';
import {
  encodeF64,
  encodeMembers,
  encodeRuns,
  encodeU8,
  encodeU16,
  poolToRow,
  rowToPool,
} from '../../src/store/db/encoding.ts';
import type { DesiredDoc, NodeStatusView, StoreView } from '../../src/store/db/index.ts';
import { testNodes } from '../scenarios/configs.ts';
import { labHost1Facts } from '../scenarios/fake-facts.ts';
import { onJsonMessages } from '../scenarios/json-messages.ts';

const dir = mkdtempSync(join(tmpdir(), 'sluice-security-'));
const BIN = fileURLToPath(new URL('../../src/cli/bin.ts', import.meta.url));
after(() => rmSync(dir, { recursive: true, force: true }));

const HOSTILE = [
  'gw1;echo INJECTED >injected;#',
  '$(touch injected)',
  '`touch injected`',
  "gw1' ; touch injected ; '",
  'gw1\ntouch injected',
  '-n',
];

describe('finding 1: hook commands never paste data into shell text', () => {
  test('a hostile name reaches the hook verbatim as $1, SLUICE_NODE and {node}, and runs nothing else', async () => {
    for (const [i, name] of HOSTILE.entries()) {
      const cwd = mkdtempSync(join(dir, `hook${i}-`));
      const tpl = `cd '${cwd}' && printf '%s' "$1" >arg && printf '%s' "$SLUICE_NODE" >env && printf '%s' {node} >tpl`;
      await runHookCommand(tpl, name);
      assert.equal(readFileSync(join(cwd, 'arg'), 'utf8'), name);
      assert.equal(readFileSync(join(cwd, 'env'), 'utf8'), name);
      assert.equal(readFileSync(join(cwd, 'tpl'), 'utf8'), name);
      assert.equal(existsSync(join(cwd, 'injected')), false, `${JSON.stringify(name)} ran a command`);
    }
  });

  test('a failing hook rejects naming the template and the node', async () => {
    await assert.rejects(runHookCommand('echo nope >&2; exit 3', 'gw1'), /exit 3.*gw1.*nope/s);
  });

  const desired = (gw: string): DesiredDoc => ({
    hashMode: 'dp_hash',
    slotBits: 4,
    nodes: testNodes([gw, 'gw2'], ['h1']),
    loadBalancers: [
      {
        name: 'web',
        vip: '203.0.113.10',
        protocol: 'tcp',
        ports: [80],
        backends: [{ address: '10.0.1.11', host: 'h1', weight: 1, state: 'active' }],
      },
    ],
  });
  const view = (d: DesiredDoc, beat: number): StoreView => ({
    desiredCfg: 1,
    desired: d,
    latest: null,
    latestConfig: undefined,
    gatewayGeneration: 0,
    nodeStatus: new Map(
      d.nodes.map((n) => [
        n.name,
        {
          appliedGeneration: 0,
          heartbeatAt: beat,
          fenced: false,
          plannerFenced: false,
          operatorFenced: false,
          error: undefined,
        },
      ]),
    ),
    reportRound: 0,
    backendHealth: new Map(),
    slotReports: new Map(),
  });

  test('the planner fences only names from the validated desired state', () => {
    for (const name of HOSTILE) {
      const core = new PlannerCore({ leaseMs: 10_000, fencing: true });
      core.observe(view(desired(name), 1), 0);
      // Every gateway silent for 20 s: the store's desired state is invalid (a hostile name), so nothing is fenced.
      core.observe(view(desired(name), 1), 20_000);
      assert.deepEqual(core.toFence(20_000), [], JSON.stringify(name));
      assert.throws(() => core.decide(20_000), /name/);
    }
    // Negative control: the same silence of gw1 with valid names fences it (gw2 keeps beating: fencing both at once
    // would be a majority, which the planner holds).
    const core = new PlannerCore({ leaseMs: 10_000, fencing: true });
    core.observe(view(desired('gw1'), 1), 0);
    for (let t = 1000; t <= 20_000; t += 1000) {
      const v = view(desired('gw1'), 1);
      (v.nodeStatus as Map<string, NodeStatusView>).set('gw2', {
        ...v.nodeStatus.get('gw2')!,
        heartbeatAt: t,
      });
      core.observe(v, t);
    }
    assert.deepEqual(core.toFence(20_000), ['gw1']);
    assert.equal(core.decide(20_000).kind, 'fence');
  });
});

describe('finding 9: lab hygiene', () => {
  // A FAKE lab: only what labEcmpCommand reads; the run directory has a space and a quote in it.
  const runDir = join(dir, "lab run's dir");
  const lab = {
    node: (name: string) => ({ name, role: 'gateway', tunnelIp: '192.168.100.1' }),
    gateways: [{ name: 'gw1' }],
    config: { vips: [{ vip: '203.0.113.10', family: 4 }] },
    facts: { runDir, router: { netns: 'slt-router' } },
  } as unknown as Lab;

  test('the ECMP helper command quotes its path and keeps its lock in the run directory', () => {
    const cmd = labEcmpCommand(lab, 'gw1', 'withdraw');
    assert.match(cmd, /^bash /);
    // What the shell makes of it: print each word instead of running bash.
    const words = execFileSync('/bin/sh', ['-c', `printf '%s\\n' ${cmd.slice('bash '.length)}`], {
      encoding: 'utf8',
    })
      .trimEnd()
      .split('\n');
    assert.equal(words[0], fileURLToPath(new URL('../../scripts/lab-ecmp.sh', import.meta.url)));
    assert.ok(existsSync(words[0]!));
    assert.deepEqual(words.slice(1), [
      `${runDir}/lab-ecmp.lock`,
      'slt-router',
      'withdraw',
      '203.0.113.10=192.168.100.1',
    ]);
    assert.equal(shellQuote("a b'c"), `'a b'\\''c'`);
  });

  test('the fence template names the gateway through $1 only', () => {
    const tpl = labFenceTemplate(lab);
    assert.match(tpl, /^case "\$1" in gw1\) bash /);
    assert.doesNotMatch(tpl, /\{node\}/);
  });
});

describe('finding 2: the OVSDB client never waits forever on a silent member', () => {
  // FAKE servers on unix sockets: `silent` accepts and never answers (what a SIGSTOPped ovsdb-server looks like to
  // a client: the kernel still accepts); `good` answers get_schema, monitor_cond, lock and echo.
  const SCHEMA = { name: 'D', version: '1.0.0', tables: { T: { columns: { name: { type: 'string' } } } } };
  const servers: net.Server[] = [];
  after(() => {
    for (const s of servers) s.close();
  });
  function serve(path: string, answer: boolean): Promise<{ accepted: () => number }> {
    let accepted = 0;
    const server = net.createServer((sock) => {
      accepted++;
      sock.on('error', () => {});
      if (!answer) return;
      onJsonMessages(sock, (msg) => {
        const result =
          msg.method === 'get_schema'
            ? SCHEMA
            : msg.method === 'lock'
              ? { locked: true }
              : msg.method === 'echo'
                ? msg.params
                : {};
        sock.write(JSON.stringify({ id: msg.id, result, error: null }));
      });
    });
    servers.push(server);
    return new Promise((resolve) => server.listen(path, () => resolve({ accepted: () => accepted })));
  }

  for (const [what, opts] of [
    ['the probe (no negotiation deadline)', { probeIntervalMs: 200, negotiateTimeoutMs: 600_000 }],
    ['the negotiation deadline (no probe)', { probeIntervalMs: 0, negotiateTimeoutMs: 500 }],
  ] as const) {
    test(`monitor and lock move past a silent member: ${what}`, async () => {
      const silentPath = join(dir, `silent-${opts.probeIntervalMs}.sock`);
      const goodPath = join(dir, `good-${opts.probeIntervalMs}.sock`);
      const silent = await serve(silentPath, false);
      const good = await serve(goodPath, true);
      const client = new OvsdbClient({
        remotes: [`unix:${silentPath}`, `unix:${goodPath}`],
        backoffInitialMs: 10,
        waitConnectedMs: 10_000,
        ...opts,
      });
      try {
        const m = await client.monitor('D', { T: {} });
        const lock = await client.lock('l');
        assert.equal(client.remote, `unix:${goodPath}`);
        assert.equal(silent.accepted(), 1, 'the silent member was tried first');
        assert.equal(good.accepted(), 1);
        assert.equal(lock.held, true);
        assert.deepEqual(m.replica.rows('T'), []);
      } finally {
        client.close();
      }
    });
  }
});

describe('finding 8: input checks', () => {
  const base = () => ({
    slotBits: 4,
    nodes: [
      { name: 'gw1', role: 'gateway', tunnelIp: '192.168.100.1' },
      { name: 'host1', role: 'host', tunnelIp: '192.168.100.11' },
    ],
    loadBalancers: [
      { name: 'web', vip: '203.0.113.10', ports: [80], backends: [{ address: '10.0.1.11', host: 'host1' }] },
    ],
  });
  const codes = (input: unknown) => {
    const r = validateConfig(input);
    return r.ok ? [] : r.issues.map((i) => `${i.code} ${i.path}`);
  };

  test('a JSON key given twice is a syntax error at the second one', () => {
    const text = '{\n  "slotBits": 4,\n  "nodes": [],\n  "slotBits": 16\n}\n';
    assert.throws(
      () => parseConfigText(text, 'dup.json'),
      (e: SluiceError) =>
        e.code === 'SLUICE_E_CONFIG_PARSE' && /dup\.json:4:3: .*duplicate key "slotBits"/.test(e.message),
    );
    // Nested objects too; the same key in two sibling objects is fine.
    const nested = JSON.stringify(base()).replace('"role":"gateway"', '"role":"gateway","role":"host"');
    assert.throws(() => parseConfigText(nested, 'n.json'), /duplicate key "role"/);
    assert.equal(parseConfigText(JSON.stringify(base()), 'ok.json').nodes.length, 2);
  });

  test('VIPs and backends in 0/8, 240/4, link-local or multicast are refused, by one rule', () => {
    for (const a of [
      '0.1.2.3',
      '240.0.0.1',
      '250.1.1.1',
      '169.254.1.1',
      '224.0.0.5',
      'fe80::1',
      'febf::1',
      'ff02::1',
    ]) {
      const v6 = a.includes(':');
      const vip = base();
      vip.loadBalancers[0]!.vip = a;
      if (v6) vip.loadBalancers[0]!.backends[0]!.address = '2001:db8::1';
      assert.deepEqual(codes(vip), ['SLUICE_E_CONFIG_ADDRESS_UNUSABLE loadBalancers[0].vip'], a);
      const be = base();
      be.loadBalancers[0]!.backends[0]!.address = a;
      if (v6) be.loadBalancers[0]!.vip = '2001:db8::10';
      assert.deepEqual(
        codes(be),
        ['SLUICE_E_CONFIG_ADDRESS_UNUSABLE loadBalancers[0].backends[0].address'],
        a,
      );
    }
    // Neighbours of each range stay valid (negative control).
    for (const a of ['1.0.0.1', '239.255.255.255'.replace('239', '223'), '169.253.1.1', '169.255.1.1']) {
      const c = base();
      c.loadBalancers[0]!.vip = a;
      assert.deepEqual(codes(c), [], a);
    }
    const v6 = base();
    v6.loadBalancers[0]!.vip = 'fec0::1';
    v6.loadBalancers[0]!.backends[0]!.address = '2001:db8::1';
    assert.deepEqual(codes(v6), []);
  });

  test("a backend equal to a VIP (its own or another load balancer's) is refused", () => {
    const own = base();
    own.loadBalancers[0]!.backends.push({ address: '203.0.113.10', host: 'host1' });
    assert.deepEqual(codes(own), ['SLUICE_E_CONFIG_ADDRESS_CONFLICT loadBalancers[0].backends[1].address']);
    const other = base();
    other.loadBalancers.push({
      name: 'api',
      vip: '203.0.113.20',
      ports: [80],
      backends: [{ address: '203.0.113.10', host: 'host1' }],
    });
    assert.deepEqual(codes(other), ['SLUICE_E_CONFIG_ADDRESS_CONFLICT loadBalancers[1].backends[0].address']);
  });

  test('backends that get 0 slots are a warning (one backend of weight 1000 among 100 on 512 slots)', () => {
    const c = base();
    const hundred = (heavy: number) =>
      Array.from({ length: 100 }, (_, i) => ({
        address: `10.0.${1 + (i >> 8)}.${(i & 255) + 1}`,
        host: 'host1',
        weight: i === 0 ? heavy : 1,
      }));
    c.loadBalancers[0]!.backends = hundred(1000);
    // slotBits 4, but 100 backends size this load balancer's table at 2^9 (lbSlotBits: 4 slots a backend).
    const w = configWarnings(parseConfig(c));
    assert.equal(w.length, 1);
    assert.match(w[0]!.message, /^53 of 100 active backends get 0 of 512 slots/);
    assert.match(formatWarnings(w), /^sluice: warning: loadBalancers\[0\] \(web\): 53 of 100/);
    // The same 100 backends with equal weights: 5 or 6 slots each, no warning.
    c.loadBalancers[0]!.backends = hundred(1);
    assert.deepEqual(configWarnings(parseConfig(c)), []);
  });

  // A FAKE facts file content, the lab's host1 as parsed JSON (so a test may set any field to anything), with one
  // field changed at a time.
  const vms = { '10.0.1.11': { ofport: 3, mac: '02:00:0a:00:01:0b' } };
  // biome-ignore lint/suspicious/noExplicitAny: a facts file's content is arbitrary JSON
  const facts = (): any => JSON.parse(JSON.stringify(labHost1Facts(vms)));

  test('a --facts file is checked like facts read from OVS: a newline in router.mac is refused', () => {
    assert.deepEqual(checkNodeFacts(facts(), 'f.json'), facts());
    const bad: [string, (f: ReturnType<typeof facts>) => void, RegExp][] = [
      [
        'router.mac with a flow line',
        (f) => (f.router.mac = '02:00:c0:a8:64:fe\nadd priority=65535,actions=drop'),
        /f\.json: router\.mac: .* is not a MAC address/,
      ],
      ['tunnelIp not IPv4', (f) => (f.tunnelIp = '2001:db8::1'), /tunnelIp: .* is not an IPv4 address/],
      ['bridge name with a space', (f) => (f.bridges.int = 'br-int -O'), /bridges\.int: .* not a valid name/],
      [
        'ofport out of range',
        (f) => (f.ports.geneve = 65535),
        /ports\.geneve: 65535 is not an OpenFlow port/,
      ],
      [
        'vm key not an address',
        (f) => Object.assign(f.vms, { 'x;y': { ofport: 4, mac: '02:00:00:00:00:01' } }),
        /vms\.x;y: not an IP/,
      ],
      ['unknown key', (f) => Object.assign(f, { flows: 'drop' }), /unknown key "flows"/],
      ['role', (f) => (f.role = 'router'), /role: expected gateway or host/],
    ];
    for (const [what, edit, re] of bad) {
      const f = facts();
      edit(f);
      assert.throws(
        () => checkNodeFacts(f, 'f.json'),
        (e: SluiceError) => e.code === 'SLUICE_E_NODE_FACTS' && re.test(e.message),
        what,
      );
    }
  });
});

describe('finding 3: a size budget and compact slot arrays', () => {
  test('a pool row stores second, phase and since as runs: a stable pool at slotBits 16 is primary plus bytes', () => {
    const n = 2 ** 16;
    const members = Array.from({ length: 20 }, (_, i) => ({
      key: `10.0.1.${i + 1}:*`,
      address: `10.0.1.${i + 1}`,
      port: undefined,
      host: 'h1',
    }));
    const pool = {
      lb: 'web',
      bits: 16,
      members,
      primary: Uint16Array.from({ length: n }, (_, s) => s % 20),
      second: new Uint16Array(n).fill(0xffff),
      phase: new Uint8Array(n),
      since: new Float64Array(n),
    };
    const row = poolToRow(pool);
    const bytes = JSON.stringify(row).length;
    // Was 1.1 MB (since alone 0.7 MB): now the primary column (n * 2 bytes, base64) and a few runs.
    assert.ok(bytes < (n * 2 * 4) / 3 + 2000, `${bytes} bytes`);
    assert.ok(row.since.length < 40 && row.second.length < 40 && row.phase.length < 40);
    assert.deepEqual(rowToPool(row), pool);
    // A rollout's slots in phase 1 with their own times round-trip exactly.
    const moving = {
      ...pool,
      second: pool.second.slice(),
      phase: pool.phase.slice(),
      since: pool.since.slice(),
    };
    for (let s = 0; s < n; s += 7)
      [moving.second[s], moving.phase[s], moving.since[s]] = [(s + 1) % 20, 1, 1.7e12 + s];
    assert.deepEqual(rowToPool(poolToRow(moving)), moving);
    // Rows written by older planners (plain base64) still decode.
    const plain = {
      ...row,
      second: encodeU16(pool.second),
      phase: encodeU8(pool.phase),
      since: encodeF64(pool.since),
    };
    assert.deepEqual(rowToPool(plain), pool);
  });

  test('the CLI refuses an oversized config in milliseconds, without a stack trace', async () => {
    const c = {
      slotBits: 16,
      nodes: [
        { name: 'gw1', role: 'gateway', tunnelIp: '192.168.100.1' },
        { name: 'host1', role: 'host', tunnelIp: '192.168.100.11' },
      ],
      loadBalancers: Array.from({ length: 1000 }, (_, i) => ({
        name: `lb${i}`,
        vip: '203.0.113.10',
        ports: [1000 + i],
        backends: [{ address: '10.0.1.11', host: 'host1' }],
      })),
    };
    const file = join(dir, 'big.json');
    writeFileSync(file, JSON.stringify(c));
    const r = spawnSync(process.execPath, ['--import', 'tsx', BIN, 'plan', '-f', file, '--json'], {
      encoding: 'utf8',
    });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /1000 load balancers x 2\^16 slots = 65536000 slots; at most 4194304/);
    assert.match(r.stderr, /SLUICE_E_CONFIG_TOO_LARGE/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'a stack trace');
  });
});

describe('finding 7: a rogue or corrupt Plan_Pool row is refused whole', () => {
  const good = () =>
    poolToRow({
      lb: 'web',
      bits: 4,
      members: [
        { key: '10.0.1.11:*', address: '10.0.1.11', port: undefined, host: 'h1' },
        { key: '10.0.1.12:*', address: '10.0.1.12', port: undefined, host: 'h1' },
      ],
      primary: Uint16Array.from({ length: 16 }, (_, s) => s % 2),
      second: new Uint16Array(16).fill(0xffff),
      phase: new Uint8Array(16),
      since: new Float64Array(16),
    });
  const cases: [string, (r: Record<string, unknown>) => void, RegExp][] = [
    ['bits 40 (a 2^40 allocation)', (r) => (r.bits = 40), /bits 40 is not an integer in 4\.\.16/],
    [
      'an owner that is not a member',
      (r) => (r.primary = encodeU16(Uint16Array.from({ length: 16 }, () => 7))),
      /slot 0 names member 7; the pool has 2/,
    ],
    [
      'a second chance that is not a member',
      (r) => (r.second = encodeRuns(new Uint16Array(16).fill(9), 'u16')),
      /names member 9/,
    ],
    ['an unknown phase', (r) => (r.phase = encodeRuns(new Uint8Array(16).fill(3), 'u8')), /phase 3/],
    ['a NaN time', (r) => (r.since = encodeRuns(new Float64Array(16).fill(Number.NaN), 'f64')), /since NaN/],
    [
      'runs longer than the table',
      (r) => (r.since = encodeRuns(new Float64Array(17), 'f64')),
      /more than 16 values/,
    ],
    [
      'runs shorter than the table',
      (r) => (r.phase = encodeRuns(new Uint8Array(15), 'u8')),
      /15 values, expected 16/,
    ],
    ['members not JSON', (r) => (r.members = '[{'), /not JSON/],
    [
      'duplicate member keys',
      (r) =>
        (r.members = encodeMembers([
          { key: 'a', address: '10.0.1.1', port: undefined, host: 'h' },
          { key: 'a', address: '10.0.1.2', port: undefined, host: 'h' },
        ])),
      /duplicate member key/,
    ],
    ['not base64', (r) => (r.primary = '!!!!'), /not base64/],
  ];
  test('each corruption is an SLUICE_E_OVSDB_VALUE naming the problem; the good row decodes', () => {
    assert.equal(rowToPool(good()).members.length, 2);
    for (const [what, edit, re] of cases) {
      const r = { ...good() } as Record<string, unknown>;
      edit(r);
      assert.throws(
        () => rowToPool(r),
        (e: OvsdbError) => e.code === 'SLUICE_E_OVSDB_VALUE' && re.test(e.message),
        what,
      );
    }
  });
});
