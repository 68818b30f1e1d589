// Named scenarios: traces built for a scale. Pure. `sluice sim --list` prints them.

import type { EcmpMode } from './ecmp.ts';
import {
  checkTrace,
  type DatapathHash,
  DEFAULT_LIFETIMES,
  DEFAULT_TIMING,
  type Scale,
  type Timing,
  TOPOLOGIES,
  type Topology,
  type Trace,
  type TraceEvent,
} from './trace.ts';

export interface Scenario {
  readonly name: string;
  readonly description: string;
  build(scale: Scale): Trace;
}

/** Time the single-event scenarios leave before the event (the run reaches steady state at t = 0 already). */
const T0 = 60;

function trace(
  name: string,
  description: string,
  scale: Scale,
  events: TraceEvent[],
  opts: {
    duration?: number;
    timing?: Partial<Timing>;
    ecmp?: EcmpMode;
    topology?: Partial<Topology>;
    datapathHash?: DatapathHash;
  } = {},
): Trace {
  const timing = { ...DEFAULT_TIMING, ...opts.timing };
  const t: Trace = {
    name,
    description,
    topology: { ...TOPOLOGIES[scale], ...opts.topology },
    ecmp: opts.ecmp ?? 'hash-threshold',
    datapathHash: opts.datapathHash ?? 'shared',
    timing,
    lifetimes: DEFAULT_LIFETIMES,
    // Long enough for sluice's phases and the drain window to finish after the last event.
    durationSeconds:
      opts.duration ?? Math.max(...events.map((e) => e.at), 0) + timing.drainWindowSeconds + 60,
    events,
  };
  checkTrace(t);
  return t;
}

function single(
  name: string,
  description: string,
  event: (topo: Topology) => Omit<TraceEvent, 'at'>,
): Scenario {
  return {
    name,
    description,
    build: (scale) => trace(name, description, scale, [{ at: T0, ...event(TOPOLOGIES[scale]) }]),
  };
}

const mid = (topo: Topology) => Math.floor(topo.gateways / 2);

export const SCENARIOS: readonly Scenario[] = [
  single('backend-add', 'one backend joins vip0', () => ({ type: 'backend-add', vip: 0 })),
  single('backend-remove', 'backend 1 is removed and stopped at once (no drain)', () => ({
    type: 'backend-remove',
    backend: 1,
  })),
  single('backend-drain', 'backend 1 drains; it is stopped when the drain window ends', () => ({
    type: 'backend-drain',
    backend: 1,
  })),
  single('backend-fail', 'backend 1 fails; health checks notice it after detectSeconds', () => ({
    type: 'backend-fail',
    backend: 1,
  })),
  single('gateway-add', 'one gateway joins the upstream ECMP set', () => ({ type: 'gateway-add' })),
  single('gateway-remove', 'a gateway in the middle of the ECMP list is withdrawn gracefully', (topo) => ({
    type: 'gateway-remove',
    gateway: mid(topo),
  })),
  single('gateway-crash', 'gateway 0 crashes (it is the active gateway of the stateful strategy)', () => ({
    type: 'gateway-crash',
    gateway: 0,
  })),
  {
    name: 'gateway-crash-standby',
    description: 'a gateway in the middle of the ECMP list crashes (a standby for the stateful strategy)',
    build: (scale) =>
      trace('gateway-crash-standby', 'a standby gateway crashes', scale, [
        { at: T0, type: 'gateway-crash', gateway: mid(TOPOLOGIES[scale]) },
      ]),
  },
  {
    name: 'gateway-crash-modulo',
    description: 'gateway-crash-standby with a modulo-N upstream ECMP hash instead of hash-threshold',
    build: (scale) =>
      trace(
        'gateway-crash-modulo',
        'a standby gateway crashes, modulo-N ECMP',
        scale,
        [{ at: T0, type: 'gateway-crash', gateway: mid(TOPOLOGIES[scale]) }],
        { ecmp: 'modulo' },
      ),
  },
  {
    name: 'gateway-crash-kernel',
    description:
      'gateway-crash-standby with a per-gateway dp_hash seed (kernel datapath): gateways disagree on the hash',
    build: (scale) =>
      trace(
        'gateway-crash-kernel',
        'a standby gateway crashes, each gateway seeds dp_hash differently',
        scale,
        [{ at: T0, type: 'gateway-crash', gateway: mid(TOPOLOGIES[scale]) }],
        { datapathHash: 'per-gateway' },
      ),
  },
  {
    name: 'rolling-update',
    description:
      'gateways apply each change up to 60 s apart; gateways join, crash and leave while a backend is added and another drained',
    build: (scale) => {
      const topo = TOPOLOGIES[scale];
      return trace(
        'rolling-update',
        'changes rolled out over 60 s with gateway churn during the rollout',
        scale,
        [
          { at: 60, type: 'backend-add', vip: 0 },
          { at: 80, type: 'gateway-crash', gateway: 1 },
          { at: 100, type: 'gateway-add' },
          { at: 500, type: 'backend-drain', backend: 2 },
          { at: 520, type: 'gateway-remove', gateway: mid(topo) },
          { at: 540, type: 'gateway-add' },
        ],
        { timing: { applySpreadSeconds: 60 } },
      );
    },
  },
  {
    name: 'rolling-update-ungated',
    description:
      'rolling-update with sluice ungated (ablation): phases published without waiting for every gateway',
    build: (scale) => {
      const base = findScenario('rolling-update')!.build(scale);
      const t: Trace = {
        ...base,
        name: 'rolling-update-ungated',
        description: 'rolling-update, sluice publishes phases without waiting for acknowledgements',
        timing: { ...base.timing, sluiceGating: false },
      };
      checkTrace(t);
      return t;
    },
  },
  {
    name: 'rapid-changes',
    description:
      'backends added and drained on vip0 every 10 s: slots move again while their previous owners hold connections (chains)',
    build: (scale) =>
      trace('rapid-changes', 'five changes of vip0, 10 s apart', scale, [
        { at: 60, type: 'backend-add', vip: 0 },
        { at: 70, type: 'backend-drain', backend: 0 },
        { at: 80, type: 'backend-add', vip: 0 },
        { at: 90, type: 'backend-drain', backend: 10 },
        { at: 100, type: 'backend-add', vip: 0 },
      ]),
  },
  {
    name: 'churn',
    description: 'every event type in one run, one every 400 s (the main comparison)',
    build: (scale) => {
      const topo = TOPOLOGIES[scale];
      return trace('churn', 'every event type, 400 s apart', scale, [
        { at: 60, type: 'backend-add', vip: 0 },
        { at: 460, type: 'backend-drain', backend: 3 },
        { at: 860, type: 'backend-fail', backend: 5 },
        { at: 1260, type: 'backend-remove', backend: 7 },
        { at: 1660, type: 'gateway-add' },
        { at: 2060, type: 'gateway-remove', gateway: mid(topo) },
        { at: 2460, type: 'gateway-crash', gateway: 0 },
      ]);
    },
  },
];

export function findScenario(name: string): Scenario | undefined {
  return SCENARIOS.find((s) => s.name === name);
}
