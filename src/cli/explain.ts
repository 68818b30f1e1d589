// `sluice explain`: the hash, slot, backend, chain and host of one 5-tuple, in a config file's first generation or
// the generation the store published; `sluice audit`: the same model against a host's committed connections. Reads files/the store, calls the pure core (src/explain.ts), prints.

import type { Command } from 'commander';
import { readCommittedConnections } from '../agent/node-ops.ts';
import {
  type AuditResult,
  auditCommittedSlots,
  checkTrace,
  formatAudit,
  parseTracedTunnel,
  sampleTuples,
  type TraceCheck,
  traceFlow,
} from '../audit.ts';
import { DATAPATHS, type Datapath, explain, type TupleHash, tupleHash } from '../explain.ts';
import { SluiceError } from '../model/errors.ts';
import { parseIp } from '../model/ip.ts';
import type { Config, Protocol } from '../model/types.ts';
import { localRunner, type Runner } from '../openflow/runner.ts';
import { planNext } from '../rollout/planner.ts';
import type { Generation } from '../rollout/types.ts';
import { publishedState } from '../store/operator.ts';
import { defaultDb, readConfigFile } from './store-commands.ts';

function print(text: string): void {
  process.stdout.write(`${text}\n`);
}

function parsePort(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new SluiceError('SLUICE_E_USAGE', `${name}: expected a port 0..65535, got "${text}"`);
  return n;
}

function parseAddress(name: string, text: string): string {
  if (parseIp(text) === undefined)
    throw new SluiceError('SLUICE_E_USAGE', `${name}: not an IPv4 or IPv6 address: "${text}"`);
  return text;
}

function parseHash(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff)
    throw new SluiceError(
      'SLUICE_E_USAGE',
      `--hash: expected an unsigned 32-bit integer (decimal or 0x..), got "${text}"`,
    );
  return n;
}

function parseDatapath(text: string): Datapath {
  const d = DATAPATHS.find((x) => x === text);
  if (d === undefined)
    throw new SluiceError('SLUICE_E_USAGE', `--datapath: expected ${DATAPATHS.join(', ')}, got "${text}"`);
  return d;
}

export function initialGeneration(config: Config): Generation {
  return planNext({ config, latest: null, connections: () => 0, now: 0 }).next!;
}

/** The config and generation to explain against: a file's first generation, or what the store published. */
async function stateFor(o: {
  file?: string;
  db?: string;
}): Promise<{ config: Config; generation: Generation }> {
  if (o.file !== undefined) {
    const config = readConfigFile(o.file);
    return { config, generation: initialGeneration(config) };
  }
  return publishedState(o.db ?? defaultDb());
}

/**
 * `sluice audit` on one host: reads the connections its ovs-vswitchd committed (`ovs-appctl dpctl/dump-conntrack`,
 * argv only, with a deadline) and compares each one's committed slot with explain's (src/audit.ts).
 */
export async function auditHost(
  runner: Runner,
  config: Config,
  generation: Generation,
  datapath: Datapath,
  appctlArgs: readonly string[] = [],
): Promise<AuditResult> {
  const committed = await readCommittedConnections(runner, appctlArgs);
  return auditCommittedSlots(config, generation, committed, datapath);
}

export interface GatewayAudit {
  readonly checks: readonly TraceCheck[];
  /** What the trace could not check (dp_hash mode: the datapath's hash itself). */
  readonly note: string | undefined;
}

/**
 * `sluice audit --gateway`: traces `sample` client packets through this gateway's br-int (`ovs-appctl ofproto/trace`,
 * argv only, the runner's deadline) and compares the slot and host each is tunnelled to with explain. In `fields`
 * mode OVS computes the hash in the trace; in `dp_hash` mode the trace cannot run the datapath's hash, so explain's
 * dp_hash is handed to it and only the group and slot table are checked.
 */
export async function auditGateway(
  runner: Runner,
  config: Config,
  generation: Generation,
  datapath: Datapath,
  o: { bridge: string; inPort: string; sample: number; appctlArgs?: readonly string[] },
): Promise<GatewayAudit> {
  const checks: TraceCheck[] = [];
  for (const tuple of sampleTuples(config, o.sample)) {
    const h = tupleHash(config.hashMode, tuple, datapath);
    if (!h.known) return { checks, note: h.why };
    const flow = traceFlow(tuple, o.inPort, config.hashMode === 'dp_hash' ? h.hash : undefined);
    const r = await runner.appctl([...(o.appctlArgs ?? []), 'ofproto/trace', o.bridge, flow]);
    checks.push(checkTrace(config, generation, tuple, h.hash, parseTracedTunnel(r.stdout)));
  }
  const note =
    config.hashMode === 'dp_hash'
      ? "dp_hash mode: the trace was given explain's dp_hash, so this checks the gateway's group and slot table, " +
        'not the datapath hash itself (run `sluice audit` on a host for that)'
      : undefined;
  return { checks, note };
}

function formatGatewayAudit(a: GatewayAudit): string {
  const bad = a.checks.filter((c) => !c.ok);
  const lines = [
    `traced ${a.checks.length} sample packets: ${a.checks.length - bad.length} as explain says, ${bad.length} not`,
  ];
  for (const c of bad.slice(0, 10)) {
    const t = c.tuple;
    lines.push(`  DISAGREE ${t.proto} ${t.src}:${t.sport} -> ${t.dst}:${t.dport}: ${c.why}`);
  }
  if (a.note !== undefined) lines.push(`note: ${a.note}`);
  return lines.join('\n');
}

function registerAuditCommand(program: Command): void {
  program
    .command('audit')
    .description(
      "compare the slot of every connection this host committed with explain's slot for its 5-tuple",
    )
    .option('-f, --file <lb.yaml>', 'desired state; without it: the latest generation in the store')
    .option('--db <remotes>', 'OVSDB remotes (default: $SLUICE_DB, else unix:/run/sluice/db.sock)')
    .option('--datapath <kind>', `the gateways' datapath: ${DATAPATHS.join(' | ')}`, 'netdev')
    .option('--appctl-target <path>', "ovs-appctl -t: this host's ovs-vswitchd control socket")
    .option('--netns <name>', "run ovs-appctl in this network namespace (the lab's nodes)")
    .option('--timeout <seconds>', 'deadline of each ovs-appctl call', '10')
    .option('--gateway', 'on a gateway: trace sample packets with ofproto/trace instead', false)
    .option('--bridge <name>', '--gateway: the integration bridge', 'br-int')
    .option('--in-port <port>', '--gateway: the port VIP traffic enters br-int on', 'int-to-phy')
    .option('--sample <n>', '--gateway: how many sample packets to trace', '200')
    .option('--json', 'machine-readable output', false)
    .action(
      async (o: {
        file?: string;
        db?: string;
        datapath: string;
        appctlTarget?: string;
        netns?: string;
        timeout: string;
        json: boolean;
        gateway: boolean;
        bridge: string;
        inPort: string;
        sample: string;
      }) => {
        const seconds = Number(o.timeout);
        if (!(seconds > 0 && seconds <= 3600))
          throw new SluiceError(
            'SLUICE_E_USAGE',
            `--timeout: expected seconds in (0, 3600], got "${o.timeout}"`,
          );
        const datapath = parseDatapath(o.datapath);
        const { config, generation } = await stateFor(o);
        const runner = localRunner({ timeoutMs: seconds * 1000, ...(o.netns ? { netns: o.netns } : {}) });
        const appctlArgs = o.appctlTarget ? ['-t', o.appctlTarget] : [];
        if (o.gateway) {
          const sample = Number(o.sample);
          if (!Number.isInteger(sample) || sample < 1 || sample > 100_000)
            throw new SluiceError('SLUICE_E_USAGE', `--sample: expected 1..100000, got "${o.sample}"`);
          const a = await auditGateway(runner, config, generation, datapath, {
            bridge: o.bridge,
            inPort: o.inPort,
            sample,
            appctlArgs,
          });
          print(o.json ? JSON.stringify(a, null, 2) : formatGatewayAudit(a));
          if (a.checks.length === 0 || a.checks.some((c) => !c.ok)) process.exitCode = 1;
          return;
        }
        const r = await auditHost(
          runner,
          config,
          generation,
          datapath,
          o.appctlTarget ? ['-t', o.appctlTarget] : [],
        );
        if (o.json) {
          print(JSON.stringify({ ...r, skipReasons: Object.fromEntries(r.skipReasons) }, null, 2));
        } else {
          print(formatAudit(r));
        }
        if (r.unknowable !== undefined || r.disagree.length > 0) process.exitCode = 1;
      },
    );
}

export function registerExplainCommand(program: Command): void {
  registerAuditCommand(program);
  program
    .command('explain')
    .description('which hash, slot, backend, second chance and host a packet with this 5-tuple takes')
    .option(
      '-f, --file <lb.yaml>',
      'desired state (YAML or JSON); without it: the latest generation in the store',
    )
    .option('--db <remotes>', 'OVSDB remotes (default: $SLUICE_DB, else unix:/run/sluice/db.sock)')
    .option('--format <format>', 'text | json (json = --json)', 'text')
    .argument('<proto>', 'tcp or udp')
    .argument('<src>', 'client address')
    .argument('<sport>', 'client port')
    .argument('<dst>', 'VIP')
    .argument('<dport>', 'VIP port')
    .option(
      '--hash <value>',
      "the data-plane hash (default: computed from the 5-tuple as the gateway's OVS does)",
    )
    .option('--datapath <kind>', `the gateways' datapath: ${DATAPATHS.join(' | ')}`, 'netdev')
    .option('--json', 'machine-readable output', false)
    .action(
      async (
        proto: string,
        src: string,
        sport: string,
        dst: string,
        dport: string,
        o: { file?: string; db?: string; format: string; hash?: string; datapath: string; json: boolean },
      ) => {
        if (proto !== 'tcp' && proto !== 'udp')
          throw new SluiceError('SLUICE_E_USAGE', `<proto>: expected tcp or udp, got "${proto}"`);
        const tuple = {
          proto: proto as Protocol,
          src: parseAddress('<src>', src),
          sport: parsePort('<sport>', sport),
          dst: parseAddress('<dst>', dst),
          dport: parsePort('<dport>', dport),
        };
        const { config, generation } = await stateFor(o);
        const datapath = parseDatapath(o.datapath);
        const computed: TupleHash =
          o.hash === undefined
            ? tupleHash(config.hashMode, tuple, datapath)
            : { known: true, hash: parseHash(o.hash), how: 'given with --hash' };
        if (!computed.known) {
          print(
            `hash of this packet cannot be known in hashMode ${config.hashMode}: ${computed.why}` +
              (config.hashMode === 'dp_hash' ? ': use hashMode fields, or pass --hash' : ''),
          );
          process.exitCode = 1;
          return;
        }
        const result = explain(config, generation, tuple, computed.hash);
        if (o.json || o.format === 'json') {
          print(JSON.stringify(result.found ? { ...result, hashHow: computed.how } : result, null, 2));
        } else if (!result.found) {
          print(result.reason);
          process.exitCode = 1;
        } else {
          print(
            [
              `load balancer  ${result.lb} (generation ${result.generation}, k=${result.bits})`,
              `hash           0x${result.hash.toString(16).padStart(8, '0')} (${computed.how}) -> slot ${result.slot} (${result.phase})`,
              `primary        ${result.primary?.key ?? '(none: dropped)'}`,
              `second chance  ${result.second?.key ?? '(none)'}`,
              `chain          ${result.chain.length === 0 ? '(none)' : result.chain.map((m) => m.key).join(' -> ')}`,
              `host           ${result.host ?? '-'}${result.hostTunnelIp ? ` (tunnel ${result.hostTunnelIp})` : ''}`,
              `why            ${result.reason}`,
            ].join('\n'),
          );
        }
      },
    );
}
