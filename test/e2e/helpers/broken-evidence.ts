// What a control-plane e2e test prints when a connection it expected to survive broke: enough to tell why, even in
// CI, where the lab's logs are removed at teardown. For each broken connection (a few at most): the hosts' conntrack
// entries for its client port (which backend, which slot it was committed in), that slot in every generation the
// test saw published (owners in lane order, phase; when published and released), what each host reported for the
// slot (the counts the planner lets previous owners go on), which node applied what around the break, its switch's
// warnings (a long poll interval delays every packet through it), and the planner's decisions over the same window.
// Bounded: about a hundred lines.

import { readFileSync } from 'node:fs';
import { parseConntrack } from '../../../src/agent/node-ops.ts';
import { CT_ZONE } from '../../../src/compile/registry.ts';
import { NO_OWNER } from '../../../src/hashing/slots.ts';
import type { ControlPlane } from '../../../src/lab/control-plane.ts';
import type { Lab } from '../../../src/lab/topology.ts';
import type { BrokenEvent } from '../../../src/lab/traffic.ts';
import type { Replica } from '../../../src/ovsdb/replica.ts';
import { LANES, type PoolPlan, planLanes } from '../../../src/rollout/types.ts';
import {
  decodeSlotCounts,
  gatewayGeneration,
  NodeHeartbeatTable,
  publishedGeneration,
  readGeneration,
  rows,
  SlotConnectionsTable,
} from '../../../src/store/db/index.ts';

const hhmmss = (ms: number | undefined) =>
  ms === undefined ? '?' : new Date(ms).toISOString().slice(11, 23);

interface Seen {
  readonly pools: ReadonlyMap<string, PoolPlan>;
  readonly publishedAt: number;
  releasedAt?: number;
}

/** A host's Slot_Connections row for one load balancer as it changed: when the test saw it, the conntrack read it
 *  came from (Node_Heartbeat report_at), its counts (JSON). */
interface ReportSeen {
  readonly at: number;
  readonly node: string;
  readonly lb: string;
  readonly reportAt: string | undefined;
  readonly counts: string;
}

/** The planner's records worth reading next to a break (its `wait` records repeat every step: left out). */
const PLANNER_EVENTS = new Set([
  'publish',
  'release',
  'mark-round',
  'silent-host',
  'gave-up',
  'idle',
  'lock',
]);

/** Records every generation the store publishes (polls the test's replica) so a failure can show a slot's history. */
export class BrokenEvidence {
  readonly #seen = new Map<number, Seen>();
  readonly #timer: NodeJS.Timeout;
  readonly #lab: Lab;
  readonly #cp: () => ControlPlane;
  readonly #replica: () => Replica;
  readonly #reportReplica: () => Replica | undefined;
  readonly #reports: ReportSeen[] = [];
  readonly #lastCounts = new Map<string, string>();

  /** `replica`: the plans (Global, Plan...); `reports`: Slot_Connections and Node_Heartbeat (a status monitor). */
  constructor(lab: Lab, cp: () => ControlPlane, replica: () => Replica, reports: () => Replica | undefined) {
    this.#lab = lab;
    this.#cp = cp;
    this.#replica = replica;
    this.#reportReplica = reports;
    this.#timer = setInterval(() => this.#poll(), 200);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  #poll(): void {
    try {
      const r = this.#replica();
      const gen = publishedGeneration(r);
      if (gen > 0 && !this.#seen.has(gen)) {
        const g = readGeneration(r, gen);
        if (g !== undefined) this.#seen.set(gen, { pools: g.pools, publishedAt: Date.now() });
        // The last 60 generations are plenty for one test's window.
        for (const k of this.#seen.keys()) if (this.#seen.size > 60) this.#seen.delete(k);
      }
      const released = this.#seen.get(gatewayGeneration(r));
      if (released !== undefined) released.releasedAt ??= Date.now();
    } catch {
      // The replica between sessions: the next poll reads it.
    }
    try {
      this.#pollReports();
    } catch {
      // As above.
    }
  }

  #pollReports(): void {
    const r = this.#reportReplica();
    if (r === undefined) return;
    const beats = new Map(rows(r, NodeHeartbeatTable).map((b) => [b.node, b.external_ids.get('report_at')]));
    for (const row of rows(r, SlotConnectionsTable)) {
      const k = `${row.node} ${row.lb}`;
      if (this.#lastCounts.get(k) === row.counts) continue;
      this.#lastCounts.set(k, row.counts);
      this.#reports.push({
        at: Date.now(),
        node: row.node,
        lb: row.lb,
        reportAt: beats.get(row.node),
        counts: row.counts,
      });
      if (this.#reports.length > 2000) this.#reports.splice(0, 500);
    }
  }

  /** Prints (stderr) what is known about `broken`, the first three of them. */
  async print(broken: readonly BrokenEvent[], vip: string): Promise<void> {
    if (broken.length === 0) return;
    const lines: string[] = [`--- ${broken.length} broken connection(s): evidence ---`];
    try {
      await this.#explain(broken.slice(0, 3), vip, lines);
    } catch (e) {
      lines.push(`(evidence incomplete: ${(e as Error).message})`);
    }
    process.stderr.write(`${lines.join('\n')}\n--- end of evidence ---\n`);
  }

  async #explain(broken: readonly BrokenEvent[], vip: string, lines: string[]): Promise<void> {
    const cts = await Promise.all(
      this.#lab.hosts.map(async (h) => {
        const r = await h.appctl(['dpctl/dump-conntrack', `zone=${CT_ZONE}`], {
          allowFail: true,
          timeoutMs: 5000,
        });
        return [h.name, parseConntrack(r.stdout)] as const;
      }),
    );
    const slots = new Map<string, Set<number>>(); // lb -> slots to show
    let from = Number.POSITIVE_INFINITY;
    let to = 0;
    for (const e of broken) {
      const stalled = e.unechoedSince ?? e.at;
      lines.push(
        `${e.runner}#${e.id} on ${e.backend} port ${e.localPort} ${e.reason}: age ${e.ageMs} ms, ` +
          `unanswered since ${hhmmss(e.unechoedSince)}, broken at ${hhmmss(e.at)}`,
      );
      if (stalled !== undefined) from = Math.min(from, stalled);
      to = Math.max(to, e.at ?? Date.now());
      for (const [host, entries] of cts) {
        for (const c of entries) {
          if (c.origSport !== e.localPort || c.origDst !== vip) continue;
          const lbId = c.mark >>> 16;
          const slot = c.mark & 0xffff;
          const lb =
            [...(this.#latest()?.pools.values() ?? [])].find((p) => p.id === lbId)?.lb ?? `id ${lbId}`;
          lines.push(
            `  conntrack on ${host}: ${c.origSrc} -> ${c.replySrc}:${c.replySport} ${c.state} ${lb} slot ${slot}`,
          );
          if (!slots.has(lb)) slots.set(lb, new Set());
          slots.get(lb)!.add(slot);
        }
      }
    }
    if (!Number.isFinite(from)) from = to - 20_000;
    for (const [lb, ss] of slots)
      for (const s of ss)
        lines.push(
          ...this.#slotHistory(lb, s),
          ...this.#slotReports(lb, s),
          ...(await this.#slotFlows(lb, s)),
        );
    lines.push(...this.#nodeApplies(from - 20_000, to + 2000));
    lines.push(...this.#switchWarnings(from - 20_000, to + 2000));
    lines.push(...this.#plannerLines(from - 20_000, to + 2000));
  }

  #latest(): Seen | undefined {
    return [...this.#seen.values()].at(-1);
  }

  /** The slot in every generation seen, printed when it differs from the one before. */
  #slotHistory(lb: string, slot: number): string[] {
    const out = [`  ${lb} slot ${slot} (owners in lane order, * = primary) by generation:`];
    let last = '';
    for (const [gen, s] of this.#seen) {
      const p = s.pools.get(lb);
      if (p === undefined || slot >= p.primary.length) continue;
      const lanes = planLanes(p);
      const owners: string[] = [];
      for (let l = 0; l < LANES; l++) {
        const m = lanes[slot * LANES + l];
        if (m === NO_OWNER) continue;
        owners.push(`${l}:${p.members[m]?.key}@${p.members[m]?.host}${m === p.primary[slot] ? '*' : ''}`);
      }
      const text = `phase ${p.phase[slot]} ${owners.join(' ')}`;
      if (text === last) continue;
      last = text;
      out.push(`    g${gen} published ${hhmmss(s.publishedAt)} released ${hhmmss(s.releasedAt)}: ${text}`);
    }
    return out.slice(0, 25);
  }

  /** What each host reported for the slot, each change (the last 20). */
  #slotReports(lb: string, slot: number): string[] {
    const out: string[] = [];
    const last = new Map<string, string>();
    for (const r of this.#reports) {
      if (r.lb !== lb) continue;
      const counts = JSON.stringify(Object.fromEntries(decodeSlotCounts(r.counts).get(slot) ?? []));
      if (last.get(r.node) === counts) continue;
      last.set(r.node, counts);
      out.push(`    ${hhmmss(r.at)} ${r.node} (read ${hhmmss(Number(r.reportAt) || undefined)}): ${counts}`);
    }
    return [
      `  ${lb} slot ${slot} as the hosts reported it (each change; read = when that conntrack read started):`,
      ...out.slice(-20),
    ];
  }

  /** The slot's flows now: each gateway's GW_SLOTS flow (where it sends the slot) and each host's CHAIN flows (where
   *  it hands a packet it has no connection for), to compare with the generation each node applied. */
  async #slotFlows(lb: string, slot: number): Promise<string[]> {
    const pool = this.#latest()?.pools.get(lb);
    if (pool?.id === undefined) return [];
    const hex = (n: number) => `0x${n.toString(16)}`;
    const gw = new RegExp(`reg0=${hex(pool.id)},reg1=${hex(slot)}[ ,]`);
    const chain = `reg2=${hex((pool.id << 16) | slot)}/`;
    const out = [`  ${lb} slot ${slot} flows now (gateways: table 10; hosts: CHAIN, table 22):`];
    for (const n of this.#lab.nodes) {
      const r = await n.ofctl('br-int', ['--no-stats', 'dump-flows'], { allowFail: true, timeoutMs: 5000 });
      const hits = r.stdout
        .split('\n')
        .filter((l) => (n.role === 'gateway' ? gw.test(l) : l.includes(chain)))
        .map((l) => l.trim().replace(/^cookie=\S+ /, ''));
      out.push(...hits.slice(0, 4).map((l) => `    ${n.name}: ${l.slice(0, 220)}`));
      if (hits.length === 0) out.push(`    ${n.name}: none`);
    }
    return out;
  }

  #nodeApplies(from: number, to: number): string[] {
    const cp = this.#cp();
    const out: string[] = [];
    for (const n of this.#lab.nodes) {
      const applied = cp
        .records(`agent-${n.name}`)
        .filter((r) => (r.event === 'applied' || r.event === 'apply-failed') && inWindow(r, from, to))
        .map((r) => `g${r.generation ?? '?'} ${hhmmss(r.time as number)}`);
      out.push(`  ${n.name} applied: ${applied.slice(-8).join(', ') || 'nothing in the window'}`);
    }
    return out;
  }

  /** Warnings and errors in each node's ovs-vswitchd log within the window (the lab keeps them in its OVS dir). */
  #switchWarnings(from: number, to: number): string[] {
    const out: string[] = [];
    for (const n of this.#lab.nodes) {
      let text = '';
      try {
        text = readFileSync(`${n.ovsDir}/ovs-vswitchd.log`, 'utf8');
      } catch {
        continue;
      }
      const hits = text.split('\n').filter((l) => {
        // (A userspace-only switch warns every second that it finds no kernel datapath: noise.)
        if (!/\|(WARN|ERR|EMER)\|/.test(l) || l.includes('enumerate system datapaths')) return false;
        const t = Date.parse(l.slice(0, l.indexOf('|')));
        return t >= from && t <= to;
      });
      for (const l of hits.slice(-5)) out.push(`  ${n.name} ovs-vswitchd: ${l.slice(11, 300)}`);
    }
    return out;
  }

  #plannerLines(from: number, to: number): string[] {
    const cp = this.#cp();
    const out: string[] = [];
    for (const name of ['planner-a', 'planner-b']) {
      const recs = cp
        .records(name)
        .filter((r) => PLANNER_EVENTS.has(r.event as string) && inWindow(r, from, to));
      if (recs.length === 0) continue;
      out.push(`  ${name} (${hhmmss(from)} .. ${hhmmss(to)}, last 40):`);
      for (const r of recs.slice(-40))
        out.push(`    ${hhmmss(r.time as number)} ${String(r.msg ?? r.event).slice(0, 400)}`);
    }
    return out;
  }
}

function inWindow(r: Record<string, unknown>, from: number, to: number): boolean {
  const t = r.time as number;
  return typeof t === 'number' && t >= from && t <= to;
}
