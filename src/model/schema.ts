// The config file format (zod 4 schema, defaults beside it) and its validation. Pure: no fs.
//
// Validation runs in two passes and reports every problem it finds, each with a stable code and a path:
//   1. shape: the top level, then every node, load balancer and backend on its own (so one broken item does not
//      hide the problems of the others); field checks (IP syntax, port/weight/slotBits ranges, names) run here.
//   2. semantics, over the items whose shape is valid: duplicates, references between items, address families,
//      presence of gateways and hosts.
// Only when both passes find nothing is a Config built: addresses in canonical text, every list in canonical order
// (nodes and load balancers by name, backends by address then port, ports ascending), deeply frozen.
// The rules are documented in docs/config.md; the codes in docs/errors.md.

import { z } from 'zod';
import { type ErrorCode, type Issue, SluiceError } from './errors.ts';
import { formatIp, type ParsedIp, parseIp, unusableReason } from './ip.ts';
import { lbSlotBits, SLOT_BITS, SLOTS_PER_BACKEND } from './slot-bits.ts';
import {
  type AdminState,
  type Backend,
  type Config,
  DEFAULT_CHAIN_LENGTH,
  type HashMode,
  type HealthCheck,
  type LoadBalancer,
  type Node,
  type NodeRole,
  type Protocol,
} from './types.ts';

/** Values a field takes when the file leaves it out. */
export const DEFAULTS = {
  hashMode: 'dp_hash' as HashMode,
  slotBits: 8,
  /** Previous owners a slot may keep (docs/design/rollout.md, "The chain bound"). */
  chainLength: DEFAULT_CHAIN_LENGTH,
  protocol: 'tcp' as Protocol,
  weight: 1,
  state: 'active' as AdminState,
} as const;

/** Bounds the validation enforces. */
export const LIMITS = {
  slotBits: SLOT_BITS,
  port: { min: 1, max: 65535 },
  weight: { min: 1, max: 1000 },
  /** Exclusive minimum 0, inclusive maximum one day. */
  drainWindowSeconds: { max: 86400 },
  /** At least one previous owner (the second chance); at most 7: a slot's owners fit the 8 lanes of the hop counter. */
  chainLength: { min: 1, max: 7 },
  /** Slot owners are Uint16 indices and 0xffff means "no owner". */
  backendsPerLoadBalancer: 65535,
  /** The sum of every load balancer's 2^bits (lbSlotBits): what the planner, the store and every gateway hold per
   *  generation (the largest configuration the benchmarks measured is 4,096,000 slots: docs/benchmarks.md,
   *  docs/config.md). */
  totalSlots: 4_194_304,
  nameLength: 63,
  /** Health checks (docs/config.md, "Health checks"). */
  healthCheck: {
    intervalMs: { min: 100, max: 3_600_000 },
    timeoutMs: { min: 10, max: 60_000 },
    streak: { min: 1, max: 100 },
    sendLength: 512,
    pathLength: 1024,
    status: { min: 100, max: 599 },
  },
} as const;

export const HASH_MODES = ['dp_hash', 'fields'] as const satisfies readonly HashMode[];
export const NODE_ROLES = ['gateway', 'host'] as const satisfies readonly NodeRole[];
export const PROTOCOLS = ['tcp', 'udp'] as const satisfies readonly Protocol[];
export const ADMIN_STATES = ['active', 'draining', 'down'] as const satisfies readonly AdminState[];
export const HEALTH_CHECK_TYPES = ['tcp', 'udp', 'http', 'https'] as const;
export const UDP_EXPECTS = ['reply', 'no-icmp'] as const;

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

// ---------------------------------------------------------------------------------------------------------------
// Field schemas. A failed field check pushes a zod "custom" issue whose params carry the sluice issue code.

type CheckCtx<T> = z.core.ParsePayload<T>;

/** Reports a failed field check from inside a zod `.check()`, with the sluice issue code (see zodIssues). */
export function fail<T>(ctx: CheckCtx<T>, code: ErrorCode, message: string): void {
  ctx.issues.push({ code: 'custom', message, input: ctx.value, params: { sluiceCode: code } });
}

/** A load balancer or node name (also the lab's VIP names, which become load balancer names). */
export const nameField = z.string().check((ctx) => {
  const v = ctx.value;
  if (v.length === 0 || v.length > LIMITS.nameLength || !NAME_RE.test(v)) {
    fail(
      ctx,
      'SLUICE_E_CONFIG_NAME',
      `invalid name ${JSON.stringify(v)}: use 1..${LIMITS.nameLength} characters from A-Z a-z 0-9 _ . - ` +
        'starting with a letter or digit',
    );
  }
});

/** An IPv4 or IPv6 address usable as `what` (not unspecified, loopback, multicast, ...). */
export function addressField(what: string) {
  return z.string().check((ctx) => {
    const v = ctx.value;
    const ip = parseIp(v);
    if (ip === undefined) {
      fail(ctx, 'SLUICE_E_CONFIG_INVALID_IP', `${JSON.stringify(v)} is not a valid IPv4 or IPv6 address`);
      return;
    }
    const why = unusableReason(ip);
    if (why !== undefined)
      fail(ctx, 'SLUICE_E_CONFIG_ADDRESS_UNUSABLE', `${v} is ${why}; it cannot be ${what}`);
  });
}

const tunnelIpField = z.string().check((ctx) => {
  const v = ctx.value;
  const ip = parseIp(v);
  if (ip === undefined) {
    fail(ctx, 'SLUICE_E_CONFIG_INVALID_IP', `${JSON.stringify(v)} is not a valid IPv4 address`);
  } else if (ip.family !== 4) {
    fail(
      ctx,
      'SLUICE_E_CONFIG_TUNNEL_NOT_IPV4',
      `${v} is IPv6; tunnel endpoints must be IPv4 (the underlay is IPv4)`,
    );
  } else {
    const why = unusableReason(ip);
    if (why !== undefined)
      fail(ctx, 'SLUICE_E_CONFIG_ADDRESS_UNUSABLE', `${v} is ${why}; it cannot be a tunnel endpoint`);
  }
});

function intField(bounds: { min: number; max: number }, code: ErrorCode, what: string) {
  return z.number().check((ctx) => {
    const v = ctx.value;
    if (!Number.isInteger(v) || v < bounds.min || v > bounds.max) {
      fail(ctx, code, `${what} must be an integer from ${bounds.min} to ${bounds.max} (got ${v})`);
    }
  });
}

export const portField = intField(LIMITS.port, 'SLUICE_E_CONFIG_PORT_RANGE', 'a port');

const drainWindowField = z.number().check((ctx) => {
  const v = ctx.value;
  if (!(v > 0 && v <= LIMITS.drainWindowSeconds.max)) {
    fail(
      ctx,
      'SLUICE_E_CONFIG_DRAIN_WINDOW',
      `drainWindowSeconds must be more than 0 and at most ${LIMITS.drainWindowSeconds.max} (got ${v})`,
    );
  }
});

// ---------------------------------------------------------------------------------------------------------------
// Object schemas, one per item kind, with defaults beside the fields.

export const NodeSchema = z.strictObject({
  name: nameField,
  role: z.enum(NODE_ROLES),
  tunnelIp: tunnelIpField,
});

/** A MAC address: six bytes in hex, colon separated (either case; stored lowercase). */
const MAC_RE = /^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$/;

const macField = z.string().check((ctx) => {
  const v = ctx.value;
  if (!MAC_RE.test(v)) {
    fail(
      ctx,
      'SLUICE_E_CONFIG_MAC',
      `${JSON.stringify(v)} is not a MAC address (six hex bytes, colon separated)`,
    );
  } else if ((Number.parseInt(v.slice(0, 2), 16) & 1) === 1) {
    fail(ctx, 'SLUICE_E_CONFIG_MAC', `${v} is a multicast MAC; a backend's MAC is a unicast one`);
  }
});

export const BackendSchema = z.strictObject({
  address: addressField('a backend address'),
  /** Absent: the port the client dialled (no port translation). */
  port: portField.optional(),
  host: z.string(),
  weight: intField(LIMITS.weight, 'SLUICE_E_CONFIG_WEIGHT', 'weight').default(DEFAULTS.weight),
  state: z.enum(ADMIN_STATES).default(DEFAULTS.state),
  /** Absent: sluice is not told the backend's MAC (its host's interface says it). */
  mac: macField.optional(),
});

const HC = LIMITS.healthCheck;
const HC_CODE = 'SLUICE_E_CONFIG_HEALTH_CHECK';

/** Which optional fields each health check type uses (a field another type uses is an error, not ignored). */
const HEALTH_CHECK_FIELDS: Readonly<Record<HealthCheck['type'], readonly string[]>> = {
  tcp: [],
  udp: ['send', 'expect'],
  http: ['path', 'status'],
  https: ['path', 'status'],
};

export const HealthCheckSchema = z
  .strictObject({
    type: z.enum(HEALTH_CHECK_TYPES),
    port: portField.optional(),
    intervalMs: intField(HC.intervalMs, HC_CODE, 'healthCheck.intervalMs').optional(),
    timeoutMs: intField(HC.timeoutMs, HC_CODE, 'healthCheck.timeoutMs').optional(),
    rise: intField(HC.streak, HC_CODE, 'healthCheck.rise').optional(),
    fall: intField(HC.streak, HC_CODE, 'healthCheck.fall').optional(),
    send: z.string().max(HC.sendLength).optional(),
    expect: z.enum(UDP_EXPECTS).optional(),
    path: z
      .string()
      .check((ctx) => {
        const v = ctx.value;
        if (!/^\/[\x21-\x7e]*$/.test(v) || v.length > HC.pathLength)
          fail(
            ctx,
            HC_CODE,
            `healthCheck.path must start with / and hold at most ${HC.pathLength} printable characters without spaces (got ${JSON.stringify(v.slice(0, 80))})`,
          );
      })
      .optional(),
    status: intField(HC.status, HC_CODE, 'healthCheck.status').optional(),
  })
  .check((ctx) => {
    const h = ctx.value;
    const used = HEALTH_CHECK_FIELDS[h.type];
    for (const f of ['send', 'expect', 'path', 'status'] as const) {
      if (h[f] !== undefined && !used.includes(f))
        fail(ctx, HC_CODE, `healthCheck.${f} does not apply to a ${h.type} check`);
    }
    if (h.timeoutMs !== undefined && h.intervalMs !== undefined && h.timeoutMs > h.intervalMs)
      fail(
        ctx,
        HC_CODE,
        `healthCheck.timeoutMs (${h.timeoutMs}) must not exceed intervalMs (${h.intervalMs})`,
      );
  });

const loadBalancerFields = {
  name: nameField,
  vip: addressField('a VIP'),
  protocol: z.enum(PROTOCOLS).default(DEFAULTS.protocol),
  /** `port: 80` is shorthand for `ports: [80]`; exactly one of the two must be given. */
  port: portField.optional(),
  ports: z.array(portField).optional(),
  /** Absent: the default check of the protocol (healthCheckOf). */
  healthCheck: HealthCheckSchema.optional(),
};

/** A load balancer with its backends left unchecked (they are validated one by one). */
const LoadBalancerItemSchema = z.strictObject({ ...loadBalancerFields, backends: z.array(z.unknown()) });

export const LoadBalancerSchema = z.strictObject({ ...loadBalancerFields, backends: z.array(BackendSchema) });

const topFields = {
  hashMode: z.enum(HASH_MODES).default(DEFAULTS.hashMode),
  slotBits: intField(LIMITS.slotBits, 'SLUICE_E_CONFIG_SLOT_BITS', 'slotBits').default(DEFAULTS.slotBits),
  /** Absent: no window (previous owners are kept while they hold connections). */
  drainWindowSeconds: drainWindowField.optional(),
  chainLength: intField(LIMITS.chainLength, 'SLUICE_E_CONFIG_CHAIN_LENGTH', 'chainLength').default(
    DEFAULTS.chainLength,
  ),
};

/** The top level with its lists left unchecked (items are validated one by one). */
const TopSchema = z.strictObject({
  ...topFields,
  nodes: z.array(z.unknown()).default([]),
  loadBalancers: z.array(z.unknown()).default([]),
});

/**
 * The whole file format in one schema (for documentation and JSON Schema export). It checks shapes and fields
 * only; `validateConfig` is the validator (it adds the semantic rules and reports every item's problems).
 */
export const ConfigFileSchema = z.strictObject({
  ...topFields,
  nodes: z.array(NodeSchema).default([]),
  loadBalancers: z.array(LoadBalancerSchema).default([]),
});

type NodeIn = z.output<typeof NodeSchema>;
type BackendIn = z.output<typeof BackendSchema>;
type LoadBalancerIn = z.output<typeof LoadBalancerItemSchema>;

// ---------------------------------------------------------------------------------------------------------------
// Paths and issue text.

export type PathSeg = string | number;

const IDENT_RE = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** `loadBalancers[0].backends[2].port`; the top level itself is `(root)`. */
export function formatPath(path: readonly PathSeg[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (IDENT_RE.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out === '' ? '(root)' : out;
}

/** One line per issue: `path: message [CODE]`. */
export function formatIssues(issues: readonly Issue[]): string {
  return issues.map((i) => `${i.path}: ${i.message} [${i.code}]`).join('\n');
}

function describe(v: unknown): string {
  if (v === null) return 'an empty value (null)';
  if (Array.isArray(v)) return 'a list';
  switch (typeof v) {
    case 'string':
      return `a string (${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v)})`;
    case 'number':
      return `the number ${v}`;
    case 'boolean':
      return `the boolean ${v}`;
    case 'object':
      return 'a mapping';
    default:
      return typeof v;
  }
}

const EXPECTED_WORDS: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  array: 'a list',
  object: 'a mapping',
  boolean: 'true or false',
};

/** Fields whose non-finite numbers (NaN, .inf) get the field's own range code rather than a type code. */
const NUMBER_FIELD_CODES: Record<string, ErrorCode> = {
  port: 'SLUICE_E_CONFIG_PORT_RANGE',
  ports: 'SLUICE_E_CONFIG_PORT_RANGE',
  weight: 'SLUICE_E_CONFIG_WEIGHT',
  slotBits: 'SLUICE_E_CONFIG_SLOT_BITS',
  drainWindowSeconds: 'SLUICE_E_CONFIG_DRAIN_WINDOW',
  chainLength: 'SLUICE_E_CONFIG_CHAIN_LENGTH',
};

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j];
      prev[j] = Math.min(prev[j] + 1, prev[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length];
}

function suggestion(key: string, known: readonly string[]): string {
  const lower = key.toLowerCase();
  let best: string | undefined;
  let bestD = Number.POSITIVE_INFINITY;
  for (const k of known) {
    const d = editDistance(lower, k.toLowerCase());
    if (d < bestD) {
      best = k;
      bestD = d;
    }
  }
  if (best !== undefined && bestD <= Math.max(2, Math.floor(key.length / 3)))
    return ` (did you mean "${best}"?)`;
  return ` (known keys: ${known.join(', ')})`;
}

/** Turns one zod issue, found in the item at `base`, into sluice issues. */
function fromZod(zi: z.core.$ZodIssue, base: readonly PathSeg[], knownKeys: readonly string[]): Issue[] {
  const segs = [...base, ...zi.path.map((p) => (typeof p === 'symbol' ? String(p) : p))];
  const path = formatPath(segs);
  const input = (zi as { input?: unknown }).input;
  switch (zi.code) {
    case 'custom': {
      const code =
        (zi.params as { sluiceCode?: ErrorCode } | undefined)?.sluiceCode ?? 'SLUICE_E_CONFIG_TYPE';
      return [{ code, path, message: zi.message }];
    }
    case 'unrecognized_keys':
      return zi.keys.map((key) => ({
        code: 'SLUICE_E_CONFIG_UNKNOWN_KEY',
        path: formatPath([...segs, key]),
        message: `unknown key ${JSON.stringify(key)}${suggestion(key, zi.path.at(-1) === 'healthCheck' ? Object.keys(HealthCheckSchema.shape) : knownKeys)}`,
      }));
    case 'invalid_type': {
      const received = (zi as { received?: unknown }).received;
      if (received === 'NaN' || received === 'Infinity') {
        const field = [...segs].reverse().find((s): s is string => typeof s === 'string') ?? '';
        const code = NUMBER_FIELD_CODES[field] ?? 'SLUICE_E_CONFIG_TYPE';
        return [{ code, path, message: `must be a finite number (got ${received})` }];
      }
      const expected = EXPECTED_WORDS[zi.expected] ?? zi.expected;
      if (input === undefined) {
        return [
          { code: 'SLUICE_E_CONFIG_MISSING', path, message: `required field is missing (${expected})` },
        ];
      }
      if (segs.length === 0) {
        return [
          {
            code: 'SLUICE_E_CONFIG_TYPE',
            path,
            message: `the config must be a mapping (YAML) or an object (JSON), got ${describe(input)}`,
          },
        ];
      }
      return [
        { code: 'SLUICE_E_CONFIG_TYPE', path, message: `expected ${expected}, got ${describe(input)}` },
      ];
    }
    case 'invalid_value':
      return [
        {
          code: 'SLUICE_E_CONFIG_ENUM',
          path,
          message: `must be one of ${zi.values.map((v) => String(v)).join(', ')} (got ${
            typeof input === 'string' ? JSON.stringify(input) : describe(input)
          })`,
        },
      ];
    default:
      return [{ code: 'SLUICE_E_CONFIG_TYPE', path, message: zi.message }];
  }
}

/** The sluice issues of a failed zod parse of the item at `base` (codes, paths and messages as for configs; an
 *  unknown key is answered with the closest of `knownKeys`). */
export function zodIssues(
  error: z.ZodError,
  base: readonly PathSeg[],
  knownKeys: readonly string[],
): Issue[] {
  return error.issues.flatMap((zi) => fromZod(zi, base, knownKeys));
}

interface Parsed<T> {
  /** The whole item, when its shape is valid. */
  readonly value: T | undefined;
  /** Every field that is valid on its own (all of them when `value` is defined). */
  readonly fields: Partial<T>;
}

/** Validates one object; on failure, also salvages the fields that are valid on their own for semantic checks. */
function parseItem<T extends object>(
  schema: z.ZodType<T> & { shape: Record<string, z.ZodType> },
  input: unknown,
  base: readonly PathSeg[],
  issues: Issue[],
): Parsed<T> {
  const r = schema.safeParse(input, { reportInput: true });
  if (r.success) return { value: r.data, fields: r.data };
  const known = Object.keys(schema.shape);
  for (const zi of r.error.issues) issues.push(...fromZod(zi, base, known));
  const fields: Record<string, unknown> = {};
  if (isRecord(input)) {
    for (const key of known) {
      const f = schema.shape[key].safeParse(input[key]);
      if (f.success && f.data !== undefined) fields[key] = f.data;
    }
  }
  return { value: undefined, fields: fields as Partial<T> };
}

// ---------------------------------------------------------------------------------------------------------------
// Validation.

export type ValidationResult =
  | { readonly ok: true; readonly config: Config }
  | { readonly ok: false; readonly issues: readonly Issue[] };

interface BackendItem {
  readonly path: string;
  readonly b: Partial<BackendIn>;
  /** The backend's port is known: valid, or absent (= dialled port). */
  readonly portKnown: boolean;
}

interface LbItem {
  readonly path: string;
  readonly lb: Partial<LoadBalancerIn>;
  readonly vip: ParsedIp | undefined;
  /** The valid ports the LB listens on, each with the path of its first mention. */
  readonly ports: ReadonlyMap<number, string> | undefined;
  readonly backends: readonly BackendItem[];
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Document order of the top-level keys, for sorting issues. */
const TOP_KEYS = [
  '(root)',
  'hashMode',
  'slotBits',
  'drainWindowSeconds',
  'chainLength',
  'nodes',
  'loadBalancers',
];

/** Issues sort in document order of top-level keys, then naturally (items[10] after items[9]). */
function comparePath(a: string, b: string): number {
  const rank = (s: string) => {
    const r = TOP_KEYS.indexOf(/^[^.[]*/.exec(s)![0]);
    return r < 0 ? TOP_KEYS.length : r;
  };
  if (rank(a) !== rank(b)) return rank(a) - rank(b);
  const split = (s: string) => s.split(/(\d+)/).map((x, i) => (i % 2 === 1 ? Number(x) : x));
  const pa = split(a);
  const pb = split(b);
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const x = pa[i];
    const y = pb[i];
    if (x === y) continue;
    if (typeof x === 'number' && typeof y === 'number') return x - y;
    return String(x) < String(y) ? -1 : 1;
  }
  return pa.length - pb.length;
}

/** The ports an LB listens on; pushes the port/ports rule problems. */
function listenerPorts(
  lb: Partial<LoadBalancerIn>,
  raw: Record<string, unknown>,
  p: string,
  issues: Issue[],
): Map<number, string> | undefined {
  const hasPort = raw.port !== undefined;
  const hasPorts = raw.ports !== undefined;
  if (hasPort && hasPorts) {
    issues.push({
      code: 'SLUICE_E_CONFIG_PORTS',
      path: `${p}.port`,
      message: 'give either `port` or `ports`, not both',
    });
    return undefined;
  }
  if (!hasPort && !hasPorts) {
    issues.push({
      code: 'SLUICE_E_CONFIG_MISSING',
      path: `${p}.ports`,
      message: 'required field is missing (a list of ports, or `port: N`)',
    });
    return undefined;
  }
  if (Array.isArray(raw.ports)) {
    if (raw.ports.length === 0) {
      issues.push({
        code: 'SLUICE_E_CONFIG_PORTS',
        path: `${p}.ports`,
        message: 'must list at least one port',
      });
      return undefined;
    }
    // Duplicates among the valid entries, even when another entry is invalid.
    const seen = new Map<unknown, number>();
    raw.ports.forEach((port, k) => {
      if (portField.safeParse(port).success === false) return;
      const first = seen.get(port);
      if (first === undefined) seen.set(port, k);
      else {
        issues.push({
          code: 'SLUICE_E_CONFIG_DUPLICATE_PORT',
          path: `${p}.ports[${k}]`,
          message: `port ${port} is listed twice (also ${p}.ports[${first}])`,
        });
      }
    });
  }
  if (lb.port !== undefined) return new Map([[lb.port, `${p}.port`]]);
  if (!Array.isArray(raw.ports)) return undefined;
  // The valid entries of `ports`, even when another entry is invalid.
  const out = new Map<number, string>();
  raw.ports.forEach((x, k) => {
    if (typeof x === 'number' && portField.safeParse(x).success && !out.has(x))
      out.set(x, `${p}.ports[${k}]`);
  });
  return out;
}

/** The items of an array, holes of a sparse one as `undefined` (map/forEach skip holes); [] for a non-array. */
function denseArray(x: unknown): unknown[] {
  return Array.isArray(x) ? Array.from(x) : [];
}

/** Sum of 2^lbSlotBits over the raw load balancers (a non-array `backends` counts as none: reported elsewhere), and
 *  how many of them are above `slotBits`. */
function budgetSlots(rawLbs: readonly unknown[], slotBits: number): { total: number; grown: number } {
  let total = 0;
  let grown = 0;
  for (const raw of rawLbs) {
    const backends = isRecord(raw) && Array.isArray(raw.backends) ? raw.backends.length : 0;
    const bits = lbSlotBits(slotBits, backends);
    total += 2 ** bits;
    if (bits > slotBits) grown++;
  }
  return { total, grown };
}

export function validateConfig(input: unknown): ValidationResult {
  const issues: Issue[] = [];
  const top = parseItem(TopSchema, input, [], issues);
  const rawTop = isRecord(input) ? input : {};
  const rawNodes = denseArray(rawTop.nodes);
  const rawLbs = denseArray(rawTop.loadBalancers);

  // ---- shape, item by item (and the port/ports rules, which need the raw item)
  const nodes = rawNodes.map((n, i) => parseItem(NodeSchema, n, ['nodes', i], issues));
  const lbs: LbItem[] = rawLbs.map((raw, i) => {
    const base = ['loadBalancers', i];
    const path = formatPath(base);
    const { fields: lb } = parseItem(LoadBalancerItemSchema, raw, base, issues);
    const rec = isRecord(raw) ? raw : {};
    const rawBackends = denseArray(rec.backends);
    const backends = rawBackends.map((b, j): BackendItem => {
      const { fields } = parseItem(BackendSchema, b, [...base, 'backends', j], issues);
      const portKnown = fields.port !== undefined || !isRecord(b) || b.port === undefined;
      return { path: `${path}.backends[${j}]`, b: fields, portKnown };
    });
    if (rawBackends.length > LIMITS.backendsPerLoadBalancer) {
      issues.push({
        code: 'SLUICE_E_CONFIG_TOO_MANY_BACKENDS',
        path: `${path}.backends`,
        message: `${rawBackends.length} backends; at most ${LIMITS.backendsPerLoadBalancer} per load balancer`,
      });
    }
    const ports = isRecord(raw) ? listenerPorts(lb, raw, path, issues) : undefined;
    const vip = lb.vip === undefined ? undefined : parseIp(lb.vip);
    return { path, lb, vip, ports, backends };
  });

  // ---- semantics, over every field that is valid on its own
  const nodeFields = nodes.map((n) => n.fields);
  checkNodes(nodeFields, issues);

  // Node names are taken from every node whose name is a string (even a node with other problems), so that one
  // broken node does not also make every backend on it "unknown". References are checked only when every node
  // has a name; roles only when every node has a valid role.
  const roleOf = new Map<string, NodeRole | undefined>();
  let namesComplete = rawTop.nodes === undefined || Array.isArray(rawTop.nodes);
  let rolesComplete = namesComplete;
  rawNodes.forEach((raw, i) => {
    const role = nodeFields[i].role;
    if (role === undefined) rolesComplete = false;
    if (!isRecord(raw) || typeof raw.name !== 'string') {
      namesComplete = false;
      return;
    }
    if (!roleOf.has(raw.name)) roleOf.set(raw.name, role);
  });
  const hostNames = [...roleOf]
    .filter(([, r]) => r === 'host')
    .map(([n]) => n)
    .sort(compareText);

  const tunnelOwner = new Map<string, string>();
  for (const n of nodeFields) {
    if (n.tunnelIp === undefined || n.name === undefined) continue;
    const tip = formatIp(parseIp(n.tunnelIp)!);
    if (!tunnelOwner.has(tip)) tunnelOwner.set(tip, n.name);
  }

  checkLoadBalancers(lbs, tunnelOwner, issues);
  const slotBits = typeof rawTop.slotBits === 'number' ? rawTop.slotBits : DEFAULTS.slotBits;
  const bitsValid =
    Number.isInteger(slotBits) && slotBits >= LIMITS.slotBits.min && slotBits <= LIMITS.slotBits.max;
  const budget = bitsValid ? budgetSlots(rawLbs, slotBits) : { total: 0, grown: 0 };
  if (budget.total > LIMITS.totalSlots) {
    const grown =
      budget.grown === 0
        ? ''
        : ` (${budget.grown} of them more: over ${2 ** slotBits / SLOTS_PER_BACKEND} backends)`;
    issues.push({
      code: 'SLUICE_E_CONFIG_TOO_LARGE',
      path: 'loadBalancers',
      message:
        `${rawLbs.length} load balancers x 2^${slotBits} slots${grown} = ${budget.total} slots; at most ` +
        `${LIMITS.totalSlots} in total (fewer load balancers or backends, or a smaller slotBits)`,
    });
  }
  checkBackends(lbs, { roleOf, namesComplete, hostNames, tunnelOwner }, issues);

  if (rawLbs.length > 0 && rolesComplete) {
    const roles = new Set(nodeFields.map((n) => n.role));
    if (!roles.has('gateway')) {
      issues.push({
        code: 'SLUICE_E_CONFIG_NO_GATEWAY',
        path: 'nodes',
        message: 'load balancers need at least one node with role: gateway',
      });
    }
    if (!roles.has('host')) {
      issues.push({
        code: 'SLUICE_E_CONFIG_NO_HOST',
        path: 'nodes',
        message: 'load balancers need at least one node with role: host',
      });
    }
  }

  if (issues.length > 0 || top.value === undefined) {
    issues.sort((a, b) => comparePath(a.path, b.path) || compareText(a.code, b.code));
    return deepFreeze({ ok: false, issues });
  }
  // No issue: every item parsed whole, so every field is present.
  return {
    ok: true,
    config: deepFreeze(
      buildConfig(
        top.value,
        nodeFields as NodeIn[],
        lbs.map((l) => ({
          lb: l.lb as LoadBalancerIn,
          ports: l.ports!,
          backends: l.backends.map((x) => x.b as BackendIn),
        })),
      ),
    ),
  };
}

function checkNodes(nodes: readonly Partial<NodeIn>[], issues: Issue[]): void {
  const byName = new Map<string, number>();
  const byTunnel = new Map<string, number>();
  nodes.forEach((n, i) => {
    if (n.name !== undefined) {
      const first = byName.get(n.name);
      if (first === undefined) byName.set(n.name, i);
      else {
        issues.push({
          code: 'SLUICE_E_CONFIG_DUPLICATE_NODE',
          path: `nodes[${i}].name`,
          message: `duplicate node name "${n.name}" (also nodes[${first}])`,
        });
      }
    }
    if (n.tunnelIp !== undefined) {
      const tip = formatIp(parseIp(n.tunnelIp)!);
      const first = byTunnel.get(tip);
      if (first === undefined) byTunnel.set(tip, i);
      else {
        const other = nodes[first].name;
        issues.push({
          code: 'SLUICE_E_CONFIG_DUPLICATE_TUNNEL_IP',
          path: `nodes[${i}].tunnelIp`,
          message: `tunnelIp ${tip} is also used by ${other === undefined ? '' : `node "${other}" `}(nodes[${first}])`,
        });
      }
    }
  });
}

function checkLoadBalancers(
  lbs: readonly LbItem[],
  tunnelOwner: ReadonlyMap<string, string>,
  issues: Issue[],
): void {
  const byName = new Map<string, string>();
  const byListener = new Map<string, { lb: string; path: string }>();
  for (const { path, lb, vip, ports } of lbs) {
    if (lb.name !== undefined) {
      const first = byName.get(lb.name);
      if (first === undefined) byName.set(lb.name, path);
      else {
        issues.push({
          code: 'SLUICE_E_CONFIG_DUPLICATE_LB',
          path: `${path}.name`,
          message: `duplicate load balancer name "${lb.name}" (also ${first})`,
        });
      }
    }
    if (vip === undefined) continue;
    const vipText = formatIp(vip);
    const owner = tunnelOwner.get(vipText);
    if (owner !== undefined) {
      issues.push({
        code: 'SLUICE_E_CONFIG_ADDRESS_CONFLICT',
        path: `${path}.vip`,
        message: `${vipText} is the tunnelIp of node "${owner}"`,
      });
    }
    if (ports === undefined || lb.protocol === undefined) continue;
    for (const [port, where] of ports) {
      const key = `${lb.protocol} ${vipText} ${port}`;
      const first = byListener.get(key);
      if (first === undefined) {
        byListener.set(key, { lb: lb.name ?? '', path });
        continue;
      }
      const shown = vip.family === 6 ? `[${vipText}]` : vipText;
      issues.push({
        code: 'SLUICE_E_CONFIG_DUPLICATE_LISTENER',
        path: where,
        message: `${lb.protocol} ${shown}:${port} is already served by load balancer "${first.lb}" (${first.path})`,
      });
    }
  }
}

interface NodeFacts {
  readonly roleOf: ReadonlyMap<string, NodeRole | undefined>;
  readonly namesComplete: boolean;
  readonly hostNames: readonly string[];
  readonly tunnelOwner: ReadonlyMap<string, string>;
}

function checkBackends(lbs: readonly LbItem[], facts: NodeFacts, issues: Issue[]): void {
  const hostList =
    facts.hostNames.length > 0 ? `hosts: ${facts.hostNames.join(', ')}` : 'there are no host nodes';
  // Backend address -> the host it was first placed on, across all load balancers.
  const placement = new Map<string, { host: string; path: string }>();
  // Backend address -> the first MAC given for it, across all load balancers (one address, one MAC).
  const macs = new Map<string, { mac: string; path: string }>();
  // VIP address -> the load balancer path that uses it (a backend may not be any VIP).
  const vips = new Map<string, string>();
  for (const { path, vip } of lbs)
    if (vip !== undefined && !vips.has(formatIp(vip))) vips.set(formatIp(vip), path);
  for (const { vip, ports, backends } of lbs) {
    // Effective target "address port" -> path of the first backend that sends there.
    const targets = new Map<string, string>();
    for (const { path, b, portKnown } of backends) {
      const ip = b.address === undefined ? undefined : parseIp(b.address)!;
      const addr = ip === undefined ? undefined : formatIp(ip);
      if (ip !== undefined && addr !== undefined) {
        if (vip !== undefined && ip.family !== vip.family) {
          issues.push({
            code: 'SLUICE_E_CONFIG_FAMILY_MISMATCH',
            path: `${path}.address`,
            message: `${addr} is IPv${ip.family} but the VIP ${formatIp(vip)} is IPv${vip.family}`,
          });
        }
        const vipOf = vips.get(addr);
        if (vipOf !== undefined) {
          issues.push({
            code: 'SLUICE_E_CONFIG_ADDRESS_CONFLICT',
            path: `${path}.address`,
            message: `${addr} is the VIP of ${vipOf}: a backend there would receive its own load balancer's traffic`,
          });
        }
        const owner = facts.tunnelOwner.get(addr);
        if (owner !== undefined) {
          issues.push({
            code: 'SLUICE_E_CONFIG_ADDRESS_CONFLICT',
            path: `${path}.address`,
            message: `${addr} is the tunnelIp of node "${owner}"`,
          });
        }
        // Duplicates: a backend without a port sends to every port of the load balancer.
        if (portKnown) {
          const tports: readonly (number | string)[] =
            b.port !== undefined ? [b.port] : ports !== undefined ? [...ports.keys()] : ['*'];
          const clash = tports.map((p) => targets.get(`${addr} ${p}`)).find((x) => x !== undefined);
          if (clash !== undefined) {
            const what =
              b.port === undefined ? addr : ip.family === 6 ? `[${addr}]:${b.port}` : `${addr}:${b.port}`;
            issues.push({
              code: 'SLUICE_E_CONFIG_DUPLICATE_BACKEND',
              path,
              message: `${what} is already a backend of this load balancer (${clash})`,
            });
          } else {
            for (const p of tports) targets.set(`${addr} ${p}`, path);
          }
        }
      }
      if (b.host === undefined) continue;
      const known = facts.roleOf.has(b.host);
      if (!known && facts.namesComplete) {
        issues.push({
          code: 'SLUICE_E_CONFIG_UNKNOWN_HOST',
          path: `${path}.host`,
          message: `unknown node "${b.host}" (${hostList})`,
        });
      } else if (known && facts.roleOf.get(b.host) === 'gateway') {
        issues.push({
          code: 'SLUICE_E_CONFIG_BACKEND_ON_GATEWAY',
          path: `${path}.host`,
          message: `"${b.host}" is a gateway; backends run on host nodes (${hostList})`,
        });
      }
      if (addr === undefined) continue;
      checkBackendMac(macs, addr, path, b.mac, issues);
      const placed = placement.get(addr);
      if (placed === undefined) placement.set(addr, { host: b.host, path });
      else if (placed.host !== b.host) {
        issues.push({
          code: 'SLUICE_E_CONFIG_BACKEND_HOST_CONFLICT',
          path: `${path}.host`,
          message: `backend ${addr} is on "${b.host}" here but on "${placed.host}" at ${placed.path}`,
        });
      }
    }
  }
}

/** One MAC per backend address: a second, different `mac` for an address (any load balancer) is an issue. */
function checkBackendMac(
  macs: Map<string, { mac: string; path: string }>,
  addr: string,
  path: string,
  mac: string | undefined,
  issues: Issue[],
): void {
  if (mac === undefined || !MAC_RE.test(mac)) return;
  const m = mac.toLowerCase();
  const first = macs.get(addr);
  if (first === undefined) macs.set(addr, { mac: m, path });
  else if (first.mac !== m)
    issues.push({
      code: 'SLUICE_E_CONFIG_MAC_CONFLICT',
      path: `${path}.mac`,
      message: `backend ${addr} has MAC ${m} here but ${first.mac} at ${first.path}`,
    });
}

function bytesHex(bytes: Uint8Array): string {
  let s = '';
  for (const x of bytes) s += x.toString(16).padStart(2, '0');
  return s;
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function buildConfig(
  top: z.output<typeof TopSchema>,
  nodes: readonly NodeIn[],
  lbs: readonly { lb: LoadBalancerIn; ports: ReadonlyMap<number, string>; backends: readonly BackendIn[] }[],
): Config {
  const outNodes: Node[] = nodes
    .map((n) => ({ name: n.name, role: n.role, tunnelIp: formatIp(parseIp(n.tunnelIp)!) }))
    .sort((a, b) => compareText(a.name, b.name));
  const outLbs: LoadBalancer[] = lbs
    .map(({ lb, ports, backends }) => {
      const vip = parseIp(lb.vip)!;
      // Sort on a precomputed fixed-width key (family, address bytes as hex, port): same order as compareIp.
      const outBackends: Backend[] = backends
        .map((b) => {
          const ip = parseIp(b.address)!;
          const sortKey = `${ip.family}${bytesHex(ip.bytes)}${(b.port ?? 0).toString(16).padStart(4, '0')}`;
          const backend: Backend = {
            address: formatIp(ip),
            port: b.port,
            host: b.host,
            weight: b.weight,
            state: b.state,
            ...(b.mac === undefined ? {} : { mac: b.mac.toLowerCase() }),
          };
          return { sortKey, backend };
        })
        .sort((x, y) => compareText(x.sortKey, y.sortKey))
        .map((x) => x.backend);
      return {
        name: lb.name,
        vip: formatIp(vip),
        family: vip.family,
        protocol: lb.protocol,
        ports: [...ports.keys()].sort((a, b) => a - b),
        backends: outBackends,
        ...(lb.healthCheck === undefined ? {} : { healthCheck: { ...lb.healthCheck } }),
      };
    })
    .sort((a, b) => compareText(a.name, b.name));
  return {
    hashMode: top.hashMode,
    slotBits: top.slotBits,
    ...(top.drainWindowSeconds !== undefined ? { drainWindowSeconds: top.drainWindowSeconds } : {}),
    chainLength: top.chainLength,
    nodes: outNodes,
    loadBalancers: outLbs,
  };
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}

/**
 * Validates a decoded config file and returns it deeply frozen, in canonical form (see the top of this file).
 * Throws SluiceError('SLUICE_E_CONFIG_INVALID') listing every problem (error.issues) when there is any.
 * `source` (e.g. a file name) only appears in the error message.
 */
export function parseConfig(input: unknown, source?: string): Config {
  const r = validateConfig(input);
  if (r.ok) return r.config;
  const n = r.issues.length;
  throw new SluiceError(
    'SLUICE_E_CONFIG_INVALID',
    `invalid config${source === undefined ? '' : ` ${source}`}: ${n} problem${n === 1 ? '' : 's'}\n${formatIssues(
      r.issues,
    )
      .split('\n')
      .map((l) => `  ${l}`)
      .join('\n')}`,
    r.issues,
  );
}
