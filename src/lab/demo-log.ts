// What `sluice demo` narrates of the control plane: the planners' and agents' JSON logs, followed as they grow, and
// the records worth one line each. Also the demo's counters line.

import { readFileSync, statSync } from 'node:fs';
import type { ControlPlane } from './control-plane.ts';
import type { TrafficCounters } from './traffic.ts';

/** One counters line: totals and alive/opened per backend. */
export function counterLine(c: TrafficCounters): string {
  const per = Object.entries(c.perBackend)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, b]) => `${k} ${b.alive}/${b.opened}${b.broken ? ` (${b.broken} broken)` : ''}`)
    .join('  ');
  return `opened ${c.opened}  alive ${c.alive}  closed ${c.closed}  broken ${c.broken}  failed ${c.failed}  |  ${per}`;
}

/** A planner's record worth narrating, one line (undefined: not shown). */
function describePlannerRecord(proc: string, r: Record<string, unknown>): string | undefined {
  const msg = String(r.msg ?? '');
  switch (r.event) {
    case 'publish':
    case 'release':
    case 'fence':
    case 'fenced':
    case 'fence-failed':
      return `${proc}: ${msg}`;
    case 'fence-held':
      return (r.nodes as string[] | undefined)?.length ? `${proc}: ${msg}` : undefined;
    case 'wait':
      // Hosts acknowledge within a second and connection reports come every second: only gateways are news.
      return r.on === 'gateways' ? `${proc}: ${msg}` : undefined;
    case 'idle': {
      const waits = (r.waits as string[] | undefined) ?? [];
      return `${proc}: ${msg}${waits.length ? `; waiting for connections to close: ${waits.join('; ')}` : ''}`;
    }
    case 'lock':
      return r.state === 'held' ? `${proc}: holds the planner lock (active)` : undefined;
    default:
      return undefined;
  }
}

/** The log records of the control plane worth narrating, one line each (undefined: not shown). */
export function describeRecord(proc: string, r: Record<string, unknown>): string | undefined {
  if (proc.startsWith('planner-')) return describePlannerRecord(proc, r);
  const msg = String(r.msg ?? '');
  switch (r.event) {
    case 'applied':
      // A host whose generation moved no slot of its own changes nothing: not news either.
      return proc.startsWith('agent-host') && r.changed === false
        ? undefined
        : `${proc.replace(/^agent-/, '')} agent: ${msg}`;
    case 'apply-failed':
    case 'fence':
    case 'store-silent':
    case 'withdrawn':
    case 'announced':
    case 'vswitchd-restart':
    case 'vswitchd-down':
    case 'rejoin-retry':
      return `${proc.replace(/^agent-/, '')} agent: ${msg}`;
    default:
      return undefined;
  }
}

/** Reads the planners' and agents' JSON logs as they grow and hands each new record on. */
export class LogFollower {
  readonly #cp: ControlPlane;
  readonly #onRecord: (proc: string, r: Record<string, unknown>) => void;
  readonly #offsets = new Map<string, number>();

  constructor(cp: ControlPlane, onRecord: (proc: string, r: Record<string, unknown>) => void) {
    this.#cp = cp;
    this.#onRecord = onRecord;
  }

  poll(): void {
    for (const p of this.#cp.processes()) {
      if (p.name === 'store') continue;
      const from = this.#offsets.get(p.name) ?? 0;
      let size: number;
      try {
        size = statSync(p.logFile).size;
      } catch {
        continue;
      }
      if (size <= from) continue;
      const text = readFileSync(p.logFile).subarray(from, size).toString('utf8');
      const end = text.lastIndexOf('\n');
      if (end < 0) continue;
      this.#offsets.set(p.name, from + Buffer.byteLength(text.slice(0, end + 1)));
      for (const line of text.slice(0, end).split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          this.#onRecord(p.name, JSON.parse(line) as Record<string, unknown>);
        } catch {
          /* not a record */
        }
      }
    }
  }
}
