// Simulator building blocks: ECMP models and their exact movement, the stand-in hashes, OVS select-group
// picks, trace-file parsing and the CLI's trace loading. Pure and fast.

import * as assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { SluiceError } from '../../src/model/errors.ts';
import { listScenarios, loadTrace } from '../../src/sim/cli.ts';
import { Ecmp, ecmpMovedShare, thresholdBounds } from '../../src/sim/ecmp.ts';
import { dpHashPick, hrwPick } from '../../src/sim/engine.ts';
import { Rng, tupleHash } from '../../src/sim/hash.ts';
import { parseTrace } from '../../src/sim/trace.ts';

function measured(mode: 'hash-threshold' | 'modulo', before: number[], after: number[], n = 200_000): number {
  const a = new Ecmp(mode, before);
  const b = new Ecmp(mode, after);
  const rng = new Rng(42);
  let moved = 0;
  for (let i = 0; i < n; i++) {
    const h = rng.u32();
    if (a.pick(h) !== b.pick(h)) moved++;
  }
  return moved / n;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

describe('sim: ECMP', () => {
  it('hash-threshold picks the first next hop whose upper bound holds the 31-bit hash (Linux)', () => {
    const e = new Ecmp('hash-threshold', [10, 11, 12]);
    const ub = thresholdBounds(3);
    const rng = new Rng(1);
    for (let i = 0; i < 10_000; i++) {
      const h = rng.u32();
      const h31 = h >>> 1;
      const want = ub.findIndex((u) => h31 <= u);
      assert.equal(e.index(h), want);
    }
    assert.equal(e.pick(0), 10);
    assert.equal(e.pick(0xffffffff), 12);
  });

  it('hash-threshold moves half the flows when a next hop is appended, a quarter for a middle removal', () => {
    assert.ok(Math.abs(ecmpMovedShare('hash-threshold', range(100), range(101)) - 0.5) < 1e-6);
    const mid = range(100).filter((g) => g !== 50);
    const exact = ecmpMovedShare('hash-threshold', range(100), mid);
    assert.ok(exact > 0.25 && exact < 0.26, `middle removal ${exact}`);
    // Far more than the 1/N a consistent next-hop table would move.
    assert.ok(exact > 20 / 100);
  });

  it('modulo-N moves almost every flow on any change', () => {
    const exact = ecmpMovedShare('modulo', range(100), range(99));
    assert.ok(Math.abs(exact - 0.99) < 0.001, `modulo ${exact}`);
  });

  it('the exact moved share matches the share measured on random hashes', () => {
    const cases: [number[], number[]][] = [
      [range(8), range(9)],
      [range(8), range(8).filter((g) => g !== 3)],
      [range(7), range(7).slice(1)],
    ];
    for (const mode of ['hash-threshold', 'modulo'] as const) {
      for (const [a, b] of cases) {
        const ex = ecmpMovedShare(mode, a, b);
        const me = measured(mode, a, b);
        assert.ok(Math.abs(ex - me) < 0.006, `${mode} ${a.length}->${b.length}: exact ${ex} measured ${me}`);
      }
    }
    assert.equal(ecmpMovedShare('hash-threshold', range(5), range(5)), 0);
  });
});

describe('sim: hashes and select groups', () => {
  it('tupleHash is deterministic, seed-dependent and spreads low bits evenly', () => {
    assert.equal(tupleHash(1, 2, 3, 4, 6, 9), tupleHash(1, 2, 3, 4, 6, 9));
    assert.notEqual(tupleHash(1, 2, 3, 4, 6, 9), tupleHash(1, 2, 3, 4, 6, 10));
    assert.notEqual(tupleHash(1, 2, 3, 4, 6, 9), tupleHash(1, 2, 4, 3, 6, 9));
    const buckets = new Int32Array(16);
    for (let p = 0; p < 16_000; p++) buckets[tupleHash(0x0a000001, 0x64400000, 1024 + p, 443, 6, 1) & 15]++;
    for (const b of buckets) assert.ok(b > 800 && b < 1200, `bucket ${b}`);
  });

  it('dpHashPick: OVS dp_hash map of max(16, 2^ceil(log2 n)) values filled round-robin', () => {
    const sel = Int32Array.from([100, 101, 102]);
    for (let h = 0; h < 64; h++) assert.equal(dpHashPick(sel, h), sel[(h & 15) % 3]);
    const big = Int32Array.from(range(20), (i) => 1000 + i);
    for (let h = 0; h < 64; h++) assert.equal(dpHashPick(big, h), big[(h & 31) % 20]);
    assert.equal(dpHashPick(new Int32Array(0), 5), 0xffff);
  });

  it('hrwPick moves only the flows won by an added bucket (rendezvous)', () => {
    const a = Int32Array.from(range(10));
    const b = Int32Array.from([...range(10), 77]);
    const rng = new Rng(3);
    let moved = 0;
    for (let i = 0; i < 20_000; i++) {
      const h = rng.u32();
      const x = hrwPick(a, h);
      const y = hrwPick(b, h);
      if (x !== y) {
        moved++;
        assert.equal(y, 77, 'a flow moves only to the new bucket');
      }
    }
    assert.ok(moved > 20_000 / 11 - 300 && moved < 20_000 / 11 + 300, `moved ${moved}`);
  });
});

describe('sim: traces', () => {
  const file = {
    name: 'mine',
    durationSeconds: 100,
    topology: { connections: 1000 },
    events: [
      { at: 50, type: 'backend-fail', backend: 2 },
      { at: 10, type: 'backend-add', vip: 0 },
    ],
  };

  it('parses a trace file on top of a scale and sorts events', () => {
    const t = parseTrace(file, 'small');
    assert.equal(t.topology.connections, 1000);
    assert.equal(t.topology.gateways, 8);
    assert.deepEqual(
      t.events.map((e) => e.at),
      [10, 50],
    );
    assert.equal(t.ecmp, 'hash-threshold');
  });

  it('rejects bad traces with every problem and its path', () => {
    const bad = { ...file, events: [{ at: 500, type: 'gateway-crash', gateway: 99 }] };
    assert.throws(
      () => parseTrace(bad),
      (e: unknown) => e instanceof SluiceError && e.issues.length === 2 && e.issues[0].path === 'events.0',
    );
    assert.throws(() => parseTrace({ ...file, events: [{ at: 1, type: 'explode' }] }), SluiceError);
  });

  it('loadTrace reads a file or a named scenario', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-sim-'));
    try {
      const p = join(dir, 't.json');
      writeFileSync(p, JSON.stringify(file));
      assert.equal(loadTrace(undefined, { trace: p }).name, 'mine');
      writeFileSync(p, '{not json');
      assert.throws(() => loadTrace(undefined, { trace: p }), SluiceError);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    assert.equal(loadTrace('backend-add', { scale: 'full' }).topology.connections, 1_000_000);
    assert.throws(() => loadTrace('nope', {}), SluiceError);
    assert.throws(() => loadTrace('churn', { scale: 'huge' }), SluiceError);
    assert.match(listScenarios(), /churn/);
  });
});
