// What changes between two validated configs, in words (`sluice apply --dry-run`): rows added, changed and removed,
// matched the way the store matches them (store.ts desiredStateOps): nodes and load balancers by name, backends by
// backendKey within their load balancer. Also the desired state as a config document (`sluice show`), which reads
// back through parseConfig into the same Config. Pure: no I/O.

import type { Backend, Config, LoadBalancer, Node } from '../model/types.ts';
import { backendKey } from '../model/types.ts';

export type ChangeKind = 'added' | 'changed' | 'removed';
export type ChangeSubject = 'setting' | 'node' | 'load balancer' | 'backend';

export interface FieldChange {
  readonly field: string;
  readonly from: unknown;
  readonly to: unknown;
}

export interface ConfigChange {
  readonly kind: ChangeKind;
  readonly subject: ChangeSubject;
  /** Node or load balancer name, `lb backendKey` for backends, the setting's name for settings. */
  readonly name: string;
  /** For `changed`: the fields that differ. */
  readonly fields: readonly FieldChange[];
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

function fieldChanges<T extends object>(
  from: T,
  to: T,
  fields: readonly (keyof T & string)[],
): FieldChange[] {
  return fields.filter((f) => !same(from[f], to[f])).map((f) => ({ field: f, from: from[f], to: to[f] }));
}

function byKey<T>(items: readonly T[], key: (t: T) => string): Map<string, T> {
  return new Map(items.map((t) => [key(t), t]));
}

function diffSet<T extends object>(
  out: ConfigChange[],
  subject: ChangeSubject,
  from: readonly T[],
  to: readonly T[],
  key: (t: T) => string,
  fields: readonly (keyof T & string)[],
  name: (k: string) => string = (k) => k,
  inner?: (a: T, b: T) => void,
): void {
  const a = byKey(from, key);
  const b = byKey(to, key);
  for (const [k, x] of a) {
    const y = b.get(k);
    if (y === undefined) {
      out.push({ kind: 'removed', subject, name: name(k), fields: [] });
      continue;
    }
    const fc = fieldChanges(x, y, fields);
    if (fc.length > 0) out.push({ kind: 'changed', subject, name: name(k), fields: fc });
    inner?.(x, y);
  }
  for (const [k, y] of b) {
    if (a.has(k)) continue;
    out.push({ kind: 'added', subject, name: name(k), fields: [] });
    inner?.({ ...y, backends: [] } as T, y);
  }
}

/** Every row-level difference from `from` to `to`, settings first, then nodes, load balancers and backends. */
export function diffConfigs(from: Config, to: Config): ConfigChange[] {
  const out: ConfigChange[] = [];
  for (const f of ['hashMode', 'slotBits', 'drainWindowSeconds', 'chainLength'] as const) {
    if (from[f] !== to[f])
      out.push({
        kind: 'changed',
        subject: 'setting',
        name: f,
        fields: [{ field: f, from: from[f], to: to[f] }],
      });
  }
  diffSet<Node>(out, 'node', from.nodes, to.nodes, (n) => n.name, ['role', 'tunnelIp']);
  const backendChanges: ConfigChange[] = [];
  diffSet<LoadBalancer>(
    out,
    'load balancer',
    from.loadBalancers,
    to.loadBalancers,
    (lb) => lb.name,
    ['vip', 'protocol', 'ports'],
    (k) => k,
    (x, y) =>
      diffSet<Backend>(
        backendChanges,
        'backend',
        x.backends,
        y.backends,
        backendKey,
        ['host', 'weight', 'state', 'mac'],
        (k) => `${y.name} ${k}`,
      ),
  );
  // A load balancer removed takes its backends with it: one line says so.
  return [...out, ...backendChanges];
}

function value(v: unknown): string {
  return Array.isArray(v) ? v.join(',') : v === undefined ? '(none)' : String(v);
}

/** One line per change: `+ backend web 10.0.1.13:8080`, `~ node gw1: tunnelIp 192.168.100.1 -> ...`, `- ...`. */
export function formatChanges(changes: readonly ConfigChange[]): string {
  if (changes.length === 0) return 'no changes';
  const sign: Record<ChangeKind, string> = { added: '+', changed: '~', removed: '-' };
  return changes
    .map((c) => {
      const head = `${sign[c.kind]} ${c.subject} ${c.name} ${c.kind}`;
      if (c.kind !== 'changed') return head;
      return `${head}: ${c.fields.map((f) => `${f.field} ${value(f.from)} -> ${value(f.to)}`).join(', ')}`;
    })
    .join('\n');
}

/** Counts per kind, for summaries. */
export function countChanges(changes: readonly ConfigChange[]): Record<ChangeKind, number> {
  const n = { added: 0, changed: 0, removed: 0 };
  for (const c of changes) n[c.kind]++;
  return n;
}

/** Config-file document (docs/config.md) for a Config: parseConfig(configDocument(c)) equals c. */
export function configDocument(c: Config) {
  return {
    hashMode: c.hashMode,
    slotBits: c.slotBits,
    ...(c.drainWindowSeconds !== undefined ? { drainWindowSeconds: c.drainWindowSeconds } : {}),
    ...(c.chainLength !== undefined ? { chainLength: c.chainLength } : {}),
    nodes: c.nodes.map((n) => ({ name: n.name, role: n.role, tunnelIp: n.tunnelIp })),
    loadBalancers: c.loadBalancers.map((lb) => ({
      name: lb.name,
      vip: lb.vip,
      protocol: lb.protocol,
      ports: [...lb.ports],
      ...(lb.healthCheck === undefined ? {} : { healthCheck: { ...lb.healthCheck } }),
      backends: lb.backends.map((b) => ({
        address: b.address,
        ...(b.port === undefined ? {} : { port: b.port }),
        host: b.host,
        weight: b.weight,
        state: b.state,
        ...(b.mac === undefined ? {} : { mac: b.mac }),
      })),
    })),
  };
}

export type ConfigDocument = ReturnType<typeof configDocument>;
