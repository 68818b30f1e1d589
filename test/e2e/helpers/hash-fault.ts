// A gateway that hashes differently from the others and from the model, for the negative controls of fields mode
// and the hosts' live slot audit: its CLASSIFY flows' `multipath` re-issued with another basis (a seed). Two ways:
// - in place (same table, priority, match and cookie: add-flow replaces sluice's own flows), which the node's agent
//   would restore at its next full reconcile (lb-skew runs without agents);
// - as flows sluice does not own (FOREIGN_COOKIE, one priority above sluice's): what another controller or an
//   operator's stray flow on a real gateway does. The agent never touches flows it does not own (src/openflow/
//   applier.ts), so the fault stays until `removeForeignFlows`.

import { PRIO, T } from '../../../src/compile/registry.ts';
import type { LabNode } from '../../../src/lab/node.ts';

/** The cookie of the foreign flows (outside sluice's cookie tag, src/compile/registry.ts isSluiceCookie). */
export const FOREIGN_COOKIE = '0xbad5eed';

/** The gateway's fields-mode hash (basis 0, src/compile/gateway.ts) as it appears in a flow dump. */
const MODEL_HASH = 'multipath(symmetric_l3l4+udp,0,';

/** Re-issues `gw`'s fields-mode CLASSIFY flows with hash basis `basis`; returns how many. `foreign`: as flows it does
 *  not own, above sluice's (else in place). Throws if the gateway has none (not in fields mode). */
export async function reseedGateway(
  gw: LabNode,
  basis: number,
  how: 'in-place' | 'foreign',
): Promise<number> {
  const dump = (await gw.ofctl('br-int', ['--no-stats', 'dump-flows', `table=${T.CLASSIFY}`])).stdout;
  const seeded = dump
    .split('\n')
    .filter((l) => l.includes(MODEL_HASH))
    .map((l) => l.trim().replace(MODEL_HASH, `multipath(symmetric_l3l4+udp,${basis},`))
    .map((l) =>
      how === 'in-place'
        ? l
        : l
            .replace(/cookie=0x[0-9a-f]+/, `cookie=${FOREIGN_COOKIE}`)
            .replace(`priority=${PRIO.NORMAL},`, `priority=${PRIO.NORMAL + 1},`),
    );
  if (seeded.length === 0) throw new Error(`${gw.name} has no fields-mode multipath flows to reseed`);
  await gw.ofctl('br-int', ['add-flows', '-'], { input: `${seeded.join('\n')}\n` });
  return seeded.length;
}

/** Deletes the flows `reseedGateway(..., 'foreign')` added. */
export async function removeForeignFlows(gw: LabNode): Promise<void> {
  await gw.ofctl('br-int', ['del-flows', `cookie=${FOREIGN_COOKIE}/-1`]);
}
