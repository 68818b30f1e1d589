// Unit tests of the host agent's live slot audit (src/agent/live-audit.ts): FAKE conntrack entries, made up here
// with marks from the model's own hash (agreeing) or from a shifted one (a gateway that hashes differently). The
// e2e test on real traffic is in test/e2e/lb-skew.test.ts (fields mode, gw2 under another seed).

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { Gauge, Registry } from 'prom-client';
import {
  formatLiveAudit,
  LiveSlotAudit,
  MODE_CHANGE_GRACE_MS,
  PeriodicSlotAudit,
} from '../../src/agent/live-audit.ts';
import type { CtEntry } from '../../src/agent/node-ops.ts';
import { initialGeneration } from '../../src/cli/explain.ts';
import { readConfigFile } from '../../src/cli/store-commands.ts';
import { lbIds } from '../../src/compile/registry.ts';
import { tupleHash } from '../../src/explain.ts';
import type { HashMode } from '../../src/model/types.ts';
import {
  agentMarksOp,
  fenceMarks,
  heartbeatOps,
  type NodeHeartbeatRow,
  NodeHeartbeatTable,
  replicaOf,
  SLOT_AUDIT_KEY,
} from '../../src/store/db/index.ts';
import { hashWarnings, type NodeReport } from '../../src/store/operator.ts';
import { slotAuditWarning } from '../../src/web/page-model.ts';

const config = readConfigFile('examples/lb.yaml'); // dp_hash, slotBits 8: web's pool has 256 slots
const generation = initialGeneration(config);
const webId = lbIds(config.loadBalancers.map((l) => l.name)).get('web')!;

/** `n` live connections to web, each committed in `slotOf(hash)` where hash is the model's in `mode`. */
function entries(
  n: number,
  slotOf = (h: number) => h & 0xff,
  opts: { mode?: HashMode; sport0?: number; state?: string } = {},
): CtEntry[] {
  return Array.from({ length: n }, (_, i) => {
    const tuple = {
      proto: 'tcp' as const,
      src: '198.51.100.7',
      sport: (opts.sport0 ?? 20000) + i,
      dst: '203.0.113.10',
      dport: 80,
    };
    const h = tupleHash(opts.mode ?? config.hashMode, tuple);
    assert.ok(h.known);
    return {
      proto: 'tcp',
      origSrc: tuple.src,
      origDst: tuple.dst,
      origSport: tuple.sport,
      origDport: 80,
      replySrc: '10.0.1.11',
      replySport: 8080,
      zone: 1,
      mark: ((webId << 16) | slotOf(h.hash)) >>> 0,
      state: opts.state ?? 'ESTABLISHED',
    };
  });
}

/** A gateway that hashes differently: never the model's slot at any bit count (see slotAgrees). */
const shifted = (h: number) => ((h & 0xff) + 1) & 0xff;

test('connections committed in the model slot agree; the summary says ok', () => {
  const s = new LiveSlotAudit().run(config, generation, entries(40), 0);
  assert.equal(s.state, 'ok');
  assert.deepEqual(s.perLb.get('web'), { agree: 40, disagree: 0, unknown: 0, example: undefined });
  assert.equal(formatLiveAudit(s), 'ok: 40 connections agree with the model');
});

test('a gateway hashing differently is flagged per load balancer, with an example 5-tuple', () => {
  const s = new LiveSlotAudit().run(
    config,
    generation,
    [...entries(30), ...entries(10, shifted, { sport0: 30000 })],
    0,
  );
  assert.equal(s.state, 'disagree');
  const web = s.perLb.get('web')!;
  assert.equal(web.agree, 30);
  assert.equal(web.disagree, 10);
  const text = formatLiveAudit(s);
  assert.match(
    text,
    /^DISAGREE: web 10 of 40 connections in another slot than the model's \(e\.g\. tcp 198\.51\.100\.7:30000 -> 203\.0\.113\.10:80 committed in slot \d+, model slot \d+\)$/,
  );
  // `sluice status` and the status page name the host, the LB, the count and the example.
  const host: NodeReport = {
    name: 'host1',
    role: 'host',
    desired: true,
    appliedGeneration: 1,
    appliedCfg: 1,
    lag: 0,
    heartbeatAgeMs: 100,
    fenced: false,
    fencedBy: null,
    error: null,
    routing: null,
    hashAgreement: null,
    slotAudit: text,
  };
  const [w] = hashWarnings([
    host,
    { ...host, name: 'host2', slotAudit: 'ok: 3 connections agree with the model' },
  ]);
  assert.match(
    w!,
    /^WARNING host1: a gateway's hash disagrees with the model: web 10 of 40 .*198\.51\.100\.7:30000/,
  );
  assert.equal(hashWarnings([{ ...host, slotAudit: 'ok: 3 connections agree with the model' }]).length, 0);
  assert.match(slotAuditWarning(text)!, /^WARNING: .* web 10 of 40/);
  assert.equal(slotAuditWarning('ok: 1 connections agree with the model'), null);
});

/** An audit past its first run's grace for the other hash mode (see the restart test): at 4 slot bits, 1 in 16 of
 *  a shifted gateway's connections would agree with the other mode by chance. */
function started(): LiveSlotAudit {
  const a = new LiveSlotAudit();
  a.run(config, generation, [], 0);
  return a;
}
const AFTER_START = MODE_CHANGE_GRACE_MS;

test('a connection committed before its pool grew (fewer slot bits) agrees; any other slot does not', () => {
  // The config's floor is 4 bits; the pool has 8: a slot of the 5-bit table is accepted.
  const floor4 = { ...config, slotBits: 4 };
  const s = started().run(
    floor4,
    generation,
    entries(20, (h) => h & 31),
    AFTER_START,
  );
  assert.equal(s.state, 'ok');
  const bad = started().run(floor4, generation, entries(20, shifted), AFTER_START);
  assert.equal(bad.perLb.get('web')!.disagree, 20);
  // Without the floor below the pool, the 5-bit slots are wrong for the 8-bit table (most of them).
  const strict = started().run(
    config,
    generation,
    entries(20, (h) => h & 31),
    AFTER_START,
  );
  assert.ok(strict.perLb.get('web')!.disagree > 10);
});

test('dp_hash on a datapath whose hash cannot be known: unknown, never a disagreement', () => {
  const s = new LiveSlotAudit('system').run(config, generation, entries(5, shifted), 0);
  assert.equal(s.state, 'unknown');
  assert.deepEqual(s.perLb.get('web'), { agree: 0, disagree: 0, unknown: 5, example: undefined });
  assert.match(formatLiveAudit(s), /^unknown: 5 connections not checked: the kernel datapath seeds/);
});

test('only live connections count: a closing or half-open entry is not audited', () => {
  const s = new LiveSlotAudit().run(
    config,
    generation,
    [...entries(3, shifted, { state: 'TIME_WAIT' }), ...entries(2, shifted, { state: 'SYN_SENT' })],
    0,
  );
  assert.equal(s.state, 'ok');
  assert.equal(s.perLb.size, 0);
});

test('after a hash-mode change, connections of the old mode are accepted; new ones must agree with the new', () => {
  const a = new LiveSlotAudit();
  const old = entries(10, undefined, { mode: 'dp_hash' });
  assert.equal(a.run(config, generation, old, 0).state, 'ok');
  const fields = { ...config, hashMode: 'fields' as const };
  // Within the grace the gateways may still hash in the old mode: old-mode slots are accepted for any connection.
  const mixed = [...old, ...entries(5, undefined, { mode: 'fields', sport0: 40000 })];
  const s1 = a.run(fields, generation, mixed, 1000);
  assert.equal(s1.state, 'ok');
  assert.equal(s1.perLb.get('web')!.agree, 15);
  // Past the grace: the old connections still live are accepted, a new connection in an old-mode slot is not.
  const late = entries(1, undefined, { mode: 'dp_hash', sport0: 50000 });
  const t = MODE_CHANGE_GRACE_MS + 1000;
  assert.equal(a.run(fields, generation, mixed, t).state, 'ok');
  const s2 = a.run(fields, generation, [...mixed, ...late], t + 1000);
  assert.equal(s2.state, 'disagree');
  assert.equal(s2.perLb.get('web')!.example?.tuple.sport, 50000);
  // A gateway under another seed in the new mode is flagged within the grace too.
  const b = new LiveSlotAudit();
  b.run(config, generation, [], 0);
  const seeded = entries(20, shifted, { mode: 'fields', sport0: 60000 });
  assert.ok(b.run(fields, generation, seeded, 1000).perLb.get('web')!.disagree > 15);
});

test('an agent restarted after a hash-mode change grants the old mode the same grace', () => {
  // Its first run: fields mode, connections committed under dp_hash before the change it did not see.
  const fields = { ...config, hashMode: 'fields' as const };
  const a = new LiveSlotAudit();
  const old = entries(10, undefined, { mode: 'dp_hash' });
  const s0 = a.run(fields, generation, old, 0);
  assert.equal(s0.state, 'ok');
  assert.equal(s0.perLb.get('web')!.agree, 10);
  // Past the grace the ones live then stay accepted; a new connection in a dp_hash slot is flagged.
  const t = MODE_CHANGE_GRACE_MS + 1000;
  assert.equal(a.run(fields, generation, old, t).state, 'ok');
  const late = entries(1, undefined, { mode: 'dp_hash', sport0: 50000 });
  const s1 = a.run(fields, generation, [...old, ...late], t + 1000);
  assert.equal(s1.state, 'disagree');
  assert.equal(s1.perLb.get('web')!.disagree, 1);
  // A gateway under another seed is flagged at the first run all the same.
  const b = new LiveSlotAudit();
  assert.ok(
    b.run(fields, generation, entries(20, shifted, { mode: 'fields' }), 0).perLb.get('web')!.disagree > 15,
  );
});

test('the periodic audit runs every everyMs (0 = off) and sets the metric per load balancer and verdict', async () => {
  const registry = new Registry();
  const gauge = new Gauge({ name: 'g', help: 'g', labelNames: ['lb', 'verdict'], registers: [registry] });
  const p = new PeriodicSlotAudit(10_000, gauge);
  const conns = [...entries(7), ...entries(3, shifted, { sport0: 30000 })];
  assert.ok(p.maybeRun(config, generation, conns, 100_000) !== undefined);
  assert.equal(p.maybeRun(config, generation, conns, 105_000), undefined, 'not again before 10 s');
  assert.ok(p.maybeRun(config, generation, conns, 110_000) !== undefined);
  const text = await registry.metrics();
  assert.match(text, /^g\{lb="web",verdict="agree"\} 7$/m);
  assert.match(text, /^g\{lb="web",verdict="disagree"\} 3$/m);
  assert.match(text, /^g\{lb="web",verdict="unknown"\} 0$/m);
  assert.match(p.text!, /^DISAGREE: web 3 of 10/);
  const off = new PeriodicSlotAudit(0, gauge);
  assert.equal(off.maybeRun(config, generation, conns, 100_000), undefined);
  assert.equal(off.text, undefined);
});

test("the host's summary travels in its heartbeat's marks (Node_Heartbeat SLOT_AUDIT_KEY), replaced each beat", () => {
  const text = "DISAGREE: web 1 of 2 connections in another slot than the model's (e.g. ...)";
  const beat: NodeHeartbeatRow = {
    _uuid: 'b1',
    node: 'host1',
    heartbeat_at: 1,
    applied_generation: 0,
    applied_cfg: 0,
    applied_at: 0,
    error: undefined,
    external_ids: new Map(),
  };
  const current = replicaOf([[NodeHeartbeatTable as never, [beat as never]]]);
  const ops = heartbeatOps(current, 'host1', 2, { role: 'host', slotAudit: text });
  const json = JSON.stringify(ops);
  assert.equal(json.split(`"${SLOT_AUDIT_KEY}"`).length - 1, 2, 'deleted, then inserted with the new text');
  assert.ok(json.includes(JSON.stringify(text)));
  const none = JSON.stringify(heartbeatOps(current, 'host1', 3, { role: 'gateway' }));
  assert.ok(!none.includes(SLOT_AUDIT_KEY), 'a gateway leaves the key alone');
  // The plan database's marks never carry it (they are written only when a fence changes).
  assert.ok(
    !JSON.stringify(
      agentMarksOp('host1', { fenced: false, role: 'host', clearFenceRecords: false }),
    ).includes(SLOT_AUDIT_KEY),
  );
  const row = { external_ids: new Map([[SLOT_AUDIT_KEY, text]]) } as unknown as NodeHeartbeatRow;
  assert.equal(fenceMarks(undefined, row).slotAudit, text);
});
