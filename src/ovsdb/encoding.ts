// Compact encodings of slot arrays in sluice.ovsschema string columns (docs/design/ovsdb.md "Encodings").
// Pure: no I/O.
//
//   Plan_Pool.primary, Plan_Pool.second   base64 (RFC 4648, with padding) of 2^bits uint16 values, little-endian:
//                                         the member index owning each slot, 0xffff = no owner / no second chance
//   Slot_Connections.counts               base64 of 2^bits uint32 values, little-endian: live connections per slot
//   Plan_Pool.phase                       base64 of 2^bits uint8 values: the slot's rollout phase (0 stable, 1, 2)
//   Plan_Pool.since                       base64 of 2^bits float64 values, little-endian: ms when the slot's
//                                         second chance started (0 for stable slots)
//   Plan_Pool.members                     JSON array of {"key","address","port"?,"host"} in index order
//
// Little-endian is written explicitly (DataView), so the encoding does not depend on the machine.

import { OvsdbError } from './errors.ts';

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

/** A pool member as Plan_Pool.members stores it (same shape as rollout's PlanMember). */
export interface PoolMemberRecord {
  readonly key: string;
  readonly address: string;
  readonly port: number | undefined;
  readonly host: string;
}

/** A pool plan as the Plan_Pool row stores it (same shape as rollout's PoolPlan). */
export interface PoolPlanRecord {
  readonly lb: string;
  readonly bits: number;
  readonly members: readonly PoolMemberRecord[];
  readonly primary: Uint16Array;
  readonly second: Uint16Array;
  /** Rollout phase per slot (rollout's PHASE_STABLE / PHASE1 / PHASE2). */
  readonly phase: Uint8Array;
  /** ms when each slot's second chance started; 0 for stable slots. */
  readonly since: Float64Array;
}

/** The Plan_Pool row of a pool plan, in JS form (protocol.ts encodeRow). */
export interface PlanPoolRow {
  readonly lb: string;
  readonly bits: number;
  readonly members: string;
  readonly primary: string;
  readonly second: string;
  readonly phase: string;
  readonly since: string;
}

export function encodeMembers(members: readonly PoolMemberRecord[]): string {
  return JSON.stringify(
    members.map((m) =>
      m.port === undefined
        ? { key: m.key, address: m.address, host: m.host }
        : { key: m.key, address: m.address, port: m.port, host: m.host },
    ),
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
    const o = m as { key?: unknown; address?: unknown; port?: unknown; host?: unknown };
    if (typeof o?.key !== 'string' || typeof o.address !== 'string' || typeof o.host !== 'string') {
      throw bad(`Plan_Pool.members[${i}]: needs string key, address and host`);
    }
    if (o.port !== undefined && (typeof o.port !== 'number' || !Number.isInteger(o.port))) {
      throw bad(`Plan_Pool.members[${i}]: port must be an integer`);
    }
    return { key: o.key, address: o.address, port: o.port as number | undefined, host: o.host };
  });
}

/** The Plan_Pool columns of a pool plan (as a JS row for protocol.ts encodeRow). */
export function poolToRow(p: PoolPlanRecord): PlanPoolRow {
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
    second: encodeU16(p.second),
    phase: encodeU8(p.phase),
    since: encodeF64(p.since),
  };
}

/** Decodes a Plan_Pool row (JS form); checks array lengths against `bits`. */
export function rowToPool(row: object): PoolPlanRecord {
  const { lb, bits, members, primary, second, phase, since } = row as Record<string, unknown>;
  if (typeof lb !== 'string' || typeof bits !== 'number' || typeof members !== 'string') {
    throw bad('Plan_Pool row: lb, bits and members are required');
  }
  for (const [name, v] of Object.entries({ primary, second, phase, since })) {
    if (typeof v !== 'string') throw bad(`Plan_Pool row ${lb}: ${name} missing`);
  }
  const n = 2 ** bits;
  return {
    lb,
    bits,
    members: decodeMembers(members),
    primary: decodeU16(primary as string, n),
    second: decodeU16(second as string, n),
    phase: decodeU8(phase as string, n),
    since: decodeF64(since as string, n),
  };
}
