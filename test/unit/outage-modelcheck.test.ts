// Model check of the control plane through store outages and partitions (docs/design/control-plane.md "Fencing"):
// random runs of the REAL planner decisions (src/planner/core.ts PlannerCore, two planners contending for the lock)
// and the REAL gateway fencing state machine (src/agent/fencing.ts nextFence), around a FAKE of everything else: the
// store (up, down, or frozen with sessions still open), each component's link to it (gateways, hosts and planners
// each cut off independently, or every gateway at once), agents that die and restart while their datapath keeps
// forwarding, apply failures, fence commands that fail, and the upstream router's ECMP set.
//
// Time runs in ticks of one second; lease 10 s, margin 5 s. In each tick the components act in a random order:
// agents apply what they see (with a random delay), heartbeat and acknowledge while their link and the store
// work, and run the fencing check exactly as the daemon does (src/agent/daemon.ts #fenceEvent); the planner that
// holds the lock observes, decides and acts (publish, release, fence: the command takes the gateway out of ECMP,
// then the record is written).
//
// Properties checked after every tick:
// - safety: the gateways in ECMP forward on generations at most one apart (what the rollout's argument needs);
// - availability: no gateway leaves ECMP while no planner can publish (store down or frozen, or no planner reaches
//   it), and the ECMP set is never empty; both except for a gateway whose own apply keeps failing (a broken switch:
//   withdrawing is its rule, store or no store), and the set may be empty while a rejoining gateway's announce
//   command runs (the planner counts it in from its rejoin ack: a fence of the other one can land in that window).
//
// Negative controls (the same model with one rule dropped) must find violations, so the check can fail:
// - old-agent-rule: gateways withdraw after a lease without the store (the rule before) -> availability;
// - no-majority-guard: the planner also fences the gateways it holds -> availability (every gateway cut off);
// - margin-only: the planner stops waiting for a gateway silent for lease + margin without fencing it -> safety.

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { isMainThread } from 'node:worker_threads';
import {
  type FenceEvent,
  type FenceState,
  mayRejoin,
  nextFence,
  reportsFenced,
} from '../../src/agent/fencing.ts';
import { PlannerCore } from '../../src/planner/core.ts';
import type { Generation } from '../../src/rollout/types.ts';
import { Rng } from '../../src/sim/hash.ts';
import type { DesiredDoc, NodeStatusView, PlanDocs, StoreView } from '../../src/store/db/index.ts';
import { answerJob, unmutatedInWorkers } from '../scenarios/worker-job.ts';

type Mutation = 'none' | 'old-agent-rule' | 'no-majority-guard' | 'margin-only';

interface Result {
  sequences: number;
  ticks: number;
  published: number;
  fences: number;
  held: number;
  storeOutageTicks: number;
  allGatewaysCutTicks: number;
  safety: number;
  availability: number;
  first?: string;
}

const LEASE = 10_000;
/** SLUICE_OUTAGE_TRACE=<sequence>: log that sequence's transitions (debugging a violation). */
const TRACE = Number(process.env.SLUICE_OUTAGE_TRACE ?? -1);
const MARGIN = 5000;
const TICK = 1000;

interface StatusRow {
  applied: number;
  heartbeat: number;
  fenced: boolean;
  plannerFenced: boolean;
  operatorFenced: boolean;
}

/** What the store holds (its database file survives a restart). */
interface Store {
  state: 'up' | 'down' | 'frozen';
  desired: DesiredDoc;
  latest: Generation | null;
  latestConfig: PlanDocs | undefined;
  released: number;
  /** Report_Round (Sluice_Status): the ack round the planner marked. */
  reportRound: number;
  status: Map<string, StatusRow>;
}

interface Agent {
  readonly name: string;
  readonly role: 'gateway' | 'host';
  alive: boolean;
  link: boolean;
  /** The agent's own idea of what it applied (0 after a restart until it applies). */
  applied: number;
  /** What its datapath forwards on (survives an agent restart). */
  dp: number;
  fence: FenceState;
  lastStoreOk: number;
  /** Released generation and own fence records, as last seen (its replica). */
  seenReleased: number;
  seenGen: number;
  seenRecord: 'planner' | 'operator' | undefined;
  /** Apply keeps failing (a broken switch) since this tick, undefined = fine. */
  failingSince: number | undefined;
  broken: boolean;
  /** Ticks until a running announce command finishes. */
  announceIn: number;
  /** Gateways: in the upstream ECMP set (physical truth). */
  inEcmp: boolean;
  /** Left ECMP because its own apply kept failing, and not back yet (an outage the check does not count). */
  outForApply: boolean;
}

interface Planner {
  readonly name: string;
  readonly core: PlannerCore;
  link: boolean;
  wasConnected: boolean;
}

function desiredDoc(gateways: number, hosts: number, version: number): DesiredDoc {
  const nodes = [
    ...Array.from({ length: gateways }, (_, i) => ({
      name: `gw${i + 1}`,
      role: 'gateway',
      tunnelIp: `192.168.0.${i + 1}`,
    })),
    ...Array.from({ length: hosts }, (_, i) => ({
      name: `h${i + 1}`,
      role: 'host',
      tunnelIp: `192.168.0.${i + 11}`,
    })),
  ];
  // Versions alternate a backend's state (a rollout with phases) and the drain window (a config-only generation).
  const state = version % 4 === 1 || version % 4 === 2 ? 'draining' : 'active';
  return {
    hashMode: 'dp_hash',
    slotBits: 4,
    // No window (the product's default) and a five-minute one, alternating: a config-only generation.
    ...(version % 2 === 1 ? { drainWindowSeconds: 300 } : {}),
    nodes,
    loadBalancers: [
      {
        name: 'web',
        vip: '10.9.9.9',
        protocol: 'tcp',
        ports: [80],
        backends: [
          { address: '10.0.1.1', port: 8080, host: 'h1', weight: 1, state: 'active' },
          { address: '10.0.1.2', port: 8080, host: nodes.at(-1)!.name, weight: 1, state },
        ],
      },
    ],
  };
}

function runSequences(seed: number, sequences: number, mutation: Mutation, ticksPerSequence = 240): Result {
  const rng = new Rng(seed);
  const rnd = (): number => rng.next();
  const int = (n: number): number => Math.floor(rnd() * n);
  const res: Result = {
    sequences,
    ticks: 0,
    published: 0,
    fences: 0,
    held: 0,
    storeOutageTicks: 0,
    allGatewaysCutTicks: 0,
    safety: 0,
    availability: 0,
  };
  const policy = { withdrawOnStoreSilence: mutation === 'old-agent-rule' };

  for (let q = 0; q < sequences; q++) {
    const nGw = 1 + int(4);
    const nHosts = 1 + int(3);
    let version = 0;
    const store: Store = {
      state: 'up',
      desired: desiredDoc(nGw, nHosts, 0),
      latest: null,
      latestConfig: undefined,
      released: 0,
      reportRound: 0,
      status: new Map(),
    };
    const agents: Agent[] = [
      ...Array.from({ length: nGw }, (_, i) => `gw${i + 1}`),
      ...Array.from({ length: nHosts }, (_, i) => `h${i + 1}`),
    ].map((name) => ({
      name,
      role: name.startsWith('gw') ? ('gateway' as const) : ('host' as const),
      alive: true,
      link: true,
      applied: 0,
      dp: 0,
      fence: 'unknown' as FenceState,
      lastStoreOk: 0,
      seenReleased: 0,
      seenGen: 0,
      seenRecord: undefined,
      failingSince: undefined,
      broken: false,
      announceIn: 0,
      inEcmp: true,
      outForApply: false,
    }));
    const gateways = agents.filter((a) => a.role === 'gateway');
    const planners: Planner[] = ['planner-a', 'planner-b'].map((name) => ({
      name,
      core: new PlannerCore({ leaseMs: LEASE, marginMs: MARGIN, fencing: true }),
      link: true,
      wasConnected: true,
    }));
    let lockHolder: Planner | undefined;
    const reaches = (link: boolean) => store.state === 'up' && link;
    const fail = (kind: 'safety' | 'availability', msg: string) => {
      res[kind]++;
      res.first ??= `sequence ${q} (${nGw} gateways, ${nHosts} hosts): ${msg}`;
    };

    const view = (now: number, core: PlannerCore): StoreView => {
      const nodeStatus = new Map<string, NodeStatusView>();
      for (const [n, s] of store.status) {
        let fenced = s.fenced;
        // margin-only (negative control): a gateway silent for lease + margin counts as out, unfenced.
        if (
          mutation === 'margin-only' &&
          n.startsWith('gw') &&
          (core.silentFor(n, now) ?? 0) > LEASE + MARGIN
        )
          fenced = true;
        nodeStatus.set(n, {
          appliedGeneration: s.applied,
          heartbeatAt: s.heartbeat,
          fenced,
          plannerFenced: s.plannerFenced,
          operatorFenced: s.operatorFenced,
          error: undefined,
        });
      }
      return {
        desiredCfg: version,
        desired: store.desired,
        latest: store.latest,
        latestConfig: store.latestConfig,
        gatewayGeneration: store.released,
        nodeStatus,
        reportRound: store.reportRound,
        backendHealth: new Map(),
        slotReports: new Map(),
      };
    };

    const agentTick = (a: Agent, now: number) => {
      if (!a.alive) return;
      const connected = reaches(a.link);
      const row = store.status.get(a.name);
      if (connected) {
        a.seenReleased = store.released;
        a.seenGen = store.latest?.number ?? 0;
        a.seenRecord = row?.plannerFenced ? 'planner' : row?.operatorFenced ? 'operator' : undefined;
      }
      const target = a.role === 'gateway' ? a.seenReleased : a.seenGen;
      // Apply (needs only the replica the agent has).
      if (target > 0 && target !== a.applied) {
        if (a.broken) a.failingSince ??= now;
        else if (rnd() < 0.6) {
          a.applied = target;
          a.dp = target;
          a.failingSince = undefined;
        }
      } else if (!a.broken) a.failingSince = undefined;
      if (a.role === 'gateway') {
        if (a.announceIn > 0 && --a.announceIn === 0) {
          a.inEcmp = true;
          a.outForApply = false;
          a.fence = nextFence(a.fence, 'announce-ok')?.to ?? a.fence;
        }
        fenceCheck(a, now);
      }
      // Heartbeat + acknowledgement (+ the rejoin ack, which commits only if the released generation is the one
      // applied: the `wait` of the daemon).
      if (!connected) return;
      const rejoin =
        a.role === 'gateway' && mayRejoin(a.fence) && a.applied === target && !a.broken && target > 0;
      if (rejoin && store.released !== a.applied) return;
      const s = row ?? {
        applied: 0,
        heartbeat: 0,
        fenced: false,
        plannerFenced: false,
        operatorFenced: false,
      };
      s.applied = a.applied;
      s.heartbeat++;
      s.fenced = a.role === 'gateway' && reportsFenced(a.fence) && !rejoin;
      if (rejoin) {
        s.plannerFenced = false;
        s.operatorFenced = false;
      }
      store.status.set(a.name, s);
      a.lastStoreOk = now;
      if (rejoin) {
        a.fence = nextFence(a.fence, 'rejoin-acked')!.to;
        a.announceIn = 1 + int(2);
      }
    };

    /** The daemon's #fenceEvent + #maybeFence with the real table. */
    const fenceCheck = (a: Agent, now: number) => {
      let event: FenceEvent | undefined;
      if (a.seenRecord === 'planner') event = 'planner-record';
      else if (a.seenRecord === 'operator') event = 'operator-record';
      else if (a.fence === 'announced' && a.seenReleased >= a.applied + 2) event = 'behind';
      else if (a.failingSince !== undefined && now - a.failingSince > LEASE) event = 'apply-failing';
      else if (now - a.lastStoreOk > LEASE) event = 'store-silent';
      if (event === undefined) return;
      const t = nextFence(a.fence, event, policy);
      if (t === undefined) return;
      if (t.action === 'withdraw') a.inEcmp = false;
      if (event === 'apply-failing') a.outForApply = true;
      if (TRACE === q) console.log(`t${now / TICK} ${a.name} ${a.fence} --${event}--> ${t.to}`);
      a.fence = t.to;
    };

    const plannerTick = (p: Planner, now: number) => {
      const connected = reaches(p.link);
      if (connected && !p.wasConnected) p.core.resync(now);
      p.wasConnected = connected || (store.state === 'frozen' && p.link && p.wasConnected);
      if (!connected) {
        if (lockHolder === p && !(store.state === 'frozen' && p.link)) lockHolder = undefined;
        return;
      }
      p.core.observe(view(now, p.core), now);
      lockHolder ??= p;
      if (lockHolder !== p) return;
      const d = p.core.decide(now);
      const held = p.core.fenceHeld(now);
      if (held) res.held++;
      const fence = d.kind === 'fence' ? [...d.nodes] : [];
      if (mutation === 'no-majority-guard' && held) fence.push(...held.nodes);
      for (const n of fence) {
        if (rnd() < 0.2) continue; // the command failed: retried at a later tick
        gateways.find((g) => g.name === n)!.inEcmp = false;
        if (TRACE === q) console.log(`t${now / TICK} ${p.name} fenced ${n}`);
        res.fences++;
        const s = store.status.get(n) ?? {
          applied: 0,
          heartbeat: 0,
          fenced: false,
          plannerFenced: false,
          operatorFenced: false,
        };
        store.status.set(n, { ...s, plannerFenced: true });
      }
      if (fence.length > 0) return;
      if (d.kind === 'publish') {
        store.latest = d.generation;
        store.latestConfig = d.config;
        res.published++;
      } else if (d.kind === 'release' && store.latest?.number === d.generation) store.released = d.generation;
      else if (d.kind === 'mark-round') store.reportRound = d.generation;
    };

    for (let tick = 1; tick <= ticksPerSequence; tick++) {
      res.ticks++;
      const now = tick * TICK;
      // Faults and repairs.
      const r = rnd();
      if (store.state === 'up' && r < 0.015) store.state = rnd() < 0.5 ? 'down' : 'frozen';
      else if (store.state !== 'up' && r < 0.06) store.state = 'up';
      if (rnd() < 0.03) {
        const x = [...agents, ...planners][int(agents.length + planners.length)];
        x.link = false;
      }
      if (rnd() < 0.008) for (const g of gateways) g.link = false; // every gateway cut off at once
      for (const x of [...agents, ...planners]) if (!x.link && rnd() < 0.06) x.link = true;
      for (const a of agents) {
        if (a.alive && rnd() < 0.004) a.alive = false;
        else if (!a.alive && rnd() < 0.05) {
          Object.assign(a, { alive: true, applied: 0, fence: 'unknown', lastStoreOk: now, announceIn: 0 });
          Object.assign(a, { failingSince: undefined, seenRecord: undefined });
        }
        if (!a.broken && rnd() < 0.002) a.broken = true;
        else if (a.broken && rnd() < 0.05) a.broken = false;
      }
      if (store.state === 'up' && rnd() < 0.05) {
        version++;
        store.desired = desiredDoc(nGw, nHosts, version);
      }
      if (store.state !== 'up') res.storeOutageTicks++;
      if (gateways.every((g) => !g.link)) res.allGatewaysCutTicks++;

      const before = new Map(gateways.map((g) => [g.name, g.inEcmp]));
      const noPlanner = !planners.some((p) => reaches(p.link));
      // Every component once, in a random order.
      const order: Array<Agent | Planner> = [...agents, ...planners];
      for (let i = order.length - 1; i > 0; i--) {
        const j = int(i + 1);
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
      for (const x of order) {
        if ('core' in x) plannerTick(x, now);
        else agentTick(x, now);
      }

      // Safety: generations in ECMP at most one apart.
      const inEcmp = gateways.filter((g) => g.inEcmp);
      if (inEcmp.length > 0) {
        const gens = inEcmp.map((g) => g.dp);
        if (Math.max(...gens) - Math.min(...gens) > 1)
          fail(
            'safety',
            `tick ${tick}: gateways in ECMP on ${inEcmp.map((g) => `${g.name}@g${g.dp}`).join(', ')}`,
          );
      }
      // Availability.
      if (noPlanner)
        for (const g of gateways)
          if (before.get(g.name) && !g.inEcmp && !g.outForApply)
            fail(
              'availability',
              `tick ${tick}: ${g.name} left ECMP while no planner could publish (${g.fence})`,
            );
      // (A gateway whose announce command runs is in ECMP within that command's run time.)
      if (inEcmp.length === 0 && !gateways.some((g) => g.broken || g.outForApply || g.announceIn > 0))
        fail('availability', `tick ${tick}: no gateway in ECMP (${gateways.map((g) => g.fence).join(', ')})`);
    }
  }
  return res;
}

const SEQUENCES = Number(process.env.SLUICE_OUTAGE_MODELCHECK_SEQUENCES ?? 4000);

if (!isMainThread) {
  answerJob<Mutation, Result>((job) => runSequences(job.seed, job.sequences, job.mutation));
} else if (TRACE >= 0) {
  for (const seed of [0x0a7a6e, 0x57083]) console.log(runSequences(seed, TRACE + 1, 'none').first);
} else {
  test(`outage model check: 0 violations over ${SEQUENCES} random runs with store outages and partitions`, async () => {
    const started = performance.now();
    const runs = await unmutatedInWorkers<Result>(import.meta.url, [0x0a7a6e, 0x57083], SEQUENCES);
    const total = { ...runs[0]! };
    for (const k of Object.keys(total) as (keyof Result)[])
      if (typeof total[k] === 'number') (total[k] as number) = runs.reduce((n, r) => n + (r[k] as number), 0);
    console.log(
      `outage model check: ${JSON.stringify(total)} in ${Math.round(performance.now() - started)} ms`,
    );
    assert.equal(total.safety, 0, runs.map((r) => r.first ?? '').join(' '));
    assert.equal(total.availability, 0, runs.map((r) => r.first ?? '').join(' '));
    // The model exercised what it claims to.
    assert.equal(total.sequences, SEQUENCES);
    assert.ok(total.published > SEQUENCES, `only ${total.published} generations published`);
    assert.ok(total.fences > SEQUENCES / 10, `only ${total.fences} fences`);
    assert.ok(total.held > SEQUENCES / 10, `only ${total.held} ticks with a fence held`);
    assert.ok(
      total.storeOutageTicks > SEQUENCES * 10,
      `only ${total.storeOutageTicks} ticks of store outage`,
    );
    assert.ok(
      total.allGatewaysCutTicks > SEQUENCES,
      `only ${total.allGatewaysCutTicks} ticks with every gateway cut`,
    );
  });

  for (const [mutation, kind] of [
    ['old-agent-rule', 'availability'],
    ['no-majority-guard', 'availability'],
    ['margin-only', 'safety'],
  ] as const) {
    test(`negative control: ${mutation} finds ${kind} violations`, () => {
      const r = runSequences(0xbad, 400, mutation);
      console.log(
        `negative control ${mutation}: safety ${r.safety}, availability ${r.availability}; first: ${r.first}`,
      );
      assert.ok(r[kind] > 0, `${mutation}: no ${kind} violation found, so the model check could not fail`);
    });
  }
}
