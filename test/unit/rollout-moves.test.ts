// What a generation moves, by name (src/rollout/summary.ts describeMoves / describeGeneration): the words the
// planner's log, `sluice plan --from`, `apply --dry-run`, `rollout status` and the status page use. Pure.

import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parseConfigText } from '../../src/model/load.ts';
import type { Config } from '../../src/model/types.ts';
import { planRollout } from '../../src/rollout/planner.ts';
import { describeGeneration, describeMoves, formatMove } from '../../src/rollout/summary.ts';
import { configDocument } from '../../src/store/config-diff.ts';

const base = parseConfigText(readFileSync('examples/lb.yaml', 'utf8'), 'examples/lb.yaml');

function withWeb(
  config: Config,
  edit: (b: ReturnType<typeof configDocument>['loadBalancers'][number]['backends']) => unknown[],
): Config {
  const doc = configDocument(config);
  const text = JSON.stringify({
    ...doc,
    loadBalancers: doc.loadBalancers.map((lb) =>
      lb.name === 'web' ? { ...lb, backends: edit(lb.backends) } : lb,
    ),
  });
  return parseConfigText(text, '(test)');
}

test('a drain names the backend its slots leave and where they go, phase by phase', () => {
  const drained = withWeb(base, (bs) =>
    bs.map((b) => (b.address === '10.0.1.11' ? { ...b, state: 'draining' } : b)),
  );
  const gens = planRollout(base, drained);
  assert.equal(gens.length, 4);
  const steps = gens.slice(1).map((g, i) => describeGeneration(gens[i], g));
  // 10.0.1.11's 64 slots spread over the four other backends of web.
  for (const [i, phase] of [
    [0, 'phase 1'],
    [1, 'phase 2'],
  ] as const) {
    assert.ok(steps[i]!.length >= 2, steps[i]!.join('; '));
    let total = 0;
    for (const line of steps[i]!) {
      const m = /^web: (\d+) slots 10\.0\.1\.11:8080 -> (10\.0\.\d\.\d+:8080), (phase \d)$/.exec(line);
      assert.ok(m, line);
      assert.notEqual(m[2], '10.0.1.11:8080');
      assert.equal(m[3], phase);
      total += Number(m[1]);
    }
    assert.equal(total, 64, 'every slot of the drained backend named once');
  }
  assert.ok(
    steps[2]!.every((l) =>
      /^web: \d+ slots on 10\.0\.\d\.\d+:8080, second chance 10\.0\.1\.11:8080 dropped$/.test(l),
    ),
    steps[2]!.join('; '),
  );
});

test('a down backend is named as the source of its slots; new and removed load balancers are named', () => {
  const down = withWeb(base, (bs) =>
    bs.map((b) => (b.address === '10.0.2.11' ? { ...b, state: 'down' } : b)),
  );
  const gens = planRollout(base, down);
  const moves = describeMoves(gens[0]!.pools.get('web'), gens[1]!.pools.get('web')!);
  assert.ok(moves.length > 0);
  for (const m of moves) {
    assert.equal(m.from, '10.0.2.11:8080');
    // Never dropped in one step, even when down: a gateway still on the previous generation may send it a SYN.
    assert.equal(m.step, 'phase 1');
  }
  assert.equal(
    moves.reduce((n, m) => n + m.slots, 0),
    64,
  );
  assert.match(formatMove(moves[0]!), /^web: \d+ slots 10\.0\.2\.11:8080 -> 10\.0\.\d\.\d+:8080, phase 1$/);
  assert.equal(
    formatMove({ lb: 'web', from: null, to: '10.0.1.11:80', step: 'at once', slots: 1 }),
    'web: 1 slot (no owner) -> 10.0.1.11:80, at once',
  );

  const noApi = parseConfigText(
    JSON.stringify({
      ...configDocument(base),
      loadBalancers: configDocument(base).loadBalancers.filter((lb) => lb.name !== 'api'),
    }),
    '(test)',
  );
  const g = planRollout(base, noApi);
  assert.deepEqual(describeGeneration(g[0], g.at(-1)!), ['api: removed']);
  assert.deepEqual(describeGeneration(g.at(-1), g[0]!), ['api: new, 256 slots']);
  assert.deepEqual(describeGeneration(g[0], g[0]!), [], 'same plan: nothing moves');
});

test('a grown table names the new size and moves nothing', () => {
  const grown = parseConfigText(JSON.stringify({ ...configDocument(base), slotBits: 9 }), '(test)');
  const gens = planRollout(base, grown);
  const text = gens.slice(1).map((g, i) => describeGeneration(gens[i], g).join('; '));
  assert.ok(
    text.some((t) => t.includes('web: 256 -> 512 slots')),
    text.join(' | '),
  );
  assert.ok(!text.join(' ').includes('->  '), text.join(' | '));
  assert.ok(!/slots? 10\./.test(text[0]!), `growing moves no slot: ${text[0]}`);
});
