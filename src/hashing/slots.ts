// Consistent, weighted slot tables. Pure: no I/O. Design and proofs: docs/design/slot-tables.md.
//
// A table has 2^bits slots; each slot is owned by one member (or NO_OWNER). buildTable computes
// integer quotas (within one slot of each member's weighted share), keeps every slot whose owner may keep it,
// frees exactly the surplus, and hands the freed slots to the members below quota, spread over the table.

import { fmix32, fnv1a32, slotHash } from './hash.ts';

/** Marks a slot with no owner (a pool with no member that takes slots) or no second chance. */
export const NO_OWNER = 0xffff;

/** Smallest and largest slot bits k (2^k slots). */
export const MIN_BITS = 4;
export const MAX_BITS = 16;

/** Members are indexed by Uint16; NO_OWNER (0xffff) is reserved. */
export const MAX_MEMBERS = 0xffff;

export interface PoolMember {
  /** Stable identity (model/types.ts backendKey). */
  readonly key: string;
  /** Relative weight; 0 means the member takes no slots (draining, down). */
  readonly weight: number;
}

export interface SlotTable {
  readonly bits: number;
  /** Member keys in canonical (sorted) order; `owners` holds indices into this list. */
  readonly members: readonly string[];
  /** Length 2^bits. Owner index per slot, or NO_OWNER. */
  readonly owners: Uint16Array;
}

export interface BuildOptions {
  /**
   * Length 2^bits (of the table being built). Slots marked non-zero are ones the caller cannot move yet
   * (e.g. a second chance still in use): when a member must give up some of its slots, it gives up unmarked
   * ones first. A marked slot still moves when its owner leaves, gets weight 0, or has no unmarked slot left
   * to give.
   */
  readonly keepSlots?: Uint8Array;
}

const PHASE_SALT = 0x5bd1e995;

function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function checkBits(bits: number, what: string): void {
  if (!Number.isInteger(bits) || bits < MIN_BITS || bits > MAX_BITS) {
    throw new RangeError(
      `${what}: slot bits must be an integer from ${MIN_BITS} to ${MAX_BITS}, got ${bits}`,
    );
  }
}

interface Canonical {
  readonly keys: string[];
  readonly weights: Float64Array;
  readonly keyHashes: Uint32Array;
}

/** Validates a pool and returns it in canonical (code-unit sorted key) order. */
function canonical(pool: readonly PoolMember[]): Canonical {
  if (pool.length > MAX_MEMBERS) {
    throw new RangeError(`slot table: at most ${MAX_MEMBERS} members, got ${pool.length}`);
  }
  const sorted = [...pool].sort((a, b) => compareKeys(a.key, b.key));
  const n = sorted.length;
  const keys = new Array<string>(n);
  const weights = new Float64Array(n);
  const keyHashes = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const m = sorted[i];
    if (typeof m.key !== 'string') throw new RangeError('slot table: member key must be a string');
    if (i > 0 && m.key === keys[i - 1]) throw new RangeError(`slot table: duplicate member key ${m.key}`);
    if (typeof m.weight !== 'number' || !Number.isFinite(m.weight) || m.weight < 0) {
      throw new RangeError(`slot table: weight of ${m.key} must be a finite number >= 0, got ${m.weight}`);
    }
    keys[i] = m.key;
    weights[i] = m.weight;
    keyHashes[i] = fnv1a32(m.key);
  }
  return { keys, weights, keyHashes };
}

/**
 * Integer quotas for members in canonical order (see `quotas`). `current[i]` is member i's slot count in the
 * table being changed (all 0 when building from scratch).
 */
function computeQuotas(c: Canonical, slots: number, current: Int32Array): Int32Array {
  const n = c.keys.length;
  const q = new Int32Array(n);
  let total = 0;
  for (let i = 0; i < n; i++) total += c.weights[i];
  if (total === 0) return q;
  // share_i = slots * w_i / total = q_i + rem_i / total, with 0 <= rem_i < total. Exact for integer weights
  // (slots * w_i and total stay far below 2^53); for fractional weights the float error is far below a slot.
  const rem = new Float64Array(n);
  let assigned = 0;
  for (let i = 0; i < n; i++) {
    const num = slots * c.weights[i];
    let f = Math.floor(num / total);
    if (f * total > num) f--;
    else if ((f + 1) * total <= num) f++;
    q[i] = f;
    rem[i] = num - f * total;
    assigned += f;
  }
  let extra = slots - assigned; // R: how many members get the ceiling
  if (extra === 0) return q;
  // Candidates for the ceiling: members with a fractional share. Order: members that already hold at least
  // the ceiling first (giving them the floor would move a slot), then largest remainder, key hash, key order.
  const order: number[] = [];
  for (let i = 0; i < n; i++) if (c.weights[i] > 0) order.push(i);
  order.sort((a, b) => {
    const fa = rem[a] > 0 ? 0 : 1;
    const fb = rem[b] > 0 ? 0 : 1;
    if (fa !== fb) return fa - fb;
    const ta = current[a] >= q[a] + 1 ? 0 : 1;
    const tb = current[b] >= q[b] + 1 ? 0 : 1;
    if (ta !== tb) return ta - tb;
    if (rem[a] !== rem[b]) return rem[b] - rem[a];
    if (c.keyHashes[a] !== c.keyHashes[b]) return c.keyHashes[a] - c.keyHashes[b];
    return a - b;
  });
  // With exact arithmetic 0 < extra <= (members with rem > 0), so one pass over the fractional members.
  // The loops below only matter if float rounding of fractional weights put `extra` outside that range.
  for (let j = 0; extra > 0 && order.length > 0; j = (j + 1) % order.length, extra--) q[order[j]]++;
  for (let j = order.length - 1; extra < 0 && j >= 0; j--) {
    if (q[order[j]] > 0) {
      q[order[j]]--;
      extra++;
    }
  }
  return q;
}

/**
 * Slot quota of every member for a table of 2^bits slots.
 *
 * Guarantee: with share_i = 2^bits * w_i / sum(w), every quota is floor(share_i) or ceil(share_i) (exactly share_i
 * when it is an integer), so |quota_i - share_i| < 1, and the quotas sum to 2^bits (when some weight is > 0).
 * R = 2^bits - sum(floor(share_i)) members get the ceiling: first those whose `current` count is already >= the
 * ceiling (so they need not give up a slot), then by largest fractional remainder, then FNV-1a hash of the key,
 * then key order. A weight-0 member's quota is 0. The result depends on the pool as a set, not its order.
 */
export function quotas(
  pool: readonly PoolMember[],
  bits: number,
  current?: ReadonlyMap<string, number>,
): Map<string, number> {
  checkBits(bits, 'quotas');
  const c = canonical(pool);
  const cur = new Int32Array(c.keys.length);
  if (current) for (let i = 0; i < c.keys.length; i++) cur[i] = current.get(c.keys[i]) ?? 0;
  const q = computeQuotas(c, 1 << bits, cur);
  const out = new Map<string, number>();
  for (let i = 0; i < c.keys.length; i++) out.set(c.keys[i], q[i]);
  return out;
}

/**
 * Builds the slot table of `pool` with 2^bits slots, changing `previous` (if given) as little as balance allows.
 *
 * Guarantees (tested in test/unit/slots.test.ts; argued in docs/design/slot-tables.md):
 * - Deterministic; depends on the pool as a set (not its order), `bits`, `previous` and `keepSlots` only.
 *   Without `previous` it depends on (pool as a set, bits) only.
 * - Balance: every member owns exactly its quota (see `quotas`): |count_i - share_i| < 1.
 * - Minimal movement: a slot changes owner only if its owner left, has weight 0, or holds more than its quota;
 *   a member over quota gives up exactly (count - quota) slots. So the slots moved equal
 *   sum_i max(0, count_i - quota_i) (gone and weight-0 members counted with quota 0), which is the least any
 *   table within one slot of every share can move, because the quota rule hands the ceilings to members that
 *   already hold them first.
 * - `previous` with fewer bits is grown first (growTable: moves nothing). With more bits, the table starts from the
 *   first 2^bits slots of `previous` (a packet's slot is the low bits of its hash, so slot s keeps the owner it
 *   had in `previous`); slots s + j*2^bits that had another owner are the only connections that move.
 *
 * Cost: O(2^bits + N log N) time, O(2^bits + N) memory; no per-slot objects.
 */
export function buildTable(
  pool: readonly PoolMember[],
  bits: number,
  previous?: SlotTable,
  options?: BuildOptions,
): SlotTable {
  checkBits(bits, 'buildTable');
  const c = canonical(pool);
  const n = c.keys.length;
  const size = 1 << bits;
  const owners = new Uint16Array(size).fill(NO_OWNER);
  const keep = options?.keepSlots;
  if (keep !== undefined && keep.length !== size) {
    throw new RangeError(`buildTable: keepSlots has length ${keep.length}, expected ${size}`);
  }

  if (previous !== undefined) {
    checkBits(previous.bits, 'buildTable previous');
    if (previous.owners.length !== 1 << previous.bits) {
      throw new RangeError('buildTable: previous.owners length is not 2^previous.bits');
    }
    const base = previous.bits < bits ? growTable(previous, bits) : previous;
    const index = new Map<string, number>();
    for (let i = 0; i < n; i++) index.set(c.keys[i], i);
    const remap = new Uint16Array(previous.members.length);
    for (let i = 0; i < previous.members.length; i++) remap[i] = index.get(previous.members[i]) ?? NO_OWNER;
    const src = base.owners;
    for (let s = 0; s < size; s++) {
      const o = src[s];
      owners[s] = o < remap.length ? remap[o] : NO_OWNER;
    }
  }

  const counts = new Int32Array(n);
  let free = 0;
  for (let s = 0; s < size; s++) {
    if (owners[s] === NO_OWNER) free++;
    else counts[owners[s]]++;
  }
  const q = computeQuotas(c, size, counts);

  // Free: every member over quota gives up (count - quota) slots: unmarked (keepSlots) ones first, then by a
  // per-(key, slot) hash, so what it gives up is spread over the table.
  let surplus = 0;
  for (let i = 0; i < n; i++) if (counts[i] > q[i]) surplus += counts[i] - q[i];
  if (surplus > 0) freeSurplus(owners, counts, q, c.keyHashes, keep);
  free += surplus;

  // Fill: the free slots, in index order, go to the members below quota by a weighted interleave (interleave).
  if (free === 0) return { bits, members: c.keys, owners };
  let deficitTotal = 0;
  for (let i = 0; i < n; i++) deficitTotal += q[i] - counts[i];
  if (deficitTotal === 0) return { bits, members: c.keys, owners }; // every weight is 0: all NO_OWNER
  if (deficitTotal !== free)
    throw new Error(`buildTable: internal error: ${free} free slots, ${deficitTotal} due`);

  interleave(owners, free, q, counts, c.keyHashes);
  return { bits, members: c.keys, owners };
}

/**
 * Every member over quota gives up (count - quota) of its slots (sets them to NO_OWNER): slots not marked in
 * `keep` first, then in order of slotHash(key hash, slot), so what it gives up is spread over the table.
 * Updates `counts` to the quotas' values for those members.
 */
function freeSurplus(
  owners: Uint16Array,
  counts: Int32Array,
  q: Int32Array,
  keyHashes: Uint32Array,
  keep: Uint8Array | undefined,
): void {
  const n = counts.length;
  const size = owners.length;
  const start = new Int32Array(n + 1);
  for (let i = 0; i < n; i++) start[i + 1] = start[i] + counts[i];
  const bySlot = new Uint32Array(start[n]);
  const fillPos = start.slice(0, n);
  for (let s = 0; s < size; s++) {
    const o = owners[s];
    if (o !== NO_OWNER) bySlot[fillPos[o]++] = s;
  }
  let scratch = new Float64Array(0);
  for (let i = 0; i < n; i++) {
    const excess = counts[i] - q[i];
    if (excess <= 0) continue;
    const from = start[i];
    if (excess === counts[i]) {
      for (let j = from; j < start[i + 1]; j++) owners[bySlot[j]] = NO_OWNER;
    } else {
      const len = counts[i];
      if (scratch.length < len) scratch = new Float64Array(len);
      const h = keyHashes[i];
      // Sort key: (kept, hash, slot) packed into one exact double: < 2^33 * 2^16.
      for (let j = 0; j < len; j++) {
        const s = bySlot[from + j];
        const kept = keep !== undefined && keep[s] !== 0 ? 0x100000000 : 0;
        scratch[j] = (kept + slotHash(h, s)) * 65536 + s;
      }
      const view = scratch.subarray(0, len).sort();
      for (let j = 0; j < excess; j++) owners[view[j] % 65536] = NO_OWNER;
    }
    counts[i] = q[i];
  }
}

/**
 * Hands the `free` NO_OWNER slots of `owners`, in index order, to the members below quota by a weighted
 * interleave: member i with deficit d_i = q_i - counts_i has ideal positions (t + phase_i) * free / d_i,
 * t = 0..d_i-1, with phase_i in (0, 1) from its key hash; the free slots go out in order of floor(position),
 * members in index order within one such bucket (a stable counting sort). So each member's new slots are spread
 * evenly over the free ones. O(free + N), two passes, no per-slot objects.
 */
function interleave(
  owners: Uint16Array,
  free: number,
  q: Int32Array,
  counts: Int32Array,
  keyHashes: Uint32Array,
): void {
  const freeSlots = new Uint32Array(free);
  for (let s = 0, j = 0; j < free; s++) if (owners[s] === NO_OWNER) freeSlots[j++] = s;
  const bucketStart = new Int32Array(free + 1);
  const last = free - 1;
  const n = q.length;
  const phase = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const d = q[i] - counts[i];
    if (d <= 0) continue;
    phase[i] = (fmix32(keyHashes[i] ^ PHASE_SALT) + 0.5) / 4294967296;
    const step = free / d;
    for (let t = 0; t < d; t++) bucketStart[Math.min(((t + phase[i]) * step) | 0, last) + 1]++;
  }
  for (let b = 0; b < free; b++) bucketStart[b + 1] += bucketStart[b];
  for (let i = 0; i < n; i++) {
    const d = q[i] - counts[i];
    if (d <= 0) continue;
    const step = free / d;
    for (let t = 0; t < d; t++)
      owners[freeSlots[bucketStart[Math.min(((t + phase[i]) * step) | 0, last)]++]] = i;
  }
}

/**
 * Grows `table` to 2^bits slots by duplication: slot s + j*2^table.bits gets the owner of slot s. A packet whose
 * hash had low bits s now lands in s or s + 2^table.bits, both with the same owner: nothing moves.
 */
export function growTable(table: SlotTable, bits: number): SlotTable {
  checkBits(bits, 'growTable');
  if (bits < table.bits) throw new RangeError(`growTable: cannot grow ${table.bits} bits to ${bits}`);
  const size = 1 << bits;
  const oldSize = table.owners.length;
  const owners = new Uint16Array(size);
  owners.set(table.owners);
  for (let len = oldSize; len < size; len *= 2) owners.copyWithin(len, 0, len);
  return { bits, members: table.members, owners };
}

/**
 * Slots whose owner key differs between `a` and `b` (NO_OWNER counts as a key of its own). Tables of different
 * sizes are compared as packets see them: slot s of the larger table against slot s mod size of the smaller.
 */
export function movedSlots(a: SlotTable, b: SlotTable): number[] {
  const bIndex = new Map<string, number>();
  for (let i = 0; i < b.members.length; i++) bIndex.set(b.members[i], i);
  // a's index -> b's index of the same key; -1 if the key is not in b.
  const map = new Int32Array(a.members.length);
  for (let i = 0; i < a.members.length; i++) map[i] = bIndex.get(a.members[i]) ?? -1;
  const size = Math.max(a.owners.length, b.owners.length);
  const am = a.owners.length - 1;
  const bm = b.owners.length - 1;
  const out: number[] = [];
  for (let s = 0; s < size; s++) {
    const oa = a.owners[s & am];
    const ob = b.owners[s & bm];
    const mapped = oa === NO_OWNER ? NO_OWNER : oa < map.length ? map[oa] : -1;
    if (mapped !== ob) out.push(s);
  }
  return out;
}

/** Slots per member key (every member listed, 0 included); NO_OWNER slots are not counted. */
export function slotCounts(t: SlotTable): Map<string, number> {
  const counts = new Int32Array(t.members.length);
  for (let s = 0; s < t.owners.length; s++) {
    const o = t.owners[s];
    if (o < counts.length) counts[o]++;
  }
  const out = new Map<string, number>();
  for (let i = 0; i < t.members.length; i++) out.set(t.members[i], counts[i]);
  return out;
}
