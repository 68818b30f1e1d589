// The status page's second-chance counters (src/web/page-model.ts) from Node_Heartbeat rows in a Replica built here
// (no store): summed over hosts per load balancer; a malformed report is ignored, never fatal. The routing cell of a
// node, with the continuous hash audit's reason when that keeps a gateway out.

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import type { JsRow } from '../../src/ovsdb/protocol.ts';
import { Replica } from '../../src/ovsdb/replica.ts';
import { routingCell, secondChanceCounts } from '../../src/web/page-model.ts';

let n = 0;
function nodeHeartbeat(node: string, ids: [string, string][]): JsRow {
  n++;
  return {
    _uuid: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
    node,
    heartbeat_at: 1,
    applied_generation: 1,
    applied_cfg: 1,
    applied_at: 1,
    error: undefined,
    external_ids: new Map(ids),
  } as unknown as JsRow;
}

test('second-chance packets per load balancer are summed over the hosts that report them', () => {
  const r = new Replica();
  r.replace(
    new Map([
      [
        'Node_Heartbeat',
        new Map([
          ['u1', nodeHeartbeat('host1', [['second_chance_packets', '{"web":7,"api":1}']])],
          ['u2', nodeHeartbeat('host2', [['second_chance_packets', '{"web":5}']])],
          ['u3', nodeHeartbeat('host3', [['second_chance_packets', 'not json']])],
          ['u4', nodeHeartbeat('host4', [['second_chance_packets', '{"web":"9","api":null}']])],
          ['u5', nodeHeartbeat('gw1', [['role', 'gateway']])],
        ]),
      ],
    ]),
  );
  assert.deepEqual([...secondChanceCounts(r)].sort(), [
    ['api', 1],
    ['web', 12],
  ]);
});

test("a gateway's routing cell names the hash audit's reason when that keeps it withdrawn", () => {
  const why = 'CANNOT AGREE: hashMode dp_hash on the system datapath cannot agree: per-boot seed';
  assert.equal(routingCell('host', null, null), 'n/a');
  assert.equal(routingCell('gateway', null, 'ok (dp_hash on netdev)'), 'announced');
  assert.equal(routingCell('gateway', 'agent', why), `withdrawn (by its agent): hash ${why}`);
  assert.equal(routingCell('gateway', 'agent', 'ok (dp_hash on netdev)'), 'withdrawn (by its agent)');
  assert.equal(routingCell('gateway', 'planner', why), 'fenced (planner)');
});
