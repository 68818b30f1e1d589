// Compact encodings of slot arrays in sluice.ovsschema string columns (docs/design/ovsdb.md "Encodings").
// Pure: no I/O.
//
//   Plan_Pool.primary                     base64 (RFC 4648, with padding) of 2^bits uint16 values, little-endian:
//                                         the member index owning each slot, 0xffff = no owner
//   Plan_Pool.second                      runs (below) of uint16 values: each slot's second chance, 0xffff = none
//   Slot_Connections.counts               base64 of 2^bits uint32 values, little-endian: live connections per slot
//   Plan_Pool.phase                       runs of uint8 values: the slot's rollout phase (0 stable, 1, 2)
//   Plan_Pool.since                       runs of float64 values, little-endian: ms when the slot's second chance
//                                         started (0 for stable slots)
//   Plan_Pool.lanes                       base64 of LANES (8) uint16 values, little-endian, per slot that has a
//                                         second chance, in slot order: the member index in each lane (0xffff =
//                                         empty); slots without one have their primary in lane 0. '' = none stored
//                                         (rows before schema 1.3.0: lanes derived from primary and second)
//   Plan_Pool.members                     JSON array of {"key","address","port"?,"host","movedFrom"?} in index order
//
// Runs: `rle:` + base64 of (uint32 count, value) pairs, little-endian. second, phase and since are constant over
// every stable slot, so a stable pool at slotBits 16 stores them in a few bytes instead of 0.9 MB (the since
// column alone was 0.7 MB); primary has no runs worth the name. Decoders also read the plain form (no prefix).
//
// Little-endian is written explicitly (DataView), so the encoding does not depend on the machine.

import { LIMITS } from '../../model/schema.ts';
import { OvsdbError } from '../../ovsdb/errors.ts';
import type { Columns } from './columns.ts';
import type { PlanPoolRow } from './tables.ts';

function bad(msg: string): OvsdbError {
  return new OvsdbError('SLUICE_E_OVSDB_VALUE', msg);
}

function fromBase64(s: string, what: string): Buffer {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 !== 0) throw bad(`${what}: not base64`);
  return Buffer.from(s, 'base64');
}

export function encodeU16(a: Uint16Array): string {
  const buf = Buffer.alloc(a.length * 2);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (let i = 0; i < a.length; i++) view.setUint16(i * 2, a[i]!, true);
  return buf.toString('base64');
}

/** Decodes encodeU16 output; `length`, when given, is the number of values expected (2^bits). */
export function decodeU16(s: string, length?: number): Uint16Array {
  const buf = fromBase64(s, 'uint16 array');
  if (buf.length % 2 !== 0) throw bad(`uint16 array: ${buf.length} bytes is not a whole number of values`);
  const n = buf.length / 2;
  if (length !== undefined && n !== length) throw bad(`uint16 array: ${n} values, expected ${length}`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) out[i] = view.getUint16(i * 2, true);
  return out;
}

export function encodeU32(a: Uint32Array): string {
  const buf = Buffer.alloc(a.length * 4);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (let i = 0; i < a.length; i++) view.setUint32(i * 4, a[i]!, true);
  return buf.toString('base64');
}

export function decodeU32(s: string, length?: number): Uint32Array {
  const buf = fromBase64(s, 'uint32 array');
  if (buf.length % 4 !== 0) throw bad(`uint32 array: ${buf.length} bytes is not a whole number of values`);
  const n = buf.length / 4;
  if (length !== undefined && n !== length) throw bad(`uint32 array: ${n} values, expected ${length}`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = view.getUint32(i * 4, true);
  return out;
}

export function encodeU8(a: Uint8Array): string {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
}

export function decodeU8(s: string, length?: number): Uint8Array {
  const buf = fromBase64(s, 'uint8 array');
  if (length !== undefined && buf.length !== length)
    throw bad(`uint8 array: ${buf.length} values, expected ${length}`);
  return Uint8Array.from(buf);
}

export function encodeF64(a: Float64Array): string {
  const buf = Buffer.alloc(a.length * 8);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (let i = 0; i < a.length; i++) view.setFloat64(i * 8, a[i]!, true);
  return buf.toString('base64');
}

export function decodeF64(s: string, length?: number): Float64Array {
  const buf = fromBase64(s, 'float64 array');
  if (buf.length % 8 !== 0) throw bad(`float64 array: ${buf.length} bytes is not a whole number of values`);
  const n = buf.length / 8;
  if (length !== undefined && n !== length) throw bad(`float64 array: ${n} values, expected ${length}`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = view.getFloat64(i * 8, true);
  return out;
}

type Width = 'u8' | 'u16' | 'f64';
const BYTES: Record<Width, number> = { u8: 1, u16: 2, f64: 8 };
const RUNS = 'rle:';

function putValue(view: DataView, at: number, w: Width, v: number): void {
  if (w === 'u8') view.setUint8(at, v);
  else if (w === 'u16') view.setUint16(at, v, true);
  else view.setFloat64(at, v, true);
}

function getValue(view: DataView, at: number, w: Width): number {
  return w === 'u8' ? view.getUint8(at) : w === 'u16' ? view.getUint16(at, true) : view.getFloat64(at, true);
}

/** `rle:` + base64 of (uint32 count, value) pairs: runs of equal values (Object.is, so -0 and NaN stay exact). */
export function encodeRuns(a: ArrayLike<number>, w: Width): string {
  const pairs: [number, number][] = [];
  for (let i = 0; i < a.length; i++) {
    const last = pairs[pairs.length - 1];
    if (last !== undefined && Object.is(last[1], a[i])) last[0]++;
    else pairs.push([1, a[i]!]);
  }
  const size = 4 + BYTES[w];
  const buf = Buffer.alloc(pairs.length * size);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  pairs.forEach(([count, v], k) => {
    view.setUint32(k * size, count, true);
    putValue(view, k * size + 4, w, v);
  });
  return RUNS + buf.toString('base64');
}

/** Decodes encodeRuns output into `out` (whose length is the number of values expected). */
function decodeRunsInto(s: string, w: Width, out: { length: number; [i: number]: number }): void {
  const buf = fromBase64(s.slice(RUNS.length), `${w} runs`);
  const size = 4 + BYTES[w];
  if (buf.length % size !== 0) throw bad(`${w} runs: ${buf.length} bytes is not a whole number of runs`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let i = 0;
  for (let at = 0; at < buf.length; at += size) {
    const count = view.getUint32(at, true);
    if (count === 0 || i + count > out.length)
      throw bad(`${w} runs: ${count === 0 ? 'an empty run' : `more than ${out.length} values`}`);
    const v = getValue(view, at + 4, w);
    for (const end = i + count; i < end; i++) out[i] = v;
  }
  if (i !== out.length) throw bad(`${w} runs: ${i} values, expected ${out.length}`);
}

const decodeU16Column = (s: string, n: number): Uint16Array => {
  if (!s.startsWith(RUNS)) return decodeU16(s, n);
  const out = new Uint16Array(n);
  decodeRunsInto(s, 'u16', out);
  return out;
};
const decodeU8Column = (s: string, n: number): Uint8Array => {
  if (!s.startsWith(RUNS)) return decodeU8(s, n);
  const out = new Uint8Array(n);
  decodeRunsInto(s, 'u8', out);
  return out;
};
const decodeF64Column = (s: string, n: number): Float64Array => {
  if (!s.startsWith(RUNS)) return decodeF64(s, n);
  const out = new Float64Array(n);
  decodeRunsInto(s, 'f64', out);
  return out;
};

/** A pool member as Plan_Pool.members stores it (same shape as rollout's PlanMember). */
export interface PoolMemberRecord {
  readonly key: string;
  readonly address: string;
  readonly port: number | undefined;
  readonly host: string;
  /** rollout's PlanMember.movedFrom: the backend's previous host while that host may hold its connections. */
  readonly movedFrom?: string;
}

/** A pool plan as the Plan_Pool row stores it (same shape as rollout's PoolPlan). */
export interface PoolPlanRecord {
  readonly lb: string;
  /** rollout's PoolPlan.id: the load balancer's id; undefined in rows written before schema 2.1.0. */
  readonly id?: number;
  readonly bits: number;
  readonly members: readonly PoolMemberRecord[];
  readonly primary: Uint16Array;
  readonly second: Uint16Array;
  /** Rollout phase per slot (rollout's PHASE_STABLE / PHASE1 / PHASE2). */
  readonly phase: Uint8Array;
  /** ms when each slot's second chance started; 0 for stable slots. */
  readonly since: Float64Array;
  /** rollout's PoolPlan.lanes: 2^bits * LANES member indices; undefined = derived from primary and second. */
  readonly lanes?: Uint16Array;
}

/** Lanes per slot (rollout's LANES; the encoding does not import the rollout). */
const LANES = 8;
const NO_MEMBER = 0xffff;
/** The largest load balancer id (hashing/lb-ids.ts LB_ID_MAX; the schema's maxInteger of Plan_Pool.lb_id). */
const LB_ID_MAX = 0xfffe;

/** Plan_Pool.lanes: the lanes of the slots that have a second chance, in slot order ('' when there are none). */
export function encodeLanes(second: Uint16Array, lanes: Uint16Array | undefined): string {
  if (lanes === undefined) return '';
  const chained: number[] = [];
  for (let s = 0; s < second.length; s++) if (second[s] !== NO_MEMBER) chained.push(s);
  if (chained.length === 0) return '';
  const out = new Uint16Array(chained.length * LANES);
  chained.forEach((s, i) => {
    out.set(lanes.subarray(s * LANES, s * LANES + LANES), i * LANES);
  });
  return encodeU16(out);
}

/** Inverse of encodeLanes; undefined for '' (lanes derived by the reader: primary lane 0, second lane 1). */
export function decodeLanes(s: string, primary: Uint16Array, second: Uint16Array): Uint16Array | undefined {
  if (s === '') return undefined;
  const chained: number[] = [];
  for (let x = 0; x < second.length; x++) if (second[x] !== NO_MEMBER) chained.push(x);
  const packed = decodeU16(s, chained.length * LANES);
  const lanes = new Uint16Array(primary.length * LANES).fill(NO_MEMBER);
  for (let x = 0; x < primary.length; x++) lanes[x * LANES] = primary[x]!;
  chained.forEach((x, i) => {
    lanes.set(packed.subarray(i * LANES, i * LANES + LANES), x * LANES);
  });
  return lanes;
}

export function encodeMembers(members: readonly PoolMemberRecord[]): string {
  return JSON.stringify(
    members.map((m) => ({
      key: m.key,
      address: m.address,
      ...(m.port === undefined ? {} : { port: m.port }),
      host: m.host,
      ...(m.movedFrom === undefined ? {} : { movedFrom: m.movedFrom }),
    })),
  );
}

export function decodeMembers(s: string): PoolMemberRecord[] {
  let raw: unknown;
  try {
    raw = JSON.parse(s);
  } catch {
    throw bad('Plan_Pool.members: not JSON');
  }
  if (!Array.isArray(raw)) throw bad('Plan_Pool.members: not a JSON array');
  return raw.map((m: unknown, i) => {
    const o = m as { key?: unknown; address?: unknown; port?: unknown; host?: unknown; movedFrom?: unknown };
    if (typeof o?.key !== 'string' || typeof o.address !== 'string' || typeof o.host !== 'string') {
      throw bad(`Plan_Pool.members[${i}]: needs string key, address and host`);
    }
    let port: number | undefined;
    if (o.port !== undefined) {
      if (typeof o.port !== 'number' || !Number.isInteger(o.port))
        throw bad(`Plan_Pool.members[${i}]: port must be an integer`);
      port = o.port;
    }
    if (o.movedFrom !== undefined && typeof o.movedFrom !== 'string')
      throw bad(`Plan_Pool.members[${i}]: movedFrom must be a string`);
    return {
      key: o.key,
      address: o.address,
      port,
      host: o.host,
      ...(o.movedFrom === undefined ? {} : { movedFrom: o.movedFrom }),
    };
  });
}

/** The Plan_Pool columns of a pool plan (as a JS row for protocol.ts encodeRow). */
export function poolToRow(p: PoolPlanRecord): Columns<PlanPoolRow> {
  const n = 2 ** p.bits;
  for (const [name, a] of [
    ['primary', p.primary],
    ['second', p.second],
    ['phase', p.phase],
    ['since', p.since],
  ] as const) {
    if (a.length !== n) throw bad(`pool ${p.lb}: ${name} must have ${n} entries, has ${a.length}`);
  }
  return {
    lb: p.lb,
    bits: p.bits,
    members: encodeMembers(p.members),
    primary: encodeU16(p.primary),
    second: encodeRuns(p.second, 'u16'),
    phase: encodeRuns(p.phase, 'u8'),
    since: encodeRuns(p.since, 'f64'),
    lanes: encodeLanes(p.second, p.lanes),
    lb_id: p.id,
  };
}

/** Slot owners are uint16 member indices; this one means "no owner" / "no second chance" (hashing/slots.ts). */
const NO_OWNER = 0xffff;
/** Rollout phases are 0 (stable), 1 and 2 (rollout/types.ts). */
const LAST_PHASE = 2;

/**
 * Decodes a Plan_Pool row (JS form) and checks it whole: `bits` in the config's range, array lengths against it,
 * member keys unique, every owner and second chance a member index (or none), phases known, times finite. A row
 * written by a rogue or broken writer is refused with the first problem, before anything uses it.
 */
export function rowToPool(row: object): PoolPlanRecord {
  const { lb, bits, members, primary, second, phase, since, lanes, lb_id } = row as Record<string, unknown>;
  if (typeof lb !== 'string' || typeof bits !== 'number' || typeof members !== 'string') {
    throw bad('Plan_Pool row: lb, bits and members are required');
  }
  if (!Number.isInteger(bits) || bits < LIMITS.slotBits.min || bits > LIMITS.slotBits.max)
    throw bad(
      `Plan_Pool row ${lb}: bits ${bits} is not an integer in ${LIMITS.slotBits.min}..${LIMITS.slotBits.max}`,
    );
  for (const [name, v] of Object.entries({ primary, second, phase, since })) {
    if (typeof v !== 'string') throw bad(`Plan_Pool row ${lb}: ${name} missing`);
  }
  const n = 2 ** bits;
  const p = decodeU16(primary as string, n);
  const sc = decodeU16Column(second as string, n);
  const l = typeof lanes === 'string' ? decodeLanes(lanes, p, sc) : undefined;
  if (
    lb_id !== undefined &&
    (!Number.isInteger(lb_id) || (lb_id as number) < 1 || (lb_id as number) > LB_ID_MAX)
  )
    throw bad(`Plan_Pool row ${lb}: lb_id ${lb_id} is not an integer in 1..${LB_ID_MAX}`);
  const pool: PoolPlanRecord = {
    lb,
    ...(lb_id !== undefined ? { id: lb_id as number } : {}),
    bits,
    members: decodeMembers(members),
    primary: p,
    second: sc,
    phase: decodeU8Column(phase as string, n),
    since: decodeF64Column(since as string, n),
    ...(l !== undefined ? { lanes: l } : {}),
  };
  checkPool(pool);
  return pool;
}

function checkPool(p: PoolPlanRecord): void {
  const m = p.members.length;
  if (m >= NO_OWNER) throw bad(`Plan_Pool row ${p.lb}: ${m} members; at most ${NO_OWNER - 1}`);
  if (new Set(p.members.map((x) => x.key)).size !== m)
    throw bad(`Plan_Pool row ${p.lb}: duplicate member key`);
  for (let s = 0; s < p.primary.length; s++) {
    const [own, sec, ph, at] = [p.primary[s]!, p.second[s]!, p.phase[s]!, p.since[s]!];
    if ((own >= m && own !== NO_OWNER) || (sec >= m && sec !== NO_OWNER))
      throw bad(`Plan_Pool row ${p.lb}: slot ${s} names member ${own >= m ? own : sec}; the pool has ${m}`);
    if (ph > LAST_PHASE) throw bad(`Plan_Pool row ${p.lb}: slot ${s} has phase ${ph}`);
    for (let l = 0; p.lanes !== undefined && l < LANES; l++) {
      const x = p.lanes[s * LANES + l]!;
      if (x >= m && x !== NO_OWNER) throw bad(`Plan_Pool row ${p.lb}: slot ${s} lane ${l} names member ${x}`);
    }
    if (!Number.isFinite(at) || at < 0) throw bad(`Plan_Pool row ${p.lb}: slot ${s} has since ${at}`);
  }
}
