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
//
//
// Two databases (docs/design/ovsdb.md, "Acknowledgements"): the desired state, the plans, the released generation,
// the fence marks and records are in Sluice; heartbeats and acknowledgements in Sluice_Status. Each planner reads the
// plans, the marks and the acknowledgements from two replicas that lag independently: every tick it sees each
// database as it was at some commit of the last LAG_TICKS ticks (never older than what it saw before, nor than its
// own last write there), so it may see a gateway's rejoin without its ack, or acks newer than the marks. Heartbeats
// are read with the acks (one row, one transaction), so the planner may also see a rejoin without the heartbeats
// written before it. An agent writes its heartbeat and ack in Sluice_Status, then its marks (the rejoin with its
// wait on the released generation and a new token; after its announce command ended, that token as announced) in
// Sluice. Announce commands mostly take 1-2 s, one in ten up to 20 s (longer than a lease).
// - ack-ahead (negative control): an agent acknowledges what it was asked before its datapath has it (what the
//   argument rests on: a replica shows an ack that is old, never one ahead of the datapath) -> safety;
// - rejoin-before-ack (a variant that must still pass): the rejoin commits a tick before the ack: safety does not
//   rest on that order (a lagging replica may show either without the other anyway); the order only lets a
//   planner that is up to date see the ack with the rejoin.
//
// A fence that races a rejoin (docs/design/control-plane.md, "A fence that races a rejoin"): the planner fences only
// a gateway whose last announce ended (announced = rejoin token), counts a change of those tokens as the gateway
// heard, and records the fence with the token it decided on (a later rejoin voids the record; the agent that finds
// such a record announces again through a rejoin). Negative controls, each finds safety violations:
// - unfixed: no tokens (the planner and agent before this rule): the planner sees a rejoin but not the heartbeats
//   before it, fences the gateway while its announce runs, the announce ends after the fence;
// - no-settle: the planner fences while a rejoin's announce may still run.
// (no-stamp, every fence record counts whatever rejoin it raced, is rarer: 3 safety violations in 4,000 runs of
// one stream, none in two others; the agent usually meets the record and catches up before the planner is two
// generations on. It runs long only: SLUICE_OUTAGE_MUTATION=<name> SLUICE_OUTAGE_SEED=<n> runs one mutation.)

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

type Mutation =
  | 'none'
  | 'unfixed'
  | 'no-stamp'
  | 'no-settle'
  | 'old-agent-rule'
  | 'no-majority-guard'
  | 'margin-only'
  | 'ack-ahead'
  | 'rejoin-before-ack';

interface Result {
  sequences: number;
  ticks: number;
  published: number;
  fences: number;
  held: number;
  storeOutageTicks: number;
  allGatewaysCutTicks: number;
  /** Planner views whose Sluice_Status part was older than their Sluice part (the two replicas apart). */
  skewedViews: number;
  /** Rejoins committed while the planner's Sluice_Status replica did not show the rejoining gateway's ack yet. */
  rejoinsBeforeAckSeen: number;
  safety: number;
  availability: number;
  first?: string;
}

const LEASE = 10_000;
/** SLUICE_OUTAGE_TRACE=<sequence>: log that sequence's transitions (debugging a violation). */
const TRACE = Number(process.env.SLUICE_OUTAGE_TRACE ?? -1);
const MARGIN = 5000;
const TICK = 1000;
/** How far behind the store a planner's replica of each database may be (ticks). */
const LAG_TICKS = 3;

/** Node_Status (Sluice): the fence marks and records. */
interface Marks {
  fenced: boolean;
  plannerFenced: boolean;
  operatorFenced: boolean;
  /** The token of the latest rejoin, of the latest rejoin whose announce ended, and the planner's record's (0: none). */
  rejoin: number;
  announced: number;
  fenceRejoin: number;
}

const NO_MARKS: Marks = {
  fenced: false,
  plannerFenced: false,
  operatorFenced: false,
  rejoin: 0,
  announced: 0,
  fenceRejoin: 0,
};

/** Node_Heartbeat (Sluice_Status): the heartbeat and the acknowledgement. */
interface Ack {
  applied: number;
  heartbeat: number;
}

/** What the store holds (its database files survive a restart). */
interface Store {
  state: 'up' | 'down' | 'frozen';
  desired: DesiredDoc;
  latest: Generation | null;
  latestConfig: PlanDocs | undefined;
  released: number;
  marks: Map<string, Marks>;
  /** Sluice_Status. */
  acks: Map<string, Ack>;
  /** Report_Round (Sluice_Status): the ack round the planner marked. */
  reportRound: number;
}

/** One database as a replica saw it after a commit: Sluice (desired state, plans, marks) or Sluice_Status (acks,
 *  the round mark; the marks too under rejoin-in-status). */
interface Snapshot {
  readonly tick: number;
  readonly version: number;
  readonly desired: DesiredDoc;
  readonly latest: Generation | null;
  readonly latestConfig: PlanDocs | undefined;
  readonly released: number;
  readonly marks: ReadonlyMap<string, Marks>;
  readonly acks: ReadonlyMap<string, Ack>;
  readonly reportRound: number;
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
  seenRecord: 'planner' | 'operator' | 'raced' | undefined;
  /** Apply keeps failing (a broken switch) since this tick, undefined = fine. */
  failingSince: number | undefined;
  broken: boolean;
  /** Ticks until a running announce command finishes, and the token of its rejoin. */
  announceIn: number;
  announcing: number;
  /** The token of this agent's latest rejoin whose announce ended (0: none since it started). */
  announcedToken: number;
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
  /** The commit of each database its replica shows, and the oldest it may show (its own last write there). */
  sluiceAt: number;
  statusAt: number;
  sluiceMin: number;
  statusMin: number;
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
    skewedViews: 0,
    rejoinsBeforeAckSeen: 0,
    safety: 0,
    availability: 0,
  };
  const policy = { withdrawOnStoreSilence: mutation === 'old-agent-rule' };

  for (let q = 0; q < sequences; q++) {
    const nGw = 1 + int(4);
    const nHosts = 1 + int(3);
    let version = 0;
    /** Rejoin tokens handed out (unique per sequence, as the agent's random tokens are). */
    let rejoinTokens = 0;
    const store: Store = {
      state: 'up',
      desired: desiredDoc(nGw, nHosts, 0),
      latest: null,
      latestConfig: undefined,
      released: 0,
      marks: new Map(),
      acks: new Map(),
      reportRound: 0,
    };
    // Commits of each database, oldest first (what replicas can be at).
    const sluiceLog: Snapshot[] = [];
    const statusLog: Snapshot[] = [];
    const snapshot = (tick: number, kind: 'sluice' | 'status'): Snapshot => ({
      tick,
      version,
      desired: store.desired,
      latest: store.latest,
      latestConfig: store.latestConfig,
      released: store.released,
      marks: kind === 'sluice' ? new Map([...store.marks].map(([n, m]) => [n, { ...m }])) : new Map(),
      acks: kind === 'status' ? new Map([...store.acks].map(([n, a]) => [n, { ...a }])) : new Map(),
      reportRound: store.reportRound,
    });
    let sluiceWrites = 0;
    let statusWrites = 0;
    const wrote = (db: 'sluice' | 'status') => {
      if (db === 'sluice') sluiceWrites++;
      else statusWrites++;
    };
    /** Appends a snapshot of each database that was written since its last one (after every component's turn). */
    const commit = (tick: number) => {
      if (sluiceWrites !== sluiceLog.length) {
        sluiceLog.push(snapshot(tick, 'sluice'));
        sluiceWrites = sluiceLog.length;
      }
      if (statusWrites !== statusLog.length) {
        statusLog.push(snapshot(tick, 'status'));
        statusWrites = statusLog.length;
      }
    };
    wrote('sluice');
    wrote('status');
    commit(0);
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
      announcing: 0,
      announcedToken: 0,
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
      sluiceAt: 0,
      statusAt: 0,
      sluiceMin: 0,
      statusMin: 0,
    }));
    let lockHolder: Planner | undefined;
    const reaches = (link: boolean) => store.state === 'up' && link;
    const fail = (kind: 'safety' | 'availability', msg: string) => {
      res[kind]++;
      res.first ??= `sequence ${q} (${nGw} gateways, ${nHosts} hosts): ${msg}`;
    };

    /** A commit of `log` at least `min`, and no older than LAG_TICKS before `tick`: what a lagging replica shows. */
    const lagged = (log: readonly Snapshot[], min: number, tick: number): number => {
      let lo = min;
      while (lo + 1 < log.length && log[lo + 1]!.tick <= tick - LAG_TICKS) lo++;
      return lo + int(log.length - lo);
    };

    const view = (now: number, p: Planner): StoreView => {
      const tick = now / TICK;
      p.sluiceAt = lagged(sluiceLog, Math.max(p.sluiceAt, p.sluiceMin), tick);
      p.statusAt = lagged(statusLog, Math.max(p.statusAt, p.statusMin), tick);
      const sl = sluiceLog[p.sluiceAt]!;
      const st = statusLog[p.statusAt]!;
      if (p.statusAt + 1 < statusLog.length && statusLog[p.statusAt + 1]!.tick <= sl.tick) res.skewedViews++;
      const nodeStatus = new Map<string, NodeStatusView>();
      for (const n of new Set([...sl.marks.keys(), ...st.acks.keys()])) {
        const m = sl.marks.get(n) ?? NO_MARKS;
        const a = st.acks.get(n) ?? { applied: 0, heartbeat: 0 };
        let fenced = m.fenced;
        // margin-only (negative control): a gateway silent for lease + margin counts as out, unfenced.
        if (
          mutation === 'margin-only' &&
          n.startsWith('gw') &&
          (p.core.silentFor(n, now) ?? 0) > LEASE + MARGIN
        )
          fenced = true;
        // The fix, and the mutations that drop a part of it: `unfixed` reads no tokens (the planner before it).
        const tokens = mutation !== 'unfixed';
        const token = (x: number) => (tokens && x > 0 ? { rejoin: String(x) } : {});
        const ended = mutation === 'no-settle' ? m.rejoin : m.announced;
        nodeStatus.set(n, {
          appliedGeneration: a.applied,
          heartbeatAt: a.heartbeat,
          fenced,
          plannerFenced:
            m.plannerFenced && (!tokens || mutation === 'no-stamp' || m.fenceRejoin === m.rejoin),
          operatorFenced: m.operatorFenced,
          error: undefined,
          ...token(m.rejoin),
          ...(tokens && ended > 0 ? { announced: String(ended) } : {}),
        });
      }
      return {
        desiredCfg: sl.version,
        desired: sl.desired,
        latest: sl.latest,
        latestConfig: sl.latestConfig,
        gatewayGeneration: sl.released,
        nodeStatus,
        reportRound: st.reportRound,
        backendHealth: new Map(),
        slotReports: new Map(),
      };
    };

    const agentTick = (a: Agent, now: number) => {
      if (!a.alive) return;
      const connected = reaches(a.link);
      const row = store.marks.get(a.name);
      if (connected) {
        a.seenReleased = store.released;
        a.seenGen = store.latest?.number ?? 0;
        // A planner's record decided on an older rejoin than the row's latest one raced it (fenceMarks).
        const stamped = mutation !== 'unfixed' && mutation !== 'no-stamp';
        const raced = stamped && row !== undefined && row.fenceRejoin !== row.rejoin;
        a.seenRecord = row?.plannerFenced
          ? raced
            ? 'raced'
            : 'planner'
          : row?.operatorFenced
            ? 'operator'
            : undefined;
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
          a.announcedToken = a.announcing;
          a.outForApply = false;
          a.fence = nextFence(a.fence, 'announce-ok')?.to ?? a.fence;
        }
        fenceCheck(a, now);
      }
      // Sluice_Status: heartbeat + acknowledgement. Then Sluice: the fence marks, and the rejoin, which commits only
      // if the released generation is the one applied (the `wait` of the daemon).
      if (!connected) return;
      const rejoin =
        a.role === 'gateway' && mayRejoin(a.fence) && a.applied === target && !a.broken && target > 0;
      const ackNow = !(rejoin && mutation === 'rejoin-before-ack'); // that variant: the ack comes a tick later
      if (ackNow) {
        const ack = store.acks.get(a.name) ?? { applied: 0, heartbeat: 0 };
        ack.applied = mutation === 'ack-ahead' ? Math.max(a.applied, target) : a.applied;
        ack.heartbeat++;
        store.acks.set(a.name, ack);
        wrote('status');
        a.lastStoreOk = now;
      }
      if (rejoin && store.released !== a.applied) return;
      const m = row ?? { ...NO_MARKS };
      const fenced = a.role === 'gateway' && reportsFenced(a.fence) && !rejoin;
      const announced = a.announcedToken > 0 && m.announced !== a.announcedToken;
      if (row === undefined || m.fenced !== fenced || rejoin || announced) {
        m.fenced = fenced;
        if (a.announcedToken > 0) m.announced = a.announcedToken;
        if (rejoin) {
          m.plannerFenced = false;
          m.operatorFenced = false;
          m.fenceRejoin = 0;
          m.rejoin = ++rejoinTokens; // new at every rejoin, also across agent restarts
          // Its own replica shows its own write (ovsdb-server sends the update before the reply), as the daemon's does.
          a.seenRecord = undefined;
          const p = planners.find((x) => x === lockHolder);
          const seen = p === undefined ? undefined : statusLog[p.statusAt]?.acks.get(a.name)?.applied;
          if (p !== undefined && seen !== a.applied) res.rejoinsBeforeAckSeen++;
        }
        store.marks.set(a.name, m);
        wrote('sluice');
      }
      a.lastStoreOk = now;
      if (rejoin) {
        if (TRACE === q)
          console.log(`t${now / TICK} ${a.name} rejoin at ${a.applied} (released ${store.released})`);
        a.fence = nextFence(a.fence, 'rejoin-acked')!.to;
        a.announcing = m.rejoin;
        // Mostly 1-2 s; sometimes longer than a lease (the hook's deadline is 30 s).
        a.announceIn = rnd() < 0.1 ? 3 + int(18) : 1 + int(2);
      }
    };

    /** The daemon's #fenceEvent + #maybeFence with the real table. */
    const fenceCheck = (a: Agent, now: number) => {
      let event: FenceEvent | undefined;
      if (a.seenRecord === 'planner') event = 'planner-record';
      else if (a.seenRecord === 'operator') event = 'operator-record';
      else if (a.fence === 'announced' && a.seenReleased >= a.applied + 2) event = 'behind';
      else if (a.failingSince !== undefined && now - a.failingSince > LEASE) event = 'apply-failing';
      else if (a.seenRecord === 'raced') event = 'raced-record';
      else if (now - a.lastStoreOk > LEASE) event = 'store-silent';
      if (event === undefined) return;
      const t = nextFence(a.fence, event, policy);
      if (t === undefined) return;
      if (t.action === 'withdraw') a.inEcmp = false;
      if (event === 'apply-failing') a.outForApply = true;
      if (TRACE === q)
        console.log(
          `t${now / TICK} ${a.name} ${a.fence} --${event}--> ${t.to} (applied ${a.applied} dp ${a.dp} seenRel ${a.seenReleased})`,
        );
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
      const v = view(now, p);
      p.core.observe(v, now);
      lockHolder ??= p;
      if (lockHolder !== p) return;
      const d = p.core.decide(now);
      if (TRACE === q && d.kind !== 'wait' && d.kind !== 'idle') {
        const acks = [...v.nodeStatus].map(
          ([n, x]) => `${n}:${x.appliedGeneration}${x.plannerFenced ? 'P' : ''}`,
        );
        console.log(
          `t${now / TICK} ${p.name} ${d.kind}; sees g${v.latest?.number} released g${v.gatewayGeneration} ${acks}`,
        );
      }
      const held = p.core.fenceHeld(now);
      if (held) res.held++;
      const fence = d.kind === 'fence' ? [...d.nodes] : [];
      if (mutation === 'no-majority-guard' && held) fence.push(...held.nodes);
      for (const n of fence) {
        if (rnd() < 0.2) continue; // the command failed: retried at a later tick
        gateways.find((g) => g.name === n)!.inEcmp = false;
        if (TRACE === q) console.log(`t${now / TICK} ${p.name} fenced ${n}`);
        res.fences++;
        const m = store.marks.get(n) ?? NO_MARKS;
        // With the rejoin token of the view the fence was decided on (the daemon's fenceRecordOp).
        const decidedOn = d.kind === 'fence' ? Number(d.rejoins.get(n) ?? 0) : m.rejoin;
        store.marks.set(n, { ...m, plannerFenced: true, fenceRejoin: decidedOn });
        wrote('sluice');
        p.sluiceMin = sluiceLog.length;
      }
      if (fence.length > 0) return;
      // Publish and release carry a `wait` that Global.generation is the one the planner saw.
      const unchanged = (store.latest?.number ?? 0) === (v.latest?.number ?? 0);
      if (d.kind === 'publish' && unchanged) {
        store.latest = d.generation;
        store.latestConfig = d.config;
        res.published++;
        wrote('sluice');
        p.sluiceMin = sluiceLog.length;
      } else if (d.kind === 'release' && unchanged && store.latest?.number === d.generation) {
        store.released = d.generation;
        wrote('sluice');
        p.sluiceMin = sluiceLog.length;
      } else if (d.kind === 'mark-round') {
        store.reportRound = d.generation;
        wrote('status');
        p.statusMin = statusLog.length;
      }
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
          Object.assign(a, { announcing: 0, announcedToken: 0 });
          Object.assign(a, { failingSince: undefined, seenRecord: undefined });
        }
        if (!a.broken && rnd() < 0.002) a.broken = true;
        else if (a.broken && rnd() < 0.05) a.broken = false;
      }
      if (store.state === 'up' && rnd() < 0.05) {
        version++;
        store.desired = desiredDoc(nGw, nHosts, version);
        wrote('sluice');
      }
      commit(tick);
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
        commit(tick);
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
/** SLUICE_OUTAGE_SEED=<n>: other random streams than the test's (long runs). */
const SEED = process.env.SLUICE_OUTAGE_SEED;
const SEEDS: [number, number] = SEED === undefined ? [0x0a7a6e, 0x57083] : [Number(SEED), Number(SEED) + 1];
/** SLUICE_OUTAGE_MUTATION=<mutation>: run SEQUENCES of it in this thread and print what it found (no test). */
const MUTATION = process.env.SLUICE_OUTAGE_MUTATION as Mutation | undefined;

if (!isMainThread) {
  answerJob<Mutation, Result>((job) => runSequences(job.seed, job.sequences, job.mutation));
} else if (MUTATION !== undefined) {
  const r = runSequences(SEEDS[0], SEQUENCES, MUTATION);
  console.log(`${MUTATION}: ${JSON.stringify(r)}`);
} else if (TRACE >= 0) {
  for (const seed of SEEDS) console.log(runSequences(seed, TRACE + 1, 'none').first);
} else {
  test(`outage model check: 0 violations over ${SEQUENCES} random runs with store outages and partitions`, async () => {
    const started = performance.now();
    const runs = await unmutatedInWorkers<Result>(import.meta.url, SEEDS, SEQUENCES);
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
    // The two replicas apart (acks older than the marks), and rejoins the planner did not see the ack of yet.
    assert.ok(total.skewedViews > SEQUENCES * 10, `only ${total.skewedViews} views with the replicas apart`);
    assert.ok(
      total.rejoinsBeforeAckSeen > SEQUENCES,
      `only ${total.rejoinsBeforeAckSeen} rejoins before the ack`,
    );
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
    ['ack-ahead', 'safety'],
  ] as const) {
    test(`negative control: ${mutation} finds ${kind} violations`, () => {
      const r = runSequences(0xbad, 400, mutation);
      console.log(
        `negative control ${mutation}: safety ${r.safety}, availability ${r.availability}; first: ${r.first}`,
      );
      assert.ok(r[kind] > 0, `${mutation}: no ${kind} violation found, so the model check could not fail`);
    });
  }

  // The race is rare (1-3 runs in 1,000 without the fix): these streams find it early (the first at run 60 and 272);
  // long runs: SLUICE_OUTAGE_MUTATION, docs/design/control-plane.md "Measured: store outages".
  for (const [mutation, sequences] of [
    ['unfixed', 100],
    ['no-settle', 300],
  ] as const) {
    test(`negative control: ${mutation} finds safety violations (a fence that races a rejoin)`, () => {
      const r = runSequences(0x57083, sequences, mutation);
      console.log(`negative control ${mutation}: safety ${r.safety}; first: ${r.first}`);
      assert.ok(r.safety > 0, `${mutation}: no safety violation found, so the model check could not fail`);
    });
  }

  test('rejoin-before-ack (the rejoin committed a tick before its ack): no violation either', () => {
    const r = runSequences(0xbad, 400, 'rejoin-before-ack');
    console.log(`rejoin-before-ack: safety ${r.safety}, availability ${r.availability}; first: ${r.first}`);
    assert.equal(r.safety + r.availability, 0, r.first);
    assert.ok(r.rejoinsBeforeAckSeen > 400, `only ${r.rejoinsBeforeAckSeen} rejoins before the ack`);
  });
}
