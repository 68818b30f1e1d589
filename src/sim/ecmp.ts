// Upstream ECMP models: which gateway (next hop) a flow's packets reach. Pure.
//
// - 'hash-threshold' (RFC 2992, as Linux implements it in fib_select_multipath/fib_rebalance): the 31-bit flow
//   hash is compared with per-next-hop upper bounds ub_i = round((i+1) * 2^31 / n) - 1 over the next hops in list
//   order; the first next hop with hash <= ub_i wins. Removing a next hop recomputes the bounds of the rest, so
//   regions shift: far more than 1/n of the flows move.
// - 'modulo': next hop = list[hash mod n] (simple switch ASICs). Any change of n moves almost every flow.

export type EcmpMode = 'hash-threshold' | 'modulo';
export const ECMP_MODES: readonly EcmpMode[] = ['hash-threshold', 'modulo'];

const TWO31 = 2 ** 31;
const TWO32 = 2 ** 32;

/** Upper bounds (inclusive) of each next hop's region of the 31-bit hash space, Linux fib_rebalance style. */
export function thresholdBounds(n: number): Float64Array {
  const ub = new Float64Array(n);
  for (let i = 0; i < n; i++) ub[i] = Math.round(((i + 1) * TWO31) / n) - 1;
  return ub;
}

/** A compiled next-hop list: maps a flow's 32-bit hash to a gateway id. */
export class Ecmp {
  readonly mode: EcmpMode;
  readonly hops: readonly number[];
  readonly #ub: Float64Array;
  constructor(mode: EcmpMode, hops: readonly number[]) {
    this.mode = mode;
    this.hops = hops.slice();
    this.#ub = thresholdBounds(hops.length);
  }
  /** Position in `hops` for flow hash `h` (unsigned 32-bit); -1 when there is no next hop. */
  index(h: number): number {
    const n = this.hops.length;
    if (n === 0) return -1;
    if (this.mode === 'modulo') return h % n;
    const h31 = h >>> 1;
    let i = Math.floor((h31 * n) / TWO31);
    if (i >= n) i = n - 1;
    while (i > 0 && h31 <= this.#ub[i - 1]) i--;
    while (h31 > this.#ub[i]) i++;
    return i;
  }
  pick(h: number): number {
    const i = this.index(h);
    return i < 0 ? -1 : this.hops[i];
  }
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/**
 * Exact share of the hash space whose next hop (gateway identity) differs between two next-hop lists,
 * assuming a uniform 32-bit flow hash. Flows of a removed gateway count as moved.
 */
export function ecmpMovedShare(mode: EcmpMode, before: readonly number[], after: readonly number[]): number {
  const n = before.length;
  const m = after.length;
  if (n === 0 || m === 0) return n === m ? 0 : 1;
  if (mode === 'hash-threshold') {
    // Merge the two sets of region boundaries over the 31-bit space; count hashes whose owner differs.
    const a = thresholdBounds(n);
    const b = thresholdBounds(m);
    let i = 0;
    let j = 0;
    let lo = 0; // first hash of the current piece
    let moved = 0;
    while (i < n && j < m) {
      const hi = Math.min(a[i], b[j]);
      if (hi >= lo && before[i] !== after[j]) moved += hi - lo + 1;
      lo = Math.max(lo, hi + 1);
      if (a[i] === hi) i++;
      if (b[j] === hi) j++;
    }
    return moved / TWO31;
  }
  // Modulo: residues r mod lcm(n, m) decide both picks; count hashes in [0, 2^32) per residue.
  const l = (n / gcd(n, m)) * m;
  if (l > 50_000_000) throw new RangeError(`ecmpMovedShare: lcm(${n}, ${m}) too large`);
  let moved = 0;
  for (let r = 0; r < l; r++) {
    if (before[r % n] !== after[r % m]) moved += Math.floor((TWO32 - 1 - r) / l) + 1;
  }
  return moved / TWO32;
}
