// Canonical text of a FlowSet (the golden-test oracle) and parsers of `ovs-ofctl -O OpenFlow15`
// dump output into the same structures, so installed state can be diffed against desired state. Pure.
//
// Canonical text, one node:
//   # node gw1
//   bridge br-int
//   tlv {class=0xffff,type=0x80,len=4}->tun_metadata0
//   meter meter=1358954433 pktps burst bands=type=drop rate=2000 burst_size=2000
//   group group_id=1358954497,type=select,selection_method=dp_hash,bucket=bucket_id:0,actions=...
//   flow cookie=0x5102000100000050 table=0 priority=100,tcp,nw_dst=203.0.113.10,tp_dst=80 actions=...
// Bridges sorted by name; TLVs by index; meters and groups by id; flows by table, priority (high first), match, cookie.
// Volatile fields of dumps (duration, n_packets, n_bytes, idle_age, hard_age) are never part of it.

import type { BridgeState, Flow, FlowSet, Group, Meter, TlvMapping } from './types.ts';

export function hex(n: number | bigint): string {
  return `0x${n.toString(16)}`;
}

export function compareFlows(a: Flow, b: Flow): number {
  if (a.table !== b.table) return a.table - b.table;
  if (a.priority !== b.priority) return b.priority - a.priority;
  if (a.match !== b.match) return a.match < b.match ? -1 : 1;
  if (a.cookie !== b.cookie) return a.cookie < b.cookie ? -1 : 1;
  return a.actions < b.actions ? -1 : a.actions > b.actions ? 1 : 0;
}

export function sortBridge(b: BridgeState): BridgeState {
  return {
    flows: [...b.flows].sort(compareFlows),
    groups: [...b.groups].sort((x, y) => x.groupId - y.groupId),
    tlvMap: [...b.tlvMap].sort((x, y) => x.index - y.index),
    ...(b.meters?.length ? { meters: [...b.meters].sort((x, y) => x.meterId - y.meterId) } : {}),
  };
}

export function renderTlv(t: TlvMapping): string {
  return `{class=${hex(t.optClass)},type=${hex(t.type)},len=${t.len}}->tun_metadata${t.index}`;
}

export function renderGroup(g: Group): string {
  return `group_id=${g.groupId},${g.spec}`;
}

export function renderMeter(m: Meter): string {
  return `meter=${m.meterId} ${m.spec}`;
}

/** The `add-meter` / `mod-meter` argument of a meter: `meter=N,pktps,burst,band=type=drop,rate=R,burst_size=B`. */
export function meterArg(m: Meter): string {
  return [`meter=${m.meterId}`, ...m.spec.split(' ').map((w) => w.replace(/^bands=/, 'band='))].join(',');
}

export function renderFlow(f: Flow): string {
  return `cookie=${hex(f.cookie)} table=${f.table} priority=${f.priority}${f.match ? `,${f.match}` : ''} actions=${f.actions}`;
}

export function renderBridge(name: string, b: BridgeState): string {
  const s = sortBridge(b);
  const lines = [`bridge ${name}`];
  for (const t of s.tlvMap) lines.push(`tlv ${renderTlv(t)}`);
  for (const m of s.meters ?? []) lines.push(`meter ${renderMeter(m)}`);
  for (const g of s.groups) lines.push(`group ${renderGroup(g)}`);
  for (const f of s.flows) lines.push(`flow ${renderFlow(f)}`);
  return lines.join('\n');
}

/** The canonical text of a node's complete state. */
export function renderFlowSet(fs: FlowSet): string {
  const names = [...fs.bridges.keys()].sort();
  return `# node ${fs.node}\n${names.map((n) => renderBridge(n, fs.bridges.get(n)!)).join('\n')}\n`;
}

const TLV_RE = /^\{class=(0x[0-9a-f]+),type=(0x[0-9a-f]+),len=(\d+)\}->tun_metadata(\d+)$/;
const FLOW_RE = /^cookie=(0x[0-9a-f]+) table=(\d+) priority=(\d+)(?:,(\S+))? actions=(.*)$/;

/** Parses renderFlowSet's output back (round trip). Throws on a line it does not understand. */
export function parseFlowSet(text: string): FlowSet {
  let node = '';
  type Parsed = { flows: Flow[]; groups: Group[]; tlvMap: TlvMapping[]; meters?: Meter[] };
  const bridges = new Map<string, Parsed>();
  let cur: Parsed | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    if (line.startsWith('# node ')) {
      node = line.slice('# node '.length);
    } else if (line.startsWith('#')) {
    } else if (line.startsWith('bridge ')) {
      cur = { flows: [], groups: [], tlvMap: [] };
      bridges.set(line.slice('bridge '.length), cur);
    } else if (cur && line.startsWith('tlv ')) {
      const m = TLV_RE.exec(line.slice(4));
      if (!m) throw new Error(`bad tlv line: ${line}`);
      cur.tlvMap.push({ optClass: Number(m[1]), type: Number(m[2]), len: Number(m[3]), index: Number(m[4]) });
    } else if (cur && line.startsWith('meter ')) {
      cur.meters ??= [];
      cur.meters.push(...parseDumpMeters(line.slice(6)));
    } else if (cur && line.startsWith('group ')) {
      cur.groups.push(parseGroupLine(line.slice(6)));
    } else if (cur && line.startsWith('flow ')) {
      const m = FLOW_RE.exec(line.slice(5));
      if (!m) throw new Error(`bad flow line: ${line}`);
      cur.flows.push({
        cookie: BigInt(m[1]),
        table: Number(m[2]),
        priority: Number(m[3]),
        match: m[4] ?? '',
        actions: m[5],
      });
    } else {
      throw new Error(`bad flowset line: ${line}`);
    }
  }
  return { node, bridges };
}

function parseGroupLine(s: string): Group {
  const m = /^group_id=(\d+|0x[0-9a-f]+),(.*)$/.exec(s.trim());
  if (!m) throw new Error(`bad group line: ${s}`);
  return { groupId: Number(m[1]), spec: m[2] };
}

const VOLATILE = new Set(['duration', 'n_packets', 'n_bytes', 'idle_age', 'hard_age']);

/**
 * Parses `ovs-ofctl -O OpenFlow15 dump-flows <br>` output (every flow, any cookie). Lines look like
 *   ` cookie=0x51.., duration=1.2s, table=0, n_packets=0, n_bytes=0, idle_age=0, priority=100,tcp,... actions=...`
 * `priority` is absent when it is the default 32768; `cookie` and `table` when 0.
 */
export function parseDumpFlows(text: string): Flow[] {
  const flows: Flow[] = [];
  for (const raw of text.split('\n')) {
    const f = parseDumpFlowLine(raw);
    if (f !== undefined) flows.push(f);
  }
  return flows;
}

/** One line of `dump-flows` output as parseDumpFlows reads it; undefined for a blank or header line. */
export function parseDumpFlowLine(raw: string): Flow | undefined {
  const line = raw.trim();
  if (!line || /^(OFPST_|NXST_)/.test(line)) return undefined;
  const at = line.indexOf(' actions=');
  if (at < 0) throw new Error(`unparsable dump-flows line: ${line}`);
  const left = line.slice(0, at);
  const actions = line.slice(at + ' actions='.length);
  // Stats are ", "-separated key=value pairs; the last piece is "priority=P,match" (or just the match).
  const pieces = left.split(', ');
  let cookie = 0n;
  let table = 0;
  let tail = '';
  for (const piece of pieces) {
    const eq = piece.indexOf('=');
    const key = eq < 0 ? piece : piece.slice(0, eq);
    if (key === 'cookie') cookie = BigInt(piece.slice(eq + 1));
    else if (key === 'table') table = Number(piece.slice(eq + 1));
    else if (
      VOLATILE.has(key) ||
      key === 'reset_counts' ||
      key.endsWith('_timeout') ||
      key === 'importance'
    ) {
    } else tail = tail ? `${tail}, ${piece}` : piece;
  }
  let priority = 32768;
  let match = tail;
  const pm = /^priority=(\d+)(?:,(.*))?$/.exec(tail);
  if (pm) {
    priority = Number(pm[1]);
    match = pm[2] ?? '';
  }
  return { cookie, table, priority, match, actions };
}

/** Parses `ovs-ofctl -O OpenFlow15 dump-groups <br>` output. */
export function parseDumpGroups(text: string): Group[] {
  const groups: Group[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || /^(OFPST_|NXST_)/.test(line)) continue;
    groups.push(parseGroupLine(line));
  }
  return groups;
}

/** Parses `ovs-ofctl -O OpenFlow15 dump-tlv-map <br>` output (the "mapping table" rows). */
export function parseDumpTlvMap(text: string): TlvMapping[] {
  const out: TlvMapping[] = [];
  for (const raw of text.split('\n')) {
    const m = /^\s*(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(\d+)\s+tun_metadata(\d+)\s*$/.exec(raw);
    if (m) out.push({ optClass: Number(m[1]), type: Number(m[2]), len: Number(m[3]), index: Number(m[4]) });
  }
  return out;
}

/**
 * Parses `ovs-ofctl -O OpenFlow15 dump-meters <br>` output: each meter is a line `meter=N pktps burst bands=` followed
 * by one line per band (`type=drop rate=100 burst_size=100`); the band lines are joined to the spec with a space.
 */
export function parseDumpMeters(text: string): Meter[] {
  const meters: { meterId: number; spec: string }[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || /^(OFPST_|NXST_)/.test(line)) continue;
    const m = /^meter=(\d+) (.*)$/.exec(line);
    if (m) meters.push({ meterId: Number(m[1]), spec: m[2]! });
    else if (meters.length > 0) {
      const last = meters[meters.length - 1]!;
      last.spec = last.spec.endsWith('=') ? `${last.spec}${line}` : `${last.spec} ${line}`;
    } else throw new Error(`unparsable dump-meters line: ${line}`);
  }
  return meters;
}
