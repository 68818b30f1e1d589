// Model check of the rollout (docs/design/rollout.md): random event sequences
// against the real planner (src/rollout/planner.ts) and a small model of the data plane. Everything but the
// planner is a model (a fake): gateways that each apply some generation, hosts with a conntrack set, backends
// that go down and up, clients that open and close connections.
//
// Property: a connection established on a backend that stays up is always delivered to that backend, directly
// or by its one second-chance hop, whatever gateway (ECMP re-hash at will) gets its packet, on whichever of the
// generations in flight that gateway is. After every event, every live connection is checked at every live
// gateway (= every packet the connection could send next), so a "packet" event is implied everywhere.
//
// Data plane model:
// - SYN at gateway G (on generation g): slot = hash & (2^bits - 1); primary P of the slot in g; P's host commits
//   the connection on P in its conntrack (if P is up; a SYN to a down backend is lost, the client retries).
// - Later packet at gateway G on generation g: primary X; if X's host holds the connection (X is its backend, or
//   another backend of the same host: the host's conntrack has the entry) -> delivered. Else the host forwards it
//   once to the second chance S (if any): delivered if S's host holds it; otherwise a VIOLATION.
// - A backend that goes down loses its connections (not violations). A backend removed from the config stays up
//   and keeps its connections (the planner keeps it as second chance while they live).
// - The drain window is effectively infinite here: connections that an expired window gives up on purpose are
//   reported by the planner ('gave-up'), they are not a safety violation; that path is excluded from this model
//   and tested in test/unit/rollout.test.ts instead.
// - The planner publishes only when every live gateway acknowledged the latest generation (canPublish), and
//   reads the true live connection counts at that moment. Gateways acknowledge in any order, join (on the
//   latest generation) and leave.
//
// Negative controls (same model, one safety mechanism removed) must find violations, so the check can fail.

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { NO_OWNER } from '../../src/hashing/slots.ts';
import type { AdminState, Backend, Config } from '../../src/model/types.ts';
import { canPublish, planNext } from '../../src/rollout/planner.ts';
import { type Generation, PHASE1, PHASE2, type PoolPlan } from '../../src/rollout/types.ts';

type Mutation = 'none' | 'no-second-chance' | 'skip-phase1' | 'ignore-acks';

interface Result {
  sequences: number;
  events: number;
  steps: number;
  published: number;
  checks: number;
  violations: number;
  firstViolation?: string;
  /** How many planner notes of each kind (coverage of the transitions). */
  notes: Record<string, number>;
}

/** mulberry32: small, fast, seeded. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const LB = 'web';
const HOSTS = ['h0', 'h1', 'h2', 'h3', 'h4', 'h5'];
const NODES = [
  { name: 'gw', role: 'gateway' as const, tunnelIp: '192.168.0.1' },
  ...HOSTS.map((name, i) => ({ name, role: 'host' as const, tunnelIp: `192.168.0.${10 + i}` })),
];

interface ModelBackend {
  readonly key: string;
  readonly address: string;
  readonly host: string;
  inConfig: boolean;
  state: AdminState;
  weight: number;
  /** Physically up (a removed backend stays up). */
  up: boolean;
}

interface Conn {
  readonly id: number;
  readonly hash: number;
  readonly key: string;
  readonly host: string;
}

function runSequences(seed: number, sequences: number, mutation: Mutation, eventsPerSequence = 32): Result {
  const rnd = prng(seed);
  const int = (n: number): number => Math.floor(rnd() * n);
  const res: Result = { sequences, events: 0, steps: 0, published: 0, checks: 0, violations: 0, notes: {} };

  for (let q = 0; q < sequences; q++) {
    let bits = 4 + int(2);
    const nBackends = 2 + int(5);
    const nHosts = 2 + int(5);
    const backends: ModelBackend[] = [];
    for (let i = 0; i < nBackends; i++) {
      backends.push({
        key: `10.0.1.${i + 1}:8080`,
        address: `10.0.1.${i + 1}`,
        host: HOSTS[int(nHosts)],
        inConfig: i < 2 || rnd() < 0.7,
        state: 'active',
        weight: 1 + int(3),
        up: true,
      });
    }
    const config = (): Config => {
      const list: Backend[] = backends
        .filter((b) => b.inConfig)
        .map((b) => ({ address: b.address, port: 8080, host: b.host, weight: b.weight, state: b.state }));
      return {
        hashMode: 'dp_hash',
        slotBits: bits,
        drainWindowSeconds: 1e12, // effectively infinite (see the header)
        nodes: NODES,
        loadBalancers: [
          { name: LB, vip: '10.9.9.9', family: 4, protocol: 'tcp', ports: [80], backends: list },
        ],
      };
    };
    const byKey = new Map(backends.map((b) => [b.key, b]));
    const mutate = (g: Generation): Generation => {
      if (mutation !== 'skip-phase1') return g;
      // Negative control: a slot that would enter phase 1 (P, N) goes straight to (N, P).
      const p = g.pools.get(LB)!;
      const primary = p.primary.slice();
      const second = p.second.slice();
      const phase = p.phase.slice();
      for (let s = 0; s < primary.length; s++) {
        if (phase[s] === PHASE1) {
          primary[s] = p.second[s];
          second[s] = p.primary[s];
          phase[s] = PHASE2;
        }
      }
      const pool: PoolPlan = { ...p, primary, second, phase };
      return { ...g, pools: new Map([[LB, pool]]) };
    };

    let now = 0;
    let latest = mutate(planNext({ config: config(), latest: null, connections: () => 0, now }).next!);
    const nGateways = 2 + int(3);
    const gateways: Generation[] = Array.from({ length: nGateways }, () => latest);
    let conns: Conn[] = [];
    let nextConn = 0;
    let dirty = true;

    const check = (): void => {
      const seen = new Set<Generation>();
      for (const g of gateways) {
        if (seen.has(g)) continue;
        seen.add(g);
        const plan = g.pools.get(LB)!;
        const mask = (1 << plan.bits) - 1;
        for (const c of conns) {
          res.checks++;
          const slot = c.hash & mask;
          const x = plan.primary[slot];
          if (x !== NO_OWNER && plan.members[x].host === c.host) continue;
          const sc = plan.second[slot];
          if (mutation !== 'no-second-chance' && sc !== NO_OWNER && x !== NO_OWNER) {
            if (plan.members[sc].host === c.host) continue;
          }
          res.violations++;
          if (res.firstViolation === undefined) {
            res.firstViolation =
              `sequence ${q}: connection ${c.id} on ${c.key} (${c.host}) slot ${slot} at a gateway on generation ` +
              `${g.number}: primary ${x === NO_OWNER ? 'none' : plan.members[x].key}, second ` +
              `${sc === NO_OWNER ? 'none' : plan.members[sc].key}`;
          }
        }
      }
    };

    const trace: string[] = [];
    const T = process.env.SLUICE_MODELCHECK_TRACE === String(q);
    const show = (g: Generation): string => {
      const p = g.pools.get(LB)!;
      return `g${g.number}: ${[...p.primary].map((x, s) => `${s}:${x === NO_OWNER ? '-' : p.members[x].address.slice(7)}${p.second[s] === NO_OWNER ? '' : `/${p.members[p.second[s]].address.slice(7)}`}`).join(' ')}`;
    };
    for (let e = 0; e < eventsPerSequence; e++) {
      res.events++;
      const r = int(100);
      if (T)
        trace.push(
          `event ${r} gws ${gateways.map((g) => g.number).join(',')} latest ${show(latest)} conns ${conns.map((c) => `${c.id}@${c.key.slice(7, 8)}#${c.hash & 31}`).join(' ')} cfg ${backends.map((b) => `${b.key.slice(7, 8)}:${b.inConfig ? b.state : 'removed'}/${b.weight}/${b.host}`).join(' ')}`,
        );
      if (r < 28) {
        // SYN at a random gateway. Half of them go to a slot that is moving (has a second chance) in the
        // gateway's generation or the latest one, where the interesting interleavings are.
        const g = gateways[int(gateways.length)];
        const plan = g.pools.get(LB)!;
        let hash = int(0x10000);
        if (rnd() < 0.5) {
          const moving: number[] = [];
          const lp = latest.pools.get(LB)!;
          for (let s = 0; s < lp.second.length; s++) {
            if (lp.second[s] !== NO_OWNER || plan.second[s & (plan.second.length - 1)] !== NO_OWNER)
              moving.push(s);
          }
          if (moving.length > 0) hash = (hash & ~0x1f) | moving[int(moving.length)];
        }
        const x = plan.primary[hash & ((1 << plan.bits) - 1)];
        if (x !== NO_OWNER) {
          const m = plan.members[x];
          const b = byKey.get(m.key)!;
          if (b.up) conns.push({ id: nextConn++, hash, key: m.key, host: m.host });
        }
      } else if (r < 33) {
        if (conns.length > 0) conns.splice(int(conns.length), 1);
        dirty = true;
      } else if (r < 51) {
        // A gateway that lags acknowledges (applies) the latest generation; any of them, in any order.
        const lagging = gateways.flatMap((g, i) => (g === latest ? [] : [i]));
        if (lagging.length > 0) gateways[lagging[int(lagging.length)]] = latest;
      } else if (r < 69) {
        // Planner step, gated on every live gateway's acknowledgement.
        // planNext is a pure function of (config, latest, counts, now); while none of them changed since it
        // last returned null it would return null again, so it is not called (the drain window is infinite, so
        // `now` does not matter; SYNs only add connections on primaries, which the planner does not count).
        const acks = new Map(gateways.map((g, i) => [`gw${i}`, g.number]));
        if (dirty && (mutation === 'ignore-acks' || canPublish(acks, latest))) {
          res.steps++;
          dirty = false;
          const counts = new Map<string, number>();
          const b = latest.pools.get(LB)!.bits;
          const mask = (1 << b) - 1;
          for (const c of conns) {
            const k = `${c.key}|${c.hash & mask}`;
            counts.set(k, (counts.get(k) ?? 0) + 1);
          }
          const step = planNext({
            config: config(),
            latest,
            connections: (_lb, slot, key, bb) => {
              assert.equal(bb, b);
              return counts.get(`${key}|${slot}`) ?? 0;
            },
            now,
          });
          for (const n of step.notes) res.notes[n.kind] = (res.notes[n.kind] ?? 0) + 1;
          if (step.next !== null) {
            latest = mutate(step.next);
            res.published++;
            dirty = true;
          }
        }
      } else if (r < 85) {
        // A config change (one that applies to the chosen backend). Half the time the backend is the primary
        // of a moving slot (second chance set), so changes land in the middle of rollouts.
        let b = backends[int(backends.length)];
        if (rnd() < 0.5) {
          const lp = latest.pools.get(LB)!;
          const moving: string[] = [];
          for (let s = 0; s < lp.second.length; s++) {
            if (lp.second[s] !== NO_OWNER) moving.push(lp.members[lp.primary[s]].key);
          }
          if (moving.length > 0) b = byKey.get(moving[int(moving.length)])!;
        }
        const actions: (() => void)[] = [];
        if (!b.inConfig) {
          actions.push(() => {
            b.inConfig = true;
            b.state = int(4) === 0 ? 'draining' : 'active';
            b.weight = 1 + int(3);
            b.up = true;
          });
          if (b.up) {
            // A removed backend dies: its connections go with it (not violations).
            actions.push(() => {
              b.up = false;
              conns = conns.filter((c) => c.key !== b.key);
            });
          }
        } else {
          actions.push(() => {
            b.inConfig = false; // removed: stays up, keeps its connections
          });
          actions.push(() => {
            b.weight = 1 + int(4);
          });
          if (b.state === 'active') {
            actions.push(() => {
              b.state = 'draining';
            });
          }
          if (b.state === 'draining') {
            actions.push(() => {
              b.state = 'active';
            });
          }
          if (b.state !== 'down') {
            actions.push(() => {
              b.state = 'down';
              b.up = false;
              conns = conns.filter((c) => c.key !== b.key); // lost with it: not a violation
            });
          } else {
            actions.push(() => {
              b.state = 'active';
              b.up = true;
            });
          }
        }
        actions[int(actions.length)]();
        dirty = true;
      } else if (r < 89) {
        // A gateway joins, on the latest generation.
        if (gateways.length < 4) gateways.push(latest);
      } else if (r < 93) {
        if (gateways.length > 1) gateways.splice(int(gateways.length), 1);
      } else if (r < 94) {
        if (bits < 5) bits++;
        dirty = true;
      } else {
        now += 1000 * (1 + int(30));
      }
      // Invariant of the gating: live gateways are at most one generation apart.
      if (mutation !== 'ignore-acks') {
        for (const g of gateways) assert.ok(latest.number - g.number <= 1, 'gateways two generations apart');
      }
      check();
    }
    if (T) console.log(trace.join('\n'));
  }
  return res;
}

const SEQUENCES = Number(process.env.SLUICE_MODELCHECK_SEQUENCES ?? 100_000);

interface Job {
  readonly seed: number;
  readonly sequences: number;
  readonly mutation: Mutation;
}

/** Runs one job in a worker thread (this same file), so the check uses both cores. */
function inWorker(job: Job): Promise<Result> {
  return new Promise((resolve, reject) => {
    // The worker loads this file through tsx, as the test runner does (a worker does not inherit the loader).
    const boot =
      `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))})` +
      `.then((tsx) => { tsx.register(); return import(${JSON.stringify(import.meta.url)}); })`;
    const w = new Worker(boot, { eval: true, workerData: job });
    w.once('message', resolve);
    w.once('error', reject);
    w.once('exit', (code) => {
      if (code !== 0) reject(new Error(`model check worker exited with ${code}`));
    });
  });
}

if (!isMainThread) {
  const job = workerData as Job;
  parentPort!.postMessage(runSequences(job.seed, job.sequences, job.mutation));
} else {
  test(`model check: 0 violations over ${SEQUENCES} random event sequences`, async () => {
    const started = performance.now();
    // Two seeds in two worker threads; a regression in one corner of the event space is not hidden by one stream.
    const half = Math.floor(SEQUENCES / 2);
    const runs = await Promise.all([
      inWorker({ seed: 0x5eed1, sequences: half, mutation: 'none' }),
      inWorker({ seed: 0xc0ffee, sequences: SEQUENCES - half, mutation: 'none' }),
    ]);
    const total = {
      sequences: 0,
      events: 0,
      steps: 0,
      published: 0,
      checks: 0,
      violations: 0,
    };
    const notes: Record<string, number> = {};
    for (const r of runs) {
      for (const k of Object.keys(total) as (keyof typeof total)[]) total[k] += r[k];
      for (const [k, n] of Object.entries(r.notes)) notes[k] = (notes[k] ?? 0) + n;
    }
    const ms = Math.round(performance.now() - started);
    console.log(`model check: ${JSON.stringify(total)} in ${ms} ms`);
    console.log(`model check: planner notes by kind: ${JSON.stringify(notes)}`);
    assert.equal(total.violations, 0, runs.map((r) => r.firstViolation ?? '').join(' '));
    assert.equal(total.sequences, SEQUENCES);
    // The model exercised what it claims to: many generations published, many deliveries checked.
    assert.ok(total.published > SEQUENCES, `only ${total.published} generations published`);
    assert.ok(total.checks > 10 * SEQUENCES, `only ${total.checks} deliveries checked`);
    // Every kind of transition happened, the rare ones included.
    for (const kind of [
      'phase1',
      'phase2',
      'stable',
      'retarget',
      'waits',
      'down-primary',
      'grow',
      'no-owner',
    ]) {
      assert.ok((notes[kind] ?? 0) > 0, `no '${kind}' transition in the whole run`);
    }
  });

  for (const mutation of ['no-second-chance', 'skip-phase1', 'ignore-acks'] as const) {
    test(`negative control: the same model with ${mutation} finds violations`, () => {
      const r = runSequences(0xbad, 2_000, mutation);
      console.log(`negative control ${mutation}: ${r.violations} violations; first: ${r.firstViolation}`);
      assert.ok(r.violations > 0, `${mutation}: no violation found, so the model check could not fail`);
    });
  }
}
