// The simulator's input: a trace (topology, timing, connection mix, events). JSON format documented in
// docs/evaluation.md ("Trace files"). Pure: parsing takes already-decoded JSON.

import { z } from 'zod';
import { type Issue, SluiceError } from '../model/errors.ts';
import { ECMP_MODES, type EcmpMode } from './ecmp.ts';

export type Scale = 'small' | 'full';
export const SCALES: readonly Scale[] = ['small', 'full'];

export interface Topology {
  /** Concurrent connections (exact: each is a renewal process, see docs/evaluation.md). */
  readonly connections: number;
  /** Gateways in the upstream ECMP set at the start (ids 0..gateways-1). */
  readonly gateways: number;
  /** Backends at the start (ids 0..backends-1), spread round-robin over the VIPs. */
  readonly backends: number;
  readonly vips: number;
  /** Share of backends that also serve the next VIP (a backend in two VIPs). */
  readonly sharedFraction: number;
  /** Slot table bits k (2^k slots per VIP) for the slot-table strategies. */
  readonly slotBits: number;
}

export const TOPOLOGIES: Readonly<Record<Scale, Topology>> = {
  small: { connections: 20_000, gateways: 8, backends: 40, vips: 2, sharedFraction: 0.1, slotBits: 10 },
  full: {
    connections: 1_000_000,
    gateways: 100,
    backends: 1000,
    vips: 10,
    sharedFraction: 0.1,
    slotBits: 12,
  },
};

export interface Timing {
  /** Each gateway applies a published change after a uniform random delay in [0, this] seconds. */
  readonly applySpreadSeconds: number;
  /** From the last gateway applying a generation to the planner seeing every acknowledgement. */
  readonly ackLatencySeconds: number;
  /** How long a drained backend keeps serving before the operator stops it (its remaining connections break,
   *  for every strategy: the server is gone). */
  readonly drainWindowSeconds: number;
  /** sluice's optional drain window (a full chain may then drop a previous owner); undefined: none, the default. */
  readonly sluiceDrainWindowSeconds?: number;
  /** sluice's chain bound L; undefined: the default (4). */
  readonly sluiceChainLength?: number;
  /** How often the sluice planner re-reads connection counts while second chances are in use. */
  readonly drainCheckSeconds: number;
  /** Health-check detection delay after a backend failure (new connections sent to it meanwhile fail). */
  readonly detectSeconds: number;
  /** conntrackd replication lag (strategy ct_sync): entries younger than this are not on the peers yet. */
  readonly syncLagSeconds: number;
  /**
   * Ablation: false makes sluice publish its next generation ackLatencySeconds after the previous one, without
   * waiting for every gateway's acknowledgement (default true: gated, as designed).
   */
  readonly sluiceGating?: boolean;
}

export const DEFAULT_TIMING: Timing = {
  applySpreadSeconds: 2,
  ackLatencySeconds: 0.2,
  drainWindowSeconds: 300,
  drainCheckSeconds: 5,
  detectSeconds: 3,
  syncLagSeconds: 0.2,
};

/** One class of connections: a share of arrivals with lognormal lifetimes. */
export interface LifetimeClass {
  readonly name: string;
  /** Share of arrivals (the classes' shares are normalised). */
  readonly share: number;
  readonly medianSeconds: number;
  /** Lognormal shape (standard deviation of ln lifetime). */
  readonly sigma: number;
}

/** Heavy-tailed default mix: many short requests, some minutes-long, a few long-lived sessions. */
export const DEFAULT_LIFETIMES: readonly LifetimeClass[] = [
  { name: 'short', share: 0.9, medianSeconds: 5, sigma: 1.2 },
  { name: 'medium', share: 0.09, medianSeconds: 120, sigma: 1 },
  { name: 'long-lived', share: 0.01, medianSeconds: 1800, sigma: 1 },
];

export const EVENT_TYPES = [
  'backend-add',
  'backend-remove',
  'backend-drain',
  'backend-fail',
  'gateway-add',
  'gateway-remove',
  'gateway-crash',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export interface TraceEvent {
  /** Seconds from the start of the run. */
  readonly at: number;
  readonly type: EventType;
  /** backend-add: the VIP the new backend joins (default 0). */
  readonly vip?: number;
  /** backend-remove/drain/fail: the backend id. */
  readonly backend?: number;
  /** gateway-remove/crash: the gateway id. */
  readonly gateway?: number;
  /** Optional label shown in reports. */
  readonly label?: string;
  /**
   * backend-remove only: the backend leaves its VIPs but its server keeps running (an operator removes a healthy
   * VM from the pool). Its connections are then not lost by the removal itself; a strategy breaks them or not.
   */
  readonly keepServing?: boolean;
}

/** A backend of an explicit world (lab validation): its address and port, as the lab's config names it. */
export interface ExplicitBackend {
  readonly address: string;
  readonly port?: number;
  /**
   * The node that hosts it. Backends on one host share that host's conntrack: a connection whose new pick is
   * another backend of the same host still finds its entry there (deferred DNAT) and keeps its backend. Default:
   * a host of its own (as in generated topologies).
   */
  readonly host?: string;
}

/** One connection of an explicit world, as observed in the lab before the events. */
export interface ExplicitConnection {
  /** VIP index (into `pools`). */
  readonly vip: number;
  /** The slot the gateway computed (host conntrack ct_mark & 0xffff): strategies 4, 5 and 7 use it. */
  readonly slot: number;
  /** Strategy 3's hash basis for this 5-tuple (OVS's select-group fields hash, src/sim/ovshash.ts); default slot. */
  readonly hash?: number;
  /** The backend id it is connected to now. */
  readonly backend: number;
}

/**
 * Explicit mode (lab validation): instead of sampled connections and a generated topology, exactly these backends,
 * pools and connections. Connections live through the whole run (no arrivals); backend ids index `backends`; ids
 * not in any pool are the ones `backend-add` events add, in order; backend keys (slot tables, planner) come from
 * the addresses, so tables equal the lab's. Strategy 3 scores buckets with OVS's own `hash_int` (ovshash.ts), the
 * bucket id being the backend id.
 */
export interface ExplicitWorld {
  readonly backends: readonly ExplicitBackend[];
  /** Initial members of each VIP, in operator order (ids 0..n-1 must all appear). */
  readonly pools: readonly (readonly number[])[];
  readonly connections: readonly ExplicitConnection[];
}

/**
 * 'shared': every gateway computes the same datapath hash of a 5-tuple (userspace datapath, or a `fields` hash).
 * 'per-gateway': each gateway's dp_hash has its own seed (kernel datapath: seeded per boot). Strategies that
 * read dp_hash (2, 4, 5, 7) then pick differently on each gateway; strategy 3 hashes fields and is unaffected.
 */
export type DatapathHash = 'shared' | 'per-gateway';

export interface Trace {
  readonly name: string;
  readonly description: string;
  readonly topology: Topology;
  readonly ecmp: EcmpMode;
  readonly datapathHash?: DatapathHash;
  readonly timing: Timing;
  readonly lifetimes: readonly LifetimeClass[];
  readonly durationSeconds: number;
  readonly events: readonly TraceEvent[];
  /** Explicit backends and connections instead of generated ones (topology then follows from it). */
  readonly explicit?: ExplicitWorld;
}

const TopologySchema = z.strictObject({
  connections: z.number().int().min(1).max(5_000_000),
  gateways: z.number().int().min(1).max(1000),
  backends: z.number().int().min(1).max(60_000),
  vips: z.number().int().min(1).max(1000),
  sharedFraction: z.number().min(0).max(1),
  slotBits: z.number().int().min(4).max(16),
});

const TimingSchema = z.strictObject({
  applySpreadSeconds: z.number().min(0),
  ackLatencySeconds: z.number().min(0),
  drainWindowSeconds: z.number().positive(),
  sluiceDrainWindowSeconds: z.number().positive().optional(),
  sluiceChainLength: z.number().int().min(1).max(7).optional(),
  drainCheckSeconds: z.number().positive(),
  detectSeconds: z.number().min(0),
  syncLagSeconds: z.number().min(0),
  sluiceGating: z.boolean(),
});

const EventSchema = z.strictObject({
  at: z.number().min(0),
  type: z.enum(EVENT_TYPES),
  vip: z.number().int().min(0).optional(),
  backend: z.number().int().min(0).optional(),
  gateway: z.number().int().min(0).optional(),
  label: z.string().optional(),
  keepServing: z.boolean().optional(),
});

const ExplicitSchema = z.strictObject({
  backends: z.array(
    z.strictObject({
      address: z.string().min(1),
      port: z.number().int().min(1).max(65535).optional(),
      host: z.string().min(1).optional(),
    }),
  ),
  pools: z.array(z.array(z.number().int().min(0))).min(1),
  connections: z
    .array(
      z.strictObject({
        vip: z.number().int().min(0),
        slot: z.number().int().min(0).max(0xffff),
        hash: z.number().int().min(0).max(0xffffffff).optional(),
        backend: z.number().int().min(0),
      }),
    )
    .min(1),
});

export const TraceFileSchema = z.strictObject({
  name: z.string().min(1),
  description: z.string().default(''),
  scale: z.enum(['small', 'full']).optional(),
  topology: TopologySchema.partial().optional(),
  ecmp: z.enum(ECMP_MODES as [EcmpMode, ...EcmpMode[]]).default('hash-threshold'),
  datapathHash: z.enum(['shared', 'per-gateway']).default('shared'),
  timing: TimingSchema.partial().optional(),
  lifetimes: z
    .array(
      z.strictObject({
        name: z.string(),
        share: z.number().positive(),
        medianSeconds: z.number().positive(),
        sigma: z.number().min(0).max(4),
      }),
    )
    .min(1)
    .optional(),
  durationSeconds: z.number().positive(),
  events: z.array(EventSchema),
  explicit: ExplicitSchema.optional(),
});

/**
 * Validates a decoded trace file. `scale` (from the command line) picks the base topology; the file's `scale`
 * wins over it, and the file's `topology` fields override single values.
 */
export function parseTrace(input: unknown, scale: Scale = 'small'): Trace {
  const r = TraceFileSchema.safeParse(input);
  if (!r.success) {
    const issues: Issue[] = r.error.issues.map((i) => ({
      code: 'SLUICE_E_USAGE',
      path: i.path.map(String).join('.'),
      message: i.message,
    }));
    throw new SluiceError(
      'SLUICE_E_USAGE',
      `invalid trace: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`,
      issues,
    );
  }
  const f = r.data;
  const base: Topology = { ...TOPOLOGIES[f.scale ?? scale], ...f.topology };
  const topology = f.explicit ? explicitTopology(base, f.explicit) : base;
  const trace: Trace = {
    name: f.name,
    description: f.description,
    topology,
    ecmp: f.ecmp,
    datapathHash: f.datapathHash,
    timing: { ...DEFAULT_TIMING, ...f.timing },
    lifetimes: f.lifetimes ?? DEFAULT_LIFETIMES,
    durationSeconds: f.durationSeconds,
    events: [...f.events].sort((a, b) => a.at - b.at),
    ...(f.explicit ? { explicit: f.explicit } : {}),
  };
  checkTrace(trace);
  return trace;
}

/** The topology an explicit world implies (connections, backends, VIPs); gateways and slot bits from `base`. */
export function explicitTopology(base: Topology, w: ExplicitWorld): Topology {
  const initial = new Set(w.pools.flat());
  return {
    ...base,
    connections: w.connections.length,
    backends: initial.size,
    vips: w.pools.length,
    sharedFraction: 0,
  };
}

/** Semantic checks: events refer to things that exist when they happen, and happen inside the run. */
export function checkTrace(trace: Trace): void {
  const issues: Issue[] = [];
  const t = trace.topology;
  let backends = t.backends;
  let gateways = t.gateways;
  trace.events.forEach((e, i) => {
    const path = `events.${i}`;
    const bad = (message: string) => issues.push({ code: 'SLUICE_E_USAGE', path, message });
    if (e.at > trace.durationSeconds) bad(`at ${e.at} is after durationSeconds ${trace.durationSeconds}`);
    if (e.type === 'backend-add') {
      if ((e.vip ?? 0) >= t.vips) bad(`vip ${e.vip} does not exist (vips: ${t.vips})`);
      backends++;
    } else if (e.type.startsWith('backend-')) {
      if (e.backend === undefined) bad(`${e.type} needs "backend"`);
      else if (e.backend >= backends) bad(`backend ${e.backend} does not exist yet`);
    } else if (e.type === 'gateway-add') {
      gateways++;
    } else if (e.gateway === undefined) bad(`${e.type} needs "gateway"`);
    else if (e.gateway >= gateways) bad(`gateway ${e.gateway} does not exist yet`);
    if (e.keepServing !== undefined && e.type !== 'backend-remove')
      bad('keepServing is for backend-remove only');
  });
  const w = trace.explicit;
  if (w !== undefined) {
    const bad = (path: string, message: string) => issues.push({ code: 'SLUICE_E_USAGE', path, message });
    const initial = new Set(w.pools.flat());
    for (let b = 0; b < initial.size; b++)
      if (!initial.has(b)) bad('explicit.pools', `backend ${b} is in no pool`);
    if (w.backends.length < backends)
      bad('explicit.backends', `${backends} backends needed, ${w.backends.length} given`);
    if (t.connections !== w.connections.length || t.vips !== w.pools.length || t.backends !== initial.size)
      bad('topology', 'explicit: topology must follow from the explicit world (use explicitTopology)');
    w.connections.forEach((c, i) => {
      const path = `explicit.connections.${i}`;
      if (c.vip >= w.pools.length) bad(path, `vip ${c.vip} does not exist`);
      else if (!w.pools[c.vip].includes(c.backend))
        bad(path, `backend ${c.backend} is not in vip ${c.vip}'s pool`);
      if (c.slot >= 2 ** t.slotBits) bad(path, `slot ${c.slot} >= 2^${t.slotBits}`);
    });
  }
  if (issues.length > 0) {
    throw new SluiceError(
      'SLUICE_E_USAGE',
      `invalid trace: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`,
      issues,
    );
  }
}
