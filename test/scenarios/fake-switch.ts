// A FAKE Runner (no OVS) for unit tests of the applier: an in-memory switch that prints dumps in ovs-ofctl's format
// and applies bundle lines all-or-nothing, rejecting a bundle that references a missing group. Parses only the
// bundle syntax the applier writes. `reads` counts dump-flows calls (the incremental path must not read). Meters as
// on OVS 3.1: outside bundles, a flow naming a missing meter is refused, deleting a meter deletes the flows naming it.

import { hex } from '../../src/flowset/text.ts';
import type { Runner, RunOpts, RunResult } from '../../src/openflow/runner.ts';

interface FakeFlow {
  cookie: bigint;
  table: number;
  priority: number;
  match: string;
  actions: string;
}

/** One fake switch with several bridges. Parses only the bundle syntax the applier writes. */
export class FakeSwitch implements Runner {
  reads = 0;
  flows = new Map<string, Map<string, FakeFlow>>();
  groups = new Map<string, Map<number, string>>();
  tlv = new Map<string, string[]>();
  meters = new Map<string, Map<number, string>>();
  bundles: string[][] = [];
  /** Every meter command, e.g. `br-int add-meter meter=...`. */
  meterLog: string[] = [];
  /** Called after a bundle committed (a test changes the switch behind the applier's back). */
  afterBundle?: (bridge: string) => void;

  br<T>(m: Map<string, T>, b: string, init: () => T): T {
    if (!m.has(b)) m.set(b, init());
    return m.get(b)!;
  }

  async ofctl(bridge: string, args: readonly string[], opts: RunOpts = {}): Promise<RunResult> {
    const flows = this.br(this.flows, bridge, () => new Map<string, FakeFlow>());
    const groups = this.br(this.groups, bridge, () => new Map<number, string>());
    const tlv = this.br(this.tlv, bridge, () => [] as string[]);
    const meters = this.br(this.meters, bridge, () => new Map<number, string>());
    const ok = (stdout: string): RunResult => ({ code: 0, stdout, stderr: '' });
    switch (args[0]) {
      case 'dump-flows': {
        this.reads++;
        // An optional `cookie=value/mask` filter, as ovs-ofctl takes it.
        const c = /^cookie=(0x[0-9a-f]+)\/(0x[0-9a-f]+)$/.exec(args[1] ?? '');
        const shown = [...flows.values()].filter(
          (f) => !c || (f.cookie & BigInt(c[2])) === (BigInt(c[1]) & BigInt(c[2])),
        );
        return ok(
          `OFPST_FLOW reply (OF1.5) (xid=0x2):\n${shown
            .map(
              (f) =>
                ` cookie=${hex(f.cookie)}, duration=1.0s, table=${f.table}, n_packets=0, n_bytes=0, idle_age=1, priority=${f.priority}${f.match ? `,${f.match}` : ''} actions=${f.actions}`,
            )
            .join('\n')}\n`,
        );
      }
      case 'dump-groups':
        return ok(
          `OFPST_GROUP_DESC reply (OF1.5) (xid=0x2):\n${[...groups].map(([id, spec]) => ` group_id=${id},${spec}`).join('\n')}\n`,
        );
      case 'dump-meters':
        return ok(
          `OFPST_METER_CONFIG reply (OF1.5) (xid=0x2):\n${[...meters]
            .map(([id, spec]) => `meter=${id} ${spec.replace('bands=', 'bands=\n')}`)
            .join('\n\n')}\n`,
        );
      case 'add-meter':
      case 'mod-meter':
      case 'del-meter': {
        this.meterLog.push(`${bridge} ${args.join(' ')}`);
        const m = /^meter=(\d+)(?:,(.*))?$/.exec(args[1] ?? '');
        if (!m) return { code: 1, stdout: '', stderr: `fake: bad meter ${args[1]}` };
        const id = +m[1]!;
        if (args[0] === 'del-meter') {
          meters.delete(id);
          for (const [k, f] of flows) if (f.actions.includes(`meter:${id},`)) flows.delete(k);
        } else {
          if ((args[0] === 'add-meter') === meters.has(id))
            return {
              code: 1,
              stdout: '',
              stderr: `OFPMMFC_${meters.has(id) ? 'METER_EXISTS' : 'UNKNOWN_METER'}`,
            };
          meters.set(id, m[2]!.split(',').join(' ').replace('band=', 'bands='));
        }
        return ok('');
      }
      case 'dump-tlv-map':
        return ok(` mapping table:\n${tlv.join('\n')}\n`);
      case 'add-tlv-map':
        for (const m of args[1].matchAll(
          /\{class=(0x[0-9a-f]+),type=(0x[0-9a-f]+),len=(\d+)\}->tun_metadata(\d+)/g,
        )) {
          tlv.push(` ${m[1]}  ${m[2]}  ${m[3]}  tun_metadata${m[4]}`);
        }
        return ok('');
      case 'bundle': {
        const text =
          typeof opts.input === 'string'
            ? opts.input
            : Buffer.concat([...(opts.input ?? [])].map((c) => Buffer.from(c))).toString();
        const lines = text.trim().split('\n');
        this.bundles.push(lines);
        const f2 = new Map(flows);
        const g2 = new Map(groups);
        for (const line of lines) {
          const add =
            /^flow add cookie=(0x[0-9a-f]+),table=(\d+),priority=(\d+),(?:(.*),)?actions=(.*)$/.exec(line);
          const del = /^flow delete_strict cookie=\S+?,table=(\d+),priority=(\d+)(?:,(.*))?$/.exec(line);
          const gset = /^group (add|modify) group_id=(\d+),(.*)$/.exec(line);
          const gdel = /^group delete group_id=(\d+)$/.exec(line);
          if (add) {
            const f = {
              cookie: BigInt(add[1]),
              table: +add[2],
              priority: +add[3],
              match: add[4] ?? '',
              actions: add[5],
            };
            for (const g of f.actions.matchAll(/group:(\d+)/g)) {
              if (!g2.has(+g[1])) return { code: 1, stdout: '', stderr: `OFPGMFC_UNKNOWN_GROUP ${g[1]}` };
            }
            for (const g of f.actions.matchAll(/meter:(\d+)/g)) {
              if (!meters.has(+g[1])) return { code: 1, stdout: '', stderr: `OFPMMFC_INVALID_METER ${g[1]}` };
            }
            f2.set(`${f.table}/${f.priority}/${f.match}`, f);
          } else if (del) {
            f2.delete(`${del[1]}/${del[2]}/${del[3] ?? ''}`);
          } else if (gset) {
            // As OVS: an add of an existing group id or a modify of a missing one fails the bundle.
            if ((gset[1] === 'add') === g2.has(+gset[2]))
              return {
                code: 1,
                stdout: '',
                stderr:
                  gset[1] === 'add' ? `OFPGMFC_GROUP_EXISTS ${gset[2]}` : `OFPGMFC_UNKNOWN_GROUP ${gset[2]}`,
              };
            g2.set(+gset[2], gset[3]);
          } else if (gdel) {
            g2.delete(+gdel[1]);
          } else {
            return { code: 1, stdout: '', stderr: `ovs-ofctl: -:1: unparsable: ${line}` };
          }
        }
        this.flows.set(bridge, f2);
        this.groups.set(bridge, g2);
        this.afterBundle?.(bridge);
        return ok('');
      }
      default:
        return { code: 1, stdout: '', stderr: `fake: ${args[0]}` };
    }
  }

  async appctl(): Promise<RunResult> {
    return { code: 0, stdout: '', stderr: '' };
  }
}
