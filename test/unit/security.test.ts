// The bad-input and hostile-input suite (docs/security.md): one block per finding, each case written so
// it failed before its fix. Unit level: the planner's core with a FAKE store (hand-made StoreViews), hook commands
// through the real /bin/sh in a temp dir. The real-store and real-OVS cases are in test/e2e/security.test.ts.

import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runHookCommand } from '../../src/hook-command.ts';
import { labEcmpCommand, labFenceTemplate, shellQuote } from '../../src/lab/ecmp.ts';
import type { Lab } from '../../src/lab/topology.ts';
import { OvsdbClient } from '../../src/ovsdb/client.ts';
import { type DesiredDoc, type NodeStatusView, PlannerCore, type StoreView } from '../../src/planner/core.ts';

const dir = mkdtempSync(join(tmpdir(), 'sluice-security-'));
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
    nodes: [
      { name: gw, role: 'gateway', tunnelIp: '192.168.100.1' },
      { name: 'gw2', role: 'gateway', tunnelIp: '192.168.100.2' },
      { name: 'h1', role: 'host', tunnelIp: '192.168.100.11' },
    ],
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
      let buf = '';
      sock.on('data', (chunk) => {
        buf += chunk.toString();
        for (;;) {
          const end = jsonEnd(buf);
          if (end < 0) return;
          const msg = JSON.parse(buf.slice(0, end));
          buf = buf.slice(end);
          const result =
            msg.method === 'get_schema'
              ? SCHEMA
              : msg.method === 'lock'
                ? { locked: true }
                : msg.method === 'echo'
                  ? msg.params
                  : {};
          sock.write(JSON.stringify({ id: msg.id, result, error: null }));
        }
      });
    });
    servers.push(server);
    return new Promise((resolve) => server.listen(path, () => resolve({ accepted: () => accepted })));
  }
  /** End of the first whole JSON object in `s` (the client writes whole messages), or -1. */
  function jsonEnd(s: string): number {
    let depth = 0;
    let inStr = false;
    for (let i = 0; i < s.length; i++) {
      const ch = s[i];
      if (inStr) {
        if (ch === '\\') i++;
        else if (ch === '"') inStr = false;
      } else if (ch === '"') inStr = true;
      else if (ch === '{') depth++;
      else if (ch === '}' && --depth === 0) return i + 1;
    }
    return -1;
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
