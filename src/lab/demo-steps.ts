// The scenarios of `sluice demo`, in the order it runs them. Each is a change (written to the store as the CLI
// writes it, or made by the network around sluice) and its own check of what must hold once it settled; the session
// also counts broken connections, second-chance packets and generations of every step.

import { setTimeout as sleep } from 'node:timers/promises';
import { SluiceError } from '../model/errors.ts';
import { edits } from '../store/operator.ts';
import { startStore } from './control-plane.ts';
import type { DemoScenario, DemoSession } from './demo-session.ts';
import type { Traffic } from './traffic.ts';

const backendAdded: DemoScenario<{ cfg: number }> = {
  name: 'backend added: host2-b2 joins web',
  async run(d) {
    const ip = d.ip('host2-b2');
    const port = d.lab.config.backendPort;
    const cfg = await d.edit(`backend add web ${ip} --host host2 --port ${port}`, (doc) =>
      edits.backendAdd('web', ip, 'host2', port, 1)(doc),
    );
    await d.settled(cfg);
    return { cfg };
  },
  check: (d, { cfg }) =>
    d.plannedCfg() >= cfg
      ? undefined
      : `the latest generation was planned from desired_cfg ${d.plannedCfg()} < ${cfg}`,
};

const backendDrained: DemoScenario<{ newOnDrained: number }> = {
  name: 'backend drained: host1-b1 in web gives up its slots, keeps its connections',
  async run(d) {
    const cfg = await d.edit(`backend drain web ${d.ip('host1-b1')}`, (doc) =>
      edits.backendState('web', d.ip('host1-b1'), 'draining')(doc),
    );
    await d.settled(cfg);
    d.say(`  opening 150 new web connections: none may go to host1-b1`);
    const after = await d.traffic(d.vip('web'), 150);
    const newOnDrained = after.counters().perBackend['host1-b1']?.opened ?? 0;
    d.say(`  new connections on host1-b1: ${newOnDrained}`);
    return { newOnDrained };
  },
  check: (_d, { newOnDrained }) =>
    newOnDrained === 0 ? undefined : `${newOnDrained} new connections went to the drained host1-b1`,
};

/** The drained backend is removed; its old connections are closed so that the planner can let its slots go. */
function drainedRemoved(first: () => Traffic): DemoScenario<{ waits: string[] }> {
  return {
    name: 'drained backend removed once its connections closed',
    async run(d) {
      const cfg = await d.edit(`backend del web ${d.ip('host1-b1')}`, (doc) =>
        edits.backendDel('web', d.ip('host1-b1'))(doc),
      );
      let waits = await d.settled(cfg);
      if (waits.length > 0) {
        d.say('  the planner waits: host1-b1 still holds connections (their slots keep its second chance)');
        await sleep(2000);
        const alive = first().counters().alive;
        d.say(`  closing the ${alive} web connections opened before the drain (they hold host1-b1's)`);
        first().close(alive);
        waits = await d.settled(cfg, { noWaits: true });
        d.say(`  rollout settled at g${d.generation()}: host1-b1 owns no slot`);
      }
      return { waits };
    },
    check: (_d, { waits }) =>
      waits.length === 0 ? undefined : `the planner still waits for connections: ${waits.join('; ')}`,
  };
}

const gatewayLeaves: DemoScenario<{ before: number }> = {
  name: 'gateway gw1 leaves the ECMP set (and comes back)',
  async run(d) {
    const before = d.generation();
    d.say(
      '  maintenance: the router stops sending to gw1 (its VIP routes withdrawn, what its agent does to leave)',
    );
    await d.ecmp('gw1', 'withdraw');
    d.say(`  gw1's connections re-hash to gw2, which runs the same generation (${d.skew()})`);
    await sleep(d.watchMs);
    await d.ecmp('gw1', 'announce');
    return { before };
  },
  check: (d, { before }) =>
    d.generation() === before
      ? undefined
      : `the store changed (g${before} -> g${d.generation()}) for an ECMP move`,
};

const vswitchdKilled: DemoScenario<{ restored: boolean }> = {
  name: "gateway gw2's ovs-vswitchd killed, restarted, its agent restores every flow",
  async run(d) {
    d.say('  gw2 leaves ECMP first (its VIP routes withdrawn), then its switch is killed');
    await d.ecmp('gw2', 'withdraw');
    const pid = await d.lab.node('gw2').killVswitchd('SIGKILL');
    d.say(`  gw2: ovs-vswitchd (pid ${pid}) killed`);
    await d.until(() => d.nodeError('gw2') !== undefined, 20_000, 'gw2 reports its switch down');
    d.say(`  store: gw2 reports "${d.nodeError('gw2')}"`);
    await sleep(d.watchMs);
    const npid = await d.lab.node('gw2').restartVswitchd();
    d.say(`  gw2: ovs-vswitchd restarted (pid ${npid}; the lab restores its TLV map and tunnel neighbours)`);
    await d.until(
      () => d.nodeError('gw2') === undefined && d.applied('gw2') === d.released(),
      60_000,
      'gw2 re-applied its generation',
    );
    d.say(`  store: gw2 applied g${d.applied('gw2')} again, no error; the router's BFD comes up: announce`);
    await d.ecmp('gw2', 'announce');
    return { restored: d.nodeError('gw2') === undefined };
  },
  check: (d, { restored }) => (restored ? undefined : `gw2 reports "${d.nodeError('gw2')}"`),
};

/** An upstream re-hash: the router's ECMP set goes gw1 only, gw2 only, then both. */
async function flipEcmp(d: DemoSession): Promise<void> {
  for (const set of [['gw1'], ['gw2'], ['gw1', 'gw2']]) {
    await d.lab.setEcmpGateways(set);
    d.say(
      `  router ECMP set: ${set.join(', ')} (an upstream re-hash: connections cross between generations)`,
    );
    await sleep(800);
  }
}

/**
 * Freezes gw1's agent until gw2 applied a generation gw1 has not, then flips ECMP; about `maxMs` at most: below the
 * 10 s lease, so neither gw1 fences itself on resume nor the planner fences it. True if the gateways were seen apart.
 */
async function skewWindow(d: DemoSession, maxMs: number): Promise<boolean> {
  const from = d.applied('gw1');
  d.freeze('gw1');
  const tf = Date.now();
  d.say(`  gw1's agent frozen (SIGSTOP): gw1 forwards on g${from}, cannot apply or acknowledge (lease 10 s)`);
  try {
    await d.until(() => d.applied('gw2') > from || Date.now() - tf > maxMs - 3500, maxMs, 'gw2 ahead');
    if (d.applied('gw2') <= from) return false;
    d.say(`  store: ${d.skew()}; the planner waits for gw1 before it publishes more`);
    await flipEcmp(d);
    return true;
  } finally {
    d.thaw('gw1');
    d.say(`  gw1's agent continued (frozen ${((Date.now() - tf) / 1000).toFixed(1)} s)`);
  }
}

const skewedRollout: DemoScenario<{ skewed: boolean }> = {
  name: 'rollout with the gateways on different generations (host2-b1 weight 1 -> 3)',
  async run(d) {
    const g = d.generation();
    // The write and the freeze race the planner on purpose: the first window starts at once.
    const cfg = await d.edit('apply -f lb.yaml   # `sluice show` with host2-b1 weight 3 in web', (doc) => {
      const b = doc.loadBalancers
        .find((l) => l.name === 'web')
        ?.backends.find((x) => x.address === d.ip('host2-b1'));
      if (b === undefined) throw new SluiceError('SLUICE_E_STORE_NOT_FOUND', 'host2-b1 is not in web');
      b.weight = 3;
      return doc;
    });
    let skewed = await skewWindow(d, 6500);
    await d.until(() => d.applied('gw1') > g, 30_000, 'gw1 acknowledged');
    // A second window if the rollout goes on (phase 2 after phase 1).
    if (d.decisions.at(-1)?.event !== 'idle' || d.generation() > d.applied('gw1')) {
      skewed = (await skewWindow(d, 6500)) || skewed;
    }
    await d.settled(cfg);
    d.say(`  rollout done: ${d.skew()}`);
    return { skewed };
  },
  check: (_d, { skewed }) =>
    skewed ? undefined : 'the two gateways were never seen on different generations',
};

/** The store killed for 30 s, then restarted on its database file: no planner can publish, no agent can report,
 *  and the data plane must not notice (docs/design/control-plane.md "Fencing"). */
const storeDown: DemoScenario<{ ecmp: string[]; opened: number }> = {
  name: 'the store down for 30 s: every node keeps forwarding on what it applied',
  async run(d) {
    const t0 = Date.now();
    const beats = new Map(d.lab.nodes.map((n) => [n.name, d.heartbeat(n.name)]));
    await d.cp.killStore();
    d.say(
      '  the store (ovsdb-server) killed (SIGKILL): no planner can publish, no agent can report or acknowledge',
    );
    let ecmp: string[] = [];
    let opened = 0;
    try {
      await sleep(12_000);
      ecmp = [...new Set(Object.values(await d.lab.ecmpGateways()).flat())].sort();
      d.say(`  12 s later, past the agents' 10 s lease: router ECMP set ${ecmp.join(', ') || '(none)'}`);
      d.say('  opening 30 new web connections while the store is down');
      opened = (await d.traffic(d.vip('web'), 30)).counters().opened;
      await sleep(Math.max(0, t0 + 30_000 - Date.now()));
    } finally {
      await startStore(d.cp);
    }
    d.say('  the store restarted on its database file: planners and agents reconnect by themselves');
    await d.until(
      () => d.lab.nodes.every((n) => d.heartbeat(n.name) !== beats.get(n.name)),
      60_000,
      'every node heartbeats again',
    );
    d.say(`  every node heartbeats again; the gateways never left ECMP (${d.skew()})`);
    return { ecmp, opened };
  },
  check: (d, { ecmp, opened }) => {
    const all = d.lab.gateways.map((g) => g.name).sort();
    if (ecmp.join(',') !== all.join(','))
      return `a gateway left ECMP while the store was down (ECMP set: ${ecmp.join(', ') || 'none'})`;
    return opened >= 30 ? undefined : `only ${opened} of 30 new connections opened while the store was down`;
  },
};

/** The demo's scenarios in order; `first` is the web traffic opened before them (the drained backend holds some). */
export function demoScenarios(first: () => Traffic): readonly DemoScenario[] {
  return [
    backendAdded,
    backendDrained,
    drainedRemoved(first),
    gatewayLeaves,
    vswitchdKilled,
    skewedRollout,
    storeDown,
  ];
}
