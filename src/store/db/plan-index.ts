// An agent's read of a published plan (readPlan's result) kept from the replica's Plan_LB changes instead of read
// from every row on every generation. At 10,000 VIPs readPlan filters 10,000 Plan_LB rows, builds the generation's
// map of every pool and the plan's map of every document, and a 10,000-entry cache key: about 40 ms per generation
// on this project's machine for a generation that changed one load balancer. Pure: no I/O.

import { LayeredMap } from '../../model/layered-map.ts';
import type { Replica } from '../../ovsdb/replica.ts';
import type { PoolPlanRecord } from './encoding.ts';
import {
  decodePool,
  decodeRetiredLbIds,
  type GenerationRecord,
  hasLbRows,
  type PlanDocs,
  type PublishedPlan,
  planDocument,
  readPlan,
} from './plans.ts';
import { find, get, rows } from './read.ts';
import { RowIndex } from './row-index.ts';
import {
  PlanConfigTable,
  type PlanLbRow,
  PlanLbTable,
  PlanPoolTable,
  PlanTable,
  RETIRED_LB_IDS_KEY,
} from './tables.ts';

/** More changed rows than this between two reads: read everything again instead (bounds the pending set). */
const MAX_PENDING = 50_000;
/** Reads whose changes are remembered for `changed` (a consumer that fell further behind compiles whole). */
const HISTORY = 16;

/** What a load balancer is in a read: its Plan_LB row, the pool and document it names. */
interface Chosen {
  readonly row: string;
  readonly pool: PoolPlanRecord;
  readonly doc: string | undefined;
}

interface Last {
  readonly serial: number;
  readonly number: number;
  readonly chosen: LayeredMap<string, Chosen>;
  readonly pools: LayeredMap<string, PoolPlanRecord>;
  readonly lbs: LayeredMap<string, string>;
  readonly docs: PlanDocs | undefined;
}

/**
 * Published plans of one replica, followed row by row (Replica.watch on Plan_LB; Plan_Pool and Plan_Config rows
 * are never modified, so only their deletion is watched). `read(n)` returns what readPlan(replica, n) returns, with
 * the same pool objects and documents, in work proportional to the load balancers whose Plan_LB rows changed since
 * the last read (plus, when `n` moved, those whose rows start or end in between: the few those generations
 * changed). The generation's pools and the documents are LayeredMaps: the next version shares the
 * unchanged entries. `changed(a, b)` says which load balancers' pool or document may differ between two results
 * (generations or documents) it returned, for the compile to follow. A change it cannot follow (the content replaced
 * after a reconnect, too many changes, a malformed row, a plan of before schema 2.0.0, two rows of one load balancer
 * for one generation, a referenced pool or document deleted) makes the read a whole one: readPlan's code, its errors.
 */
export class PlanIndex extends RowIndex {
  readonly #replica: Replica;
  /** Plan_LB UUID -> row, and the UUIDs of each load balancer's rows. */
  readonly #rows = new Map<string, PlanLbRow>();
  readonly #byLb = new Map<string, Set<string>>();
  /** Generation -> the load balancers with a row starting or ending there (a read of another generation than the
   *  last looks again at those whose rows start or end in between). */
  readonly #bounds = new Map<number, Set<string>>();
  /** Plan_Pool and Plan_Config UUIDs -> how many stored Plan_LB rows name them. */
  readonly #refs = new Map<string, number>();
  #dirtyRows = new Set<string>();
  #dirtyNames = new Set<string>();
  /** Plan_Pool or Plan_Config rows deleted since the last read. */
  #deleted = new Set<string>();
  #last: Last | undefined;
  #serial = 0;
  /** Read serial -> the load balancers changed from the read before it (undefined: not known, everything). */
  readonly #history = new Map<number, ReadonlySet<string> | undefined>();
  /** A generation or documents object this index returned -> the serial of a read that returned it. */
  readonly #serialOf = new WeakMap<object, number>();

  constructor(replica: Replica) {
    super();
    this.#replica = replica;
    this.follow(replica, PlanLbTable.name, (c) => {
      if (this.stale) return;
      if (c === undefined || this.#dirtyRows.size >= MAX_PENDING) this.stale = true;
      else this.#dirtyRows.add(c.uuid);
    });
    for (const t of [PlanPoolTable.name, PlanConfigTable.name])
      this.follow(replica, t, (c) => {
        if (this.stale) return;
        if (c === undefined || c.old !== undefined) {
          if (c?.new !== undefined)
            this.stale = true; // modified: never done, not followed
          else if (c === undefined || this.#deleted.size >= MAX_PENDING) this.stale = true;
          else this.#deleted.add(c.uuid);
        }
      });
  }

  /** readPlan(replica, number), followed (see the class). */
  read(number: number): PublishedPlan | undefined {
    this.refresh();
    const r = this.#replica;
    const plan = find(r, PlanTable, (p) => p.generation === number);
    if (plan === undefined) return undefined;
    const deleted = this.#deleted;
    this.#deleted = new Set();
    for (const u of deleted) if ((this.#refs.get(u) ?? 0) > 0) return this.#whole(number);
    // Plans of before schema 2.0.0, or without a base document row (readPlan then looks for the legacy one).
    if (!hasLbRows(plan) || plan.config === undefined) return this.#whole(number);
    const last = this.#last;
    const names = last === undefined ? new Set(this.#byLb.keys()) : this.#dirtyNames;
    this.#dirtyNames = new Set();
    if (last !== undefined && last.number !== number) {
      // A row covers n when from <= n < until (until 0: open): it covers one of two generations a < b and not the
      // other exactly when it starts or ends in (a, b].
      const [a, b] = last.number < number ? [last.number, number] : [number, last.number];
      if (b - a > MAX_PENDING) return this.#whole(number);
      for (let g = a + 1; g <= b; g++) for (const n of this.#bounds.get(g) ?? []) names.add(n);
    }
    const set: [string, Chosen][] = [];
    const gone: string[] = [];
    for (const name of names) {
      const c = this.#choose(name, number);
      if (c === null) return this.#whole(number);
      const before = last?.chosen.get(name);
      if (c === undefined) {
        if (before !== undefined) gone.push(name);
      } else if (before === undefined || before.pool !== c.pool || before.doc !== c.doc) set.push([name, c]);
      else if (before.row !== c.row) set.push([name, c]);
    }
    const changed = new Set<string>(gone);
    for (const [name, c] of set) {
      const before = last?.chosen.get(name);
      if (before?.pool !== c.pool || before?.doc !== c.doc) changed.add(name);
    }
    const chosen = last === undefined ? LayeredMap.of(set) : last.chosen.with(set, gone);
    const poolsOf = (): LayeredMap<string, PoolPlanRecord> => {
      const s = set
        .filter(([n, c]) => last?.chosen.get(n)?.pool !== c.pool)
        .map(([n, c]) => [n, c.pool] as const);
      return last === undefined
        ? LayeredMap.of(s)
        : s.length + gone.length === 0
          ? last.pools
          : last.pools.with(s, gone);
    };
    const pools = poolsOf();
    const docSet = set.filter(([, c]) => c.doc !== undefined).map(([n, c]) => [n, c.doc!] as const);
    const docGone = [...gone, ...set.filter(([, c]) => c.doc === undefined).map(([n]) => n)];
    const lbs =
      last === undefined
        ? LayeredMap.of(docSet)
        : docSet.every(([n, d]) => last.lbs.get(n) === d) && docGone.every((n) => !last.lbs.has(n))
          ? last.lbs
          : last.lbs.with(docSet, docGone);
    const base = get(r, PlanConfigTable, plan.config)?.document;
    const docs: PlanDocs | undefined =
      base === undefined
        ? undefined
        : last?.docs !== undefined && last.docs.base === base && last.lbs === lbs
          ? last.docs
          : { base, lbs };
    const serial = ++this.#serial;
    const sameBase = last !== undefined && (last.docs?.base ?? null) === (docs?.base ?? null);
    this.#remember(serial, sameBase ? changed : undefined);
    this.#last = { serial, number, chosen, pools, lbs, docs };
    const retired = plan.external_ids.get(RETIRED_LB_IDS_KEY);
    const generation: GenerationRecord = {
      number,
      createdAt: plan.created_at,
      pools,
      ...(retired !== undefined ? { retiredLbIds: decodeRetiredLbIds(retired, number) } : {}),
    };
    return this.#result(serial, generation, plan.desired_cfg, docs);
  }

  /** The load balancers whose pool or document may differ between `from` and `to` (two generations, or two
   *  documents, this index returned, `from` the older), or undefined when it does not know (then: all). */
  changed(from: object, to: object): ReadonlySet<string> | undefined {
    const a = this.#serialOf.get(from);
    const b = this.#serialOf.get(to);
    if (a === undefined || b === undefined || a > b) return undefined;
    const out = new Set<string>();
    for (let s = a + 1; s <= b; s++) {
      if (!this.#history.has(s)) return undefined;
      const names = this.#history.get(s);
      if (names === undefined) return undefined;
      for (const n of names) out.add(n);
    }
    return out;
  }

  #remember(serial: number, changed: ReadonlySet<string> | undefined): void {
    this.#history.set(serial, changed);
    this.#history.delete(serial - HISTORY);
  }

  #result(
    serial: number,
    generation: GenerationRecord,
    desiredCfg: number,
    docs: PlanDocs | undefined,
  ): PublishedPlan {
    this.#serialOf.set(generation, serial);
    if (docs !== undefined) this.#serialOf.set(docs, serial);
    let whole: string | undefined;
    return {
      generation,
      desiredCfg,
      docs,
      get config() {
        if (docs !== undefined) whole ??= JSON.stringify(planDocument(docs));
        return whole;
      },
      // The documents object stands for its rows: the same object while none of them changed.
      configRef: undefined,
    };
  }

  /** A whole read (readPlan): the next read starts again from every load balancer. */
  #whole(number: number): PublishedPlan | undefined {
    this.#last = undefined;
    this.#dirtyNames = new Set();
    const serial = ++this.#serial;
    this.#remember(serial, undefined);
    const p = readPlan(this.#replica, number);
    return p === undefined ? undefined : this.#result(serial, p.generation, p.desiredCfg, p.docs);
  }

  /** The row of `name` that generation `number` is made of and what it names; undefined: none; null: more than one
   *  or a pool filed under another name (left to the whole read). */
  #choose(name: string, number: number): Chosen | undefined | null {
    let row: PlanLbRow | undefined;
    for (const u of this.#byLb.get(name) ?? []) {
      const x = this.#rows.get(u)!;
      if (x.from_generation > number || (x.until_generation !== 0 && x.until_generation <= number)) continue;
      if (row !== undefined) return null;
      row = x;
    }
    if (row === undefined) return undefined;
    const r = this.#replica;
    const pool = decodePool(r, number, row.pool);
    if (pool.lb !== row.lb) return null;
    const doc = row.config === undefined ? undefined : get(r, PlanConfigTable, row.config)?.document;
    return { row: row._uuid, pool, doc };
  }

  protected rebuild(): void {
    this.#rows.clear();
    this.#byLb.clear();
    this.#bounds.clear();
    this.#refs.clear();
    this.#dirtyRows.clear();
    this.#dirtyNames = new Set();
    this.#deleted = new Set();
    this.#last = undefined;
    for (const row of rows(this.#replica, PlanLbTable)) this.#file(row);
    this.stale = false;
  }

  protected catchUp(): void {
    const dirty = this.#dirtyRows;
    this.#dirtyRows = new Set();
    for (const u of dirty) {
      const old = this.#rows.get(u);
      if (old !== undefined) this.#unfile(old);
      const row = get(this.#replica, PlanLbTable, u);
      if (row !== undefined) this.#file(row);
    }
  }

  #file(row: PlanLbRow): void {
    this.#rows.set(row._uuid, row);
    const set = this.#byLb.get(row.lb) ?? new Set<string>();
    set.add(row._uuid);
    this.#byLb.set(row.lb, set);
    for (const g of boundsOf(row)) {
      const at = this.#bounds.get(g) ?? new Set<string>();
      at.add(row.lb);
      this.#bounds.set(g, at);
    }
    this.#dirtyNames.add(row.lb);
    for (const ref of [row.pool, row.config])
      if (ref !== undefined) this.#refs.set(ref, (this.#refs.get(ref) ?? 0) + 1);
  }

  #unfile(row: PlanLbRow): void {
    this.#rows.delete(row._uuid);
    const set = this.#byLb.get(row.lb);
    set?.delete(row._uuid);
    if (set?.size === 0) this.#byLb.delete(row.lb);
    // A bound stays while another row of the load balancer has it.
    const kept = new Set([...(set ?? [])].flatMap((u) => boundsOf(this.#rows.get(u)!)));
    for (const g of boundsOf(row)) {
      if (kept.has(g)) continue;
      const at = this.#bounds.get(g);
      at?.delete(row.lb);
      if (at?.size === 0) this.#bounds.delete(g);
    }
    this.#dirtyNames.add(row.lb);
    for (const ref of [row.pool, row.config]) {
      if (ref === undefined) continue;
      const n = (this.#refs.get(ref) ?? 0) - 1;
      if (n <= 0) this.#refs.delete(ref);
      else this.#refs.set(ref, n);
    }
  }
}

/** The generations where a row starts covering, or stops. */
function boundsOf(row: PlanLbRow): number[] {
  return row.until_generation === 0 ? [row.from_generation] : [row.from_generation, row.until_generation];
}
