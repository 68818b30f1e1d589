// Operational state of a backend: the admin state the operator declared (model/types.ts AdminState), refined
// by what the rollout has done so far. An explicit state machine: a string-literal union and a transition table
// that names the event behind every allowed transition. Pure.

import type { AdminState } from '../model/types.ts';

/**
 * - `filling`: admin `active`, but holds fewer primary slots than its quota: it is taking slots through the
 *   phases (a rollout is in progress, or waiting for a second chance to drain).
 * - `active`: admin `active` and holds its quota of primary slots.
 * - `draining`: admin `draining`, or removed from the config while a plan still refers to it: it gives up its
 *   slots through the phases and keeps its connections through second chance.
 * - `down`: admin `down` (failed health checks), or removed together with its host: its slots move at once
 *   (two generations, see docs/design/rollout.md); its connections are lost, nothing else is.
 */
export type BackendState = 'filling' | 'active' | 'draining' | 'down';

export const BACKEND_STATES: readonly BackendState[] = ['filling', 'active', 'draining', 'down'];

/** Every allowed transition, with the event that causes it. A transition not listed here is a bug. */
export const BACKEND_TRANSITIONS: {
  readonly [F in BackendState]: { readonly [T in BackendState]?: string };
} = {
  filling: {
    active: 'it holds its quota of primary slots (the phases completed)',
    draining: 'the operator drained or removed it',
    down: 'it failed its health checks or the operator set it down',
  },
  active: {
    filling: 'its quota grew (weight raised, another backend drained, down or removed)',
    draining: 'the operator drained or removed it',
    down: 'it failed its health checks or the operator set it down',
  },
  draining: {
    filling: 'the operator set it active again (it takes its slots back through the phases)',
    active: 'the operator set it active again before any of its slots had moved',
    down: 'it failed its health checks or the operator set it down',
  },
  down: {
    filling: 'it is up again and takes slots through the phases',
    active: 'it is up again and still holds its quota (no other backend could take its slots)',
    draining: 'it is up again, drained',
  },
};

/** The operational state of one backend; `admin` undefined means it was removed from the config. */
export function backendState(
  admin: AdminState | undefined,
  primarySlots: number,
  quota: number,
  hostKnown = true,
): BackendState {
  if (admin === undefined) return hostKnown ? 'draining' : 'down';
  if (admin === 'down') return 'down';
  if (admin === 'draining') return 'draining';
  return primarySlots < quota ? 'filling' : 'active';
}

/** Whether `from` -> `to` is an allowed transition (staying in a state always is). */
export function canTransition(from: BackendState, to: BackendState): boolean {
  return from === to || BACKEND_TRANSITIONS[from][to] !== undefined;
}

/** The event behind `from` -> `to`; throws on a transition the table does not allow. */
export function transitionReason(from: BackendState, to: BackendState): string {
  if (from === to) return 'unchanged';
  const why = BACKEND_TRANSITIONS[from][to];
  if (why === undefined) throw new Error(`backend state: ${from} -> ${to} is not an allowed transition`);
  return why;
}
