// Model check of the rollout with chains of previous owners (docs/design/rollout.md "Safety", "Model check"):
// random event sequences against the real planner (src/rollout/planner.ts) and a small model of the data plane.
// Everything but the planner is a model (a fake): gateways and hosts that each apply some generation, hosts with a
// conntrack set, backends that go down and up, clients that open and close long-lived connections.
//
// Property: a connection established on a backend that stays up is always delivered to that backend, through at
// most L + 1 host-to-host hops (L = the chain bound), whatever gateway (ECMP re-hash at will) gets its packet, on
// whichever of the generations in flight that gateway is, and whichever generation each host on the way is on.
// After every event, every live connection is checked at every live gateway (= every packet the connection could
// send next), so a "packet" event is implied everywhere.
//
// Data plane model:
// - SYN at gateway G (on generation g): slot = hash & (2^bits - 1); primary P of the slot in g; P's host commits
//   the connection on P in its conntrack (if P is up; a SYN to a down backend is lost, the client retries).
// - Later packet at gateway G on generation g: to the host of its primary X with hop counter 0. A host that holds
//   the connection (any of its backends is the connection's) delivers it. Else, on its OWN generation, it finds the
//   first lane >= the counter whose owner lives on another host, and hands the packet there with the counter set
//   to that lane + 1; no such lane: dropped, a VIOLATION. (The counter only grows: no loops.)
// - A backend that goes down loses its connections (not violations). A backend removed from the config stays up
//   and keeps its connections (the planner keeps it in chains while they live). A health flap (refuses new
//   connections, established ones work) is a backend that is up but takes no new slots.
// - Hosts report live connections by their slot in the latest table's numbering (real hosts report the slot the
//   connection was marked with; after a pool grew, an older mark is the low bits of today's slot, which the planner
//   covers with grownCounts: tested on its own in planner.test.ts).
// - No drain window (the default): nothing is given up on purpose; a slot whose chain is full waits.
// - The planner publishes only when every live gateway and every host acknowledged the latest generation (the
//   planner's two-stage publication is stricter: hosts first, then gateways), and reads the true live connection
//   counts at that moment. It reads the acknowledgements from a replica of their own (Sluice_Status, apart from the
//   plans: docs/design/ovsdb.md, "Acknowledgements") that lags up to ACK_LAG events behind, never going back. Gateways and hosts acknowledge in any order, independently; gateways join (on the
//   latest generation) and leave.
// - A host's agent goes silent (its data plane forwards on the generation it has): it no longer acknowledges, the
//   planner no longer waits for it, gets 0 connections from it (what src/planner/core.ts reads from a host it no
//   longer waits for) and the host in `silentHosts`. It comes back by applying the latest generation.
//
// - UDP (half the sequences): a UDP load balancer. There is no SYN: a datagram a host has no conntrack entry for
//   walks the chain like a non-SYN TCP packet; where the walk ends (no lane left), the flow is new: it goes back to
//   the host of the gateway's primary X (FLAG_COMMIT), which commits it on X (docs/design/rollout.md, "UDP"). So a
//   new UDP flow lands on X like a SYN, after up to L + 1 walk hops and 1 hop back; the check asserts that bound
//   for every new flow. A packet of an existing flow that the walk misses would be committed anew on X, i.e. the
//   flow would change backend: the same VIOLATION as a drop. A flow idle past conntrack's UDP timeout is gone (a
//   close). The negative control 'udp-commit-first' is the design before: a host commits a UDP datagram it has no
//   entry for at once (no walk).
//
// Negative controls (same model, one safety mechanism removed) must find violations, so the check can fail.

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { isMainThread } from 'node:worker_threads';
import { NO_OWNER } from '../../src/hashing/slots.ts';
import type { AdminState, Backend, Config } from '../../src/model/types.ts';
import { canPublish, planNext } from '../../src/rollout/planner.ts';
import { type Generation, LANES, PHASE1, PHASE2, type PoolPlan, planLanes } from '../../src/rollout/types.ts';
import { Rng } from '../../src/sim/hash.ts';
import { answerJob, unmutatedInWorkers } from '../scenarios/worker-job.ts';

type Mutation =
  | 'none'
  | 'no-chain' // hosts never hand a packet on
  | 'one-hop' // hosts hand a packet on once, to the gateway's second chance only (the design before chains)
  | 'drop-chain-member' // every published plan loses the last older previous owner of each chain, in use or not
  | 'skip-phase1' // a slot that would enter phase 1 (P, N) goes straight to (N, P)
  | 'ignore-acks' // publish whatever the gateways and hosts acknowledged
  | 'silent-as-zero' // a silent host's backends count 0 connections and its slots move (no silentHosts)
  | 'udp-commit-first'; // UDP only: a host commits a datagram it has no entry for at once (no walk)

interface Result {
  sequences: number;
  events: number;
  steps: number;
  /** Planner steps held back only because the lagging replica did not show an acknowledgement yet. */
  heldByLag: number;
  published: number;
  checks: number;
  violations: number;
  /** Most host-to-host hops a delivered packet took, and the longest chain published. */
  maxHops: number;
  maxChain: number;
  /** Deliveries that needed at least 2 hops (reached through the chain beyond the second chance). */
  deepDeliveries: number;
  /** UDP: sequences, new flows, new flows that walked a chain (hops > 0), and the most hops one took to commit. */
  udpSequences: number;
  udpFlows: number;
  udpWalked: number;
  udpMaxNewHops: number;
  firstViolation?: string;
  /** How many planner notes of each kind (coverage of the transitions). */
  notes: Record<string, number>;
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
  /** Health check failing while up: refuses new connections, established ones work (the planner sees `draining`). */
  flapping: boolean;
}

interface Conn {
  readonly id: number;
  readonly hash: number;
  readonly key: string;
  readonly host: string;
}

function runSequences(seed: number, sequences: number, mutation: Mutation): Result {
  const rng = new Rng(seed);
  const rnd = (): number => rng.next();
  const int = (n: number): number => Math.floor(rnd() * n);
  // The replica's lag has a random stream of its own: the events of each sequence stay those of the check before it.
  const lagRng = new Rng(seed ^ 0x1a9);
  const res: Result = {
    sequences,
    events: 0,
    steps: 0,
    heldByLag: 0,
    published: 0,
    checks: 0,
    violations: 0,
    maxHops: 0,
    maxChain: 0,
    deepDeliveries: 0,
    udpSequences: 0,
    udpFlows: 0,
    udpWalked: 0,
    udpMaxNewHops: 0,
    notes: {},
  };

  for (let q = 0; q < sequences; q++) {
    let bits = 4 + int(2);
    const chainLength = 1 + int(4);
    // Long-lived connections: in half the sequences nothing ever closes. One sequence in four is long (96
    // events) and never closes: slots move again and again while every previous owner holds connections.
    const deep = rnd() < 0.25;
    const closes = !deep && rnd() < 0.5;
    const eventsPerSequence = deep ? 96 : 40;
    // Every other sequence (by number, so the random stream and the TCP sequences stay those of the TCP-only check).
    const udp = mutation === 'udp-commit-first' || q % 2 === 1;
    if (udp) res.udpSequences++;
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
        flapping: false,
      });
    }
    const config = (): Config => {
      const list: Backend[] = backends
        .filter((b) => b.inConfig)
        .map((b) => ({
          address: b.address,
          port: 8080,
          host: b.host,
          weight: b.weight,
          state: b.flapping && b.state === 'active' ? 'draining' : b.state,
        }));
      return {
        hashMode: 'dp_hash',
        slotBits: bits,
        chainLength,
        nodes: NODES,
        loadBalancers: [
          {
            name: LB,
            vip: '10.9.9.9',
            family: 4,
            protocol: udp ? 'udp' : 'tcp',
            ports: [80],
            backends: list,
          },
        ],
      };
    };
    const byKey = new Map(backends.map((b) => [b.key, b]));
    const mutate = (g: Generation): Generation => {
      if (mutation === 'drop-chain-member') return dropOlderMember(g);
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
      const lanes = planLanes(p).slice(); // the same owners, so the same lanes
      const pool: PoolPlan = { ...p, primary, second, phase, lanes };
      return { ...g, pools: new Map([[LB, pool]]) };
    };

    let now = 0;
    let latest = mutate(planNext({ config: config(), latest: null, connections: () => 0, now }).next!);
    const nGateways = 2 + int(3);
    const gateways: Generation[] = Array.from({ length: nGateways }, () => latest);
    // Names that stay with a gateway while others join and leave (the replica's acks are by name).
    const gwNames = gateways.map((_, i) => `gw${i}`);
    let gwJoined = nGateways;
    // Each host applies generations on its own: the lanes it walks are those of its generation.
    const hosts = HOSTS.slice(0, nHosts);
    const hostGen = new Map<string, Generation>(hosts.map((h) => [h, latest]));
    /** Hosts whose agent is silent: they stay on their generation, the planner does not wait for them. */
    const silent = new Set<string>();
    let conns: Conn[] = [];
    let nextConn = 0;
    let dirty = true;
    /** Every node's acknowledgement after each event: what the planner's lagging replica can show. */
    const ackLog: Map<string, number>[] = [];
    let ackSeen = 0;
    const ackNow = () =>
      new Map<string, number>([
        ...gateways.map((g, i): [string, number] => [gwNames[i]!, g.number]),
        ...hosts.map((h): [string, number] => [h, hostGen.get(h)!.number]),
      ]);

    /**
     * Host-to-host hops to deliver `c` from a gateway on `g`, or a reason it is not delivered. `c` undefined: a new
     * UDP flow's first datagram (no host holds it); the walk's end is returned as `{ hops, host }`.
     */
    const walk = (
      c: Conn | undefined,
      hash: number,
      g: Generation,
    ): number | string | { hops: number; host: string } => {
      const plan = g.pools.get(LB)!;
      const x = plan.primary[hash & ((1 << plan.bits) - 1)];
      if (x === NO_OWNER) return 'no primary';
      let host = plan.members[x].host;
      let counter = 0;
      for (let hops = 0; ; hops++) {
        if (host === c?.host) return hops;
        if (mutation === 'no-chain') return `not on ${host}, hosts never hand packets on`;
        if (mutation === 'udp-commit-first' && c !== undefined)
          return `not on ${host}, which commits the datagram anew on ${plan.members[x].key}: the flow changed backend`;
        if (mutation === 'one-hop') {
          const sc = plan.second[hash & ((1 << plan.bits) - 1)];
          if (counter > 0 || sc === NO_OWNER) return `not on ${host}, one hop only`;
          host = plan.members[sc].host;
          counter = 1;
          continue;
        }
        const hp = hostGen.get(host)!.pools.get(LB)!;
        const lanes = planLanes(hp);
        const base = (hash & ((1 << hp.bits) - 1)) * LANES;
        let next = -1;
        for (let l = counter; l < LANES && next < 0; l++) {
          const m = lanes[base + l];
          if (m !== NO_OWNER && hp.members[m].host !== host) next = l;
        }
        if (next < 0 && c === undefined) return { hops, host };
        if (next < 0)
          return (
            `not on ${host} (g${hostGen.get(host)!.number}) at counter ${counter}, no lane left` +
            (udp ? `: committed anew on ${plan.members[x].key}, the flow changed backend` : '')
          );
        host = hp.members[lanes[base + next]].host;
        counter = next + 1;
      }
    };

    /** A new UDP flow's first datagram: it walks the whole chain, then goes back to the primary's host (FLAG_COMMIT)
     *  unless the walk ended there; that host commits it, as it would a SYN. Checks the hop bound L + 2. */
    const newUdpFlowHops = (hash: number, g: Generation, primaryHost: string): void => {
      res.udpFlows++;
      const r = walk(undefined, hash, g);
      if (typeof r !== 'object') return; // a negative control that breaks walks (checked on the known flows)
      const hops = r.hops + (r.host === primaryHost ? 0 : 1);
      if (hops > 0) res.udpWalked++;
      res.udpMaxNewHops = Math.max(res.udpMaxNewHops, hops);
      if (hops > chainLength + 2) {
        res.violations++;
        res.firstViolation ??= `sequence ${q}: a new UDP flow took ${hops} hops to commit (L = ${chainLength})`;
      }
    };

    const check = (): void => {
      const seen = new Set<Generation>();
      for (const g of gateways) {
        if (seen.has(g)) continue;
        seen.add(g);
        for (const c of conns) {
          res.checks++;
          const r = walk(c, c.hash, g);
          if (typeof r === 'object') throw new Error('unreachable: a walk for a known flow');
          if (typeof r === 'number') {
            if (r > res.maxHops) res.maxHops = r;
            if (r >= 2) res.deepDeliveries++;
            if (r > chainLength + 1) {
              res.violations++;
              res.firstViolation ??= `sequence ${q}: connection ${c.id} took ${r} hops (L = ${chainLength})`;
            }
            continue;
          }
          res.violations++;
          res.firstViolation ??=
            `sequence ${q}: connection ${c.id} on ${c.key} (${c.host}) slot ${c.hash & ((1 << g.pools.get(LB)!.bits) - 1)} ` +
            `at a gateway on generation ${g.number}: ${r}`;
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
          if (udp && mutation !== 'udp-commit-first') newUdpFlowHops(hash, g, m.host);
          if (b.up) conns.push({ id: nextConn++, hash, key: m.key, host: m.host });
        }
      } else if (r < 33) {
        if (closes && conns.length > 0) conns.splice(int(conns.length), 1);
        dirty = true;
      } else if (r < 51) {
        // Gateways and hosts that lag acknowledge (apply) the latest generation: one of them, or each with
        // probability 1/2, in any order.
        const lagging = [
          ...gateways.flatMap((g, i) => (g === latest ? [] : [() => (gateways[i] = latest)])),
          ...hosts.flatMap((h) =>
            hostGen.get(h) === latest || silent.has(h) ? [] : [() => hostGen.set(h, latest)],
          ),
        ];
        if (lagging.length > 0) lagging[int(lagging.length)]();
        const more = rnd() < 0.5;
        for (const ack of lagging) {
          if (more && rnd() < 0.5) ack();
        }
      } else if (r < 69) {
        // Planner step, gated on every live gateway's and host's acknowledgement.
        // planNext is a pure function of (config, latest, counts, now); while none of them changed since it
        // last returned null it would return null again, so it is not called (the drain window is infinite, so
        // `now` does not matter; SYNs only add connections on primaries, which the planner does not count).
        const truth = ackNow();
        ackLog.push(truth);
        ackSeen = Math.max(ackSeen, ackLog.length - 1 - ACK_LAG);
        ackSeen += Math.floor(lagRng.next() * (ackLog.length - ackSeen));
        const seen = ackLog[ackSeen]!;
        const live = [...gwNames, ...hosts.filter((h) => !silent.has(h))];
        const acks = new Map(live.map((n): [string, number] => [n, seen.get(n) ?? 0]));
        const trueAcks = new Map(live.map((n): [string, number] => [n, truth.get(n)!]));
        if (dirty && !canPublish(acks, latest) && canPublish(trueAcks, latest)) res.heldByLag++;
        if (dirty && (mutation === 'ignore-acks' || canPublish(acks, latest))) {
          res.steps++;
          dirty = false;
          const counts = new Map<string, number>();
          const b = latest.pools.get(LB)!.bits;
          const mask = (1 << b) - 1;
          for (const c of conns) {
            if (silent.has(c.host)) continue; // no fresh report: the planner reads 0
            const k = `${c.key}|${c.hash & mask}`;
            counts.set(k, (counts.get(k) ?? 0) + 1);
          }
          const step = planNext({
            config: config(),
            latest,
            connections: (_lb, slot, key, bb) => {
              // bb < b: the planner also asks for the marks a grown pool's connections may carry (grownCounts);
              // this model marks every connection with its slot in the latest table (see the header).
              assert.ok(bb <= b);
              return counts.get(`${key}|${slot}`) ?? 0;
            },
            now,
            ...(mutation === 'silent-as-zero' ? {} : { silentHosts: silent }),
          });
          for (const n of step.notes) res.notes[n.kind] = (res.notes[n.kind] ?? 0) + 1;
          if (step.next !== null) {
            latest = mutate(step.next);
            res.published++;
            dirty = true;
            const lp = latest.pools.get(LB)!;
            const lanes = planLanes(lp);
            for (let s = 0; s < lp.primary.length; s++) {
              let n = -1; // owners but the primary
              for (let l = 0; l < LANES; l++) if (lanes[s * LANES + l] !== NO_OWNER) n++;
              if (n > res.maxChain) res.maxChain = n;
            }
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
          // A health flap: up, established connections work, new ones refused (then it recovers).
          actions.push(() => {
            b.flapping = !b.flapping;
          });
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
        if (gateways.length < 4) {
          gateways.push(latest);
          gwNames.push(`gw${gwJoined++}`);
        }
      } else if (r < 93) {
        if (gateways.length > 1) {
          const i = int(gateways.length);
          gateways.splice(i, 1);
          gwNames.splice(i, 1);
        }
      } else if (r < 94) {
        if (bits < 5) bits++;
        dirty = true;
      } else if (r < 96) {
        // A host's agent goes silent (its switch forwards on), or comes back and applies the latest generation.
        const h = hosts[int(hosts.length)];
        if (silent.delete(h)) hostGen.set(h, latest);
        else silent.add(h);
        dirty = true;
      } else {
        now += 1000 * (1 + int(30));
      }
      // Invariant of the gating: live gateways and hosts are at most one generation apart (a silent host may be
      // further behind: that is what the silent-host rule is for).
      if (mutation !== 'ignore-acks') {
        for (const g of [...gateways, ...hosts.filter((h) => !silent.has(h)).map((h) => hostGen.get(h)!)])
          assert.ok(latest.number - g.number <= 1, 'nodes two generations apart');
      }
      ackLog.push(ackNow());
      check();
    }
    if (T) console.log(trace.join('\n'));
  }
  return res;
}

/** Negative control: every chain of two or more previous owners loses its last older one (in use or not). */
function dropOlderMember(g: Generation): Generation {
  const p = g.pools.get(LB)!;
  const lanes = planLanes(p).slice();
  for (let s = 0; s < p.primary.length; s++) {
    for (let l = LANES - 1; l >= 0; l--) {
      const m = lanes[s * LANES + l];
      if (m !== NO_OWNER && m !== p.primary[s] && m !== p.second[s]) {
        lanes[s * LANES + l] = NO_OWNER;
        break;
      }
    }
  }
  return { ...g, pools: new Map([[LB, { ...p, lanes }]]) };
}

const SEQUENCES = Number(process.env.SLUICE_MODELCHECK_SEQUENCES ?? 100_000);
/** How many events the planner's replica of the acknowledgements may be behind. */
const ACK_LAG = 3;

if (!isMainThread) {
  answerJob<Mutation, Result>((job) => runSequences(job.seed, job.sequences, job.mutation));
} else {
  test(`model check: 0 violations over ${SEQUENCES} random event sequences`, async () => {
    const started = performance.now();
    const runs = await unmutatedInWorkers<Result>(import.meta.url, [0x5eed1, 0xc0ffee], SEQUENCES);
    const total = {
      sequences: 0,
      events: 0,
      steps: 0,
      heldByLag: 0,
      published: 0,
      checks: 0,
      violations: 0,
      deepDeliveries: 0,
      udpSequences: 0,
      udpFlows: 0,
      udpWalked: 0,
    };
    const notes: Record<string, number> = {};
    let maxHops = 0;
    let maxChain = 0;
    let udpMaxNewHops = 0;
    for (const r of runs) {
      udpMaxNewHops = Math.max(udpMaxNewHops, r.udpMaxNewHops);
      for (const k of Object.keys(total) as (keyof typeof total)[]) total[k] += r[k];
      maxHops = Math.max(maxHops, r.maxHops);
      maxChain = Math.max(maxChain, r.maxChain);
      for (const [k, n] of Object.entries(r.notes)) notes[k] = (notes[k] ?? 0) + n;
    }
    const ms = Math.round(performance.now() - started);
    console.log(`model check: ${JSON.stringify({ ...total, maxHops, maxChain, udpMaxNewHops })} in ${ms} ms`);
    console.log(`model check: planner notes by kind: ${JSON.stringify(notes)}`);
    assert.equal(total.violations, 0, runs.map((r) => r.firstViolation ?? '').join(' '));
    assert.equal(total.sequences, SEQUENCES);
    // The model exercised what it claims to: many generations published, many deliveries checked.
    assert.ok(total.published > SEQUENCES, `only ${total.published} generations published`);
    assert.ok(total.checks > 10 * SEQUENCES, `only ${total.checks} deliveries checked`);
    // The replica's lag held steps back (acks it did not show yet), and only that: it can only make the planner wait.
    assert.ok(total.heldByLag > SEQUENCES / 10, `only ${total.heldByLag} steps held by the lagging replica`);
    // Chains were used: slots kept several previous owners, and packets were delivered through them.
    assert.ok(maxChain >= 3, `longest chain ${maxChain}`);
    assert.ok(total.deepDeliveries > 0, 'no delivery needed more than one hop');
    // UDP sequences ran, and new UDP flows walked chains before they were committed.
    assert.ok(total.udpSequences > SEQUENCES / 3, `only ${total.udpSequences} UDP sequences`);
    assert.ok(
      total.udpWalked > 0 && udpMaxNewHops >= 3,
      `UDP walks: ${total.udpWalked}, max ${udpMaxNewHops}`,
    );
    // Every kind of transition happened, the rare ones included.
    for (const kind of [
      'phase1',
      'phase2',
      'stable',
      'retarget',
      'waits',
      'chain-full',
      'down-primary',
      'grow',
      'no-owner',
      'silent-host',
    ]) {
      assert.ok((notes[kind] ?? 0) > 0, `no '${kind}' transition in the whole run`);
    }
  });

  for (const mutation of [
    'no-chain',
    'one-hop',
    'drop-chain-member',
    'skip-phase1',
    'ignore-acks',
    'silent-as-zero',
    'udp-commit-first',
  ] as const) {
    test(`negative control: the same model with ${mutation} finds violations`, () => {
      const r = runSequences(0xbad, 2_000, mutation);
      console.log(`negative control ${mutation}: ${r.violations} violations; first: ${r.firstViolation}`);
      assert.ok(r.violations > 0, `${mutation}: no violation found, so the model check could not fail`);
    });
  }
}
