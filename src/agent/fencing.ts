// A gateway agent's place in the upstream ECMP set, as an explicit state machine (the daemon runs the actions).
// Design and safety argument: docs/design/control-plane.md "Fencing (gateways)".
//
// The rule: a gateway leaves ECMP only when it knows the others are moving on without it, never merely
// because the store is silent. A silent store is far more often the store or its network failing than the planner
// publishing past this gateway, and the planner publishes past a silent gateway only after it took it out by a
// means that needs no cooperation from it (its fence command, or the operator's `node confirm-fenced`). So while
// no store answers, the gateway keeps forwarding on the generation it applied, indefinitely.

export type FenceState =
  /** Just started: may or may not be in ECMP (a restarted agent). Rejoins once it applied the released generation. */
  | 'unknown'
  /** In ECMP, forwarding on the generation it applied. */
  | 'announced'
  /** Took itself out (ran --withdraw-cmd). */
  | 'withdrawn'
  /** The planner's fence command took it out (its record is on this gateway's Node_Status row). */
  | 'fenced-by-planner'
  /** The operator confirmed it is out (`sluice node confirm-fenced`). */
  | 'fenced-by-operator'
  /** Acknowledged the released generation (the rejoin ack) and runs --announce-cmd. */
  | 'rejoining';

export type FenceEvent =
  /** No successful store transaction for more than the lease. Not a reason to leave (see the header), except under
   *  the old rule (`withdrawOnStoreSilence`, kept only as the negative control of the outage tests). */
  | 'store-silent'
  /** Applying the released generation has failed for more than the lease (the store answers: the planner waits). */
  | 'apply-failing'
  /** The released generation is two or more ahead of the one applied: the others moved on without this gateway. */
  | 'behind'
  /** Its own ovs-vswitchd is gone, or restarted and not yet programmed again: it would black-hole what it gets. */
  | 'datapath-down'
  /** Its datapath's hash cannot agree with the other gateways' in the applied hash mode (src/agent/datapath.ts): a
   *  connection ECMP moves to it would land in another slot. */
  | 'cannot-agree'
  /** A fence record on this gateway's own Node_Status row. */
  | 'planner-record'
  | 'operator-record'
  /** A planner's fence record decided on a view older than this gateway's latest rejoin: it does not count (the
   *  planner waits for the gateway), but its command may have run after the announce and taken the gateway out. */
  | 'raced-record'
  /** The rejoin ack (with `wait gateway_generation == applied`) committed. */
  | 'rejoin-acked'
  | 'announce-ok'
  | 'announce-failed';

/** What the daemon does on the transition: run --withdraw-cmd (the state changes only if it succeeds), run
 *  --announce-cmd in the background (its result is the next event), or nothing. */
export type FenceAction = 'withdraw' | 'announce' | 'none';

export interface FenceTransition {
  readonly to: FenceState;
  readonly action: FenceAction;
}

export interface FencePolicy {
  /** The old rule: withdraw after a lease without the store. For the negative control only. */
  readonly withdrawOnStoreSilence?: boolean;
}

const withdraw = { to: 'withdrawn', action: 'withdraw' } as const;
const byPlanner = { to: 'fenced-by-planner', action: 'none' } as const;
const byOperator = { to: 'fenced-by-operator', action: 'none' } as const;
const rejoin = { to: 'rejoining', action: 'announce' } as const;

/** Every transition; a (state, event) pair not listed leaves the state as it is, with no action. */
export const FENCE_TABLE: Readonly<
  Record<FenceState, Readonly<Partial<Record<FenceEvent, FenceTransition>>>>
> = {
  unknown: {
    'apply-failing': withdraw,
    'datapath-down': withdraw,
    'cannot-agree': withdraw,
    'planner-record': byPlanner,
    'operator-record': byOperator,
    'rejoin-acked': rejoin,
  },
  announced: {
    'apply-failing': withdraw,
    behind: withdraw,
    'datapath-down': withdraw,
    'cannot-agree': withdraw,
    // Out already (the fence command did it): no command, then rejoin like after a withdrawal of its own.
    'planner-record': byPlanner,
    'operator-record': byOperator,
    // Maybe out, maybe in: announce again, through a rejoin (which deletes the record).
    'raced-record': { to: 'unknown', action: 'none' },
  },
  withdrawn: { 'rejoin-acked': rejoin },
  'fenced-by-planner': { 'rejoin-acked': rejoin },
  'fenced-by-operator': { 'rejoin-acked': rejoin },
  rejoining: {
    'announce-ok': { to: 'announced', action: 'none' },
    // The command may have half run: `unknown` (may be in ECMP) keeps the planner waiting for this gateway.
    'announce-failed': { to: 'unknown', action: 'none' },
  },
};

/** Only under `withdrawOnStoreSilence` (the old rule). */
const SILENCE_TABLE: Readonly<Partial<Record<FenceState, FenceTransition>>> = {
  unknown: withdraw,
  announced: withdraw,
};

/** The transition for `event` in `state`, or undefined when the state stays as it is. */
export function nextFence(
  state: FenceState,
  event: FenceEvent,
  policy: FencePolicy = {},
): FenceTransition | undefined {
  if (event === 'store-silent') return policy.withdrawOnStoreSilence ? SILENCE_TABLE[state] : undefined;
  return FENCE_TABLE[state][event];
}

/** States in which the agent tells the planner it is out of ECMP (Node_Status external_ids:fenced=true). */
export function reportsFenced(state: FenceState): boolean {
  return state === 'withdrawn' || state === 'fenced-by-planner' || state === 'fenced-by-operator';
}

/** States from which the agent rejoins once it applied the released generation (the rejoin ack, then announce). */
export function mayRejoin(state: FenceState): boolean {
  return nextFence(state, 'rejoin-acked') !== undefined;
}
