// `sluice lab up|down|status`: registered on the main program by src/cli/main.ts (registerLabCommands(program)).

import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { SluiceError } from '../model/errors.ts';
import { decodeConfigText } from '../model/load.ts';
import { terminalProgress } from '../progress.ts';
import { formatStatus, type StatusReport } from '../store/operator.ts';
import {
  DEFAULT_PREFIX,
  DEFAULT_RUN_ROOT,
  type LabConfig,
  type LabConfigInput,
  parseLabConfigFile,
  resolveLabConfig,
} from './config.ts';
import {
  type ControlPlaneProcess,
  controlPlaneDir,
  controlPlaneProcesses,
  controlPlaneStore,
  startControlPlane,
} from './control-plane.ts';
import { type LabStatus, labDown, labStatus, labUp } from './topology.ts';

function int(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n))
      throw new SluiceError('SLUICE_E_USAGE', `--${name} must be an integer, got ${v}`);
    return n;
  };
}

/** Human-readable status (the `--json` flag prints the LabStatus object instead). */
export function formatLabStatus(s: LabStatus): string {
  if (!s.exists) return `no lab with prefix ${s.prefix}`;
  const lines = [`lab ${s.prefix}: ${s.state ?? 'unknown (no lab.json)'}`];
  lines.push(`namespaces (${s.namespaces.length}): ${s.namespaces.join(' ')}`);
  if (s.nodes.length > 0) {
    lines.push('nodes:');
    for (const n of s.nodes) {
      lines.push(
        `  ${n.name.padEnd(8)} ${n.role.padEnd(8)} ovsdb-server ${n.ovsdbAlive ? 'up' : 'DOWN'}, ` +
          `ovs-vswitchd ${n.vswitchdAlive ? 'up' : 'DOWN'}${n.ovsVersion ? ` (${n.ovsVersion})` : ''}` +
          `${n.datapath ? `; datapath ${n.datapath}` : ''}`,
      );
    }
  }
  const others = s.processes.filter(
    (p) => p.program !== 'ovsdb-server' && p.program !== 'ovs-vswitchd' && !p.pidFile.includes('/cp/'),
  );
  if (others.length > 0) {
    const alive = others.filter((p) => p.alive).length;
    lines.push(`other processes: ${alive}/${others.length} alive`);
    for (const p of others.filter((x) => !x.alive)) lines.push(`  not running: ${p.pidFile}`);
  }
  if (s.vips.length > 0) {
    lines.push('VIPs:');
    for (const v of s.vips)
      lines.push(`  ${v.name} ${v.vip} ${v.protocol}/${v.port} -> ${v.backends.join(', ')}`);
  }
  const ecmp = Object.entries(s.ecmp);
  if (ecmp.length > 0) {
    lines.push('ECMP next hops (router):');
    for (const [vip, gws] of ecmp)
      lines.push(`  ${vip} -> ${gws.length > 0 ? gws.join(', ') : '(none: unreachable)'}`);
  }
  if (s.routing !== undefined) lines.push(`routing: ${s.routing}`);
  for (const [gw, r] of Object.entries(s.sessions))
    lines.push(`  ${gw.padEnd(8)} BGP ${r.bgp}, BFD ${r.bfd}`);
  return lines.join('\n');
}

/** The lab's control plane: its processes and (when the store answers) what every node applied. */
export interface LabControlPlaneStatus {
  readonly db: string;
  readonly processes: readonly ControlPlaneProcess[];
  readonly store: StatusReport | undefined;
  readonly storeError: string | undefined;
}

export async function labControlPlaneStatus(runDir: string): Promise<LabControlPlaneStatus | undefined> {
  const processes = controlPlaneProcesses(runDir);
  if (processes.length === 0) return undefined;
  const db = `unix:${controlPlaneDir(runDir)}/store.sock`;
  try {
    return { db, processes, store: await controlPlaneStore(db), storeError: undefined };
  } catch (e) {
    return { db, processes, store: undefined, storeError: (e as Error).message.split('\n')[0] };
  }
}

export function formatControlPlaneStatus(c: LabControlPlaneStatus | undefined): string {
  if (c === undefined) return 'control plane: none (data plane only)';
  const lines = [`control plane (--db ${c.db}):`];
  for (const p of c.processes)
    lines.push(`  ${p.name.padEnd(12)} ${p.alive ? `up (pid ${p.pid})` : 'NOT RUNNING'}  log ${p.logFile}`);
  if (c.store)
    lines.push(
      ...formatStatus(c.store)
        .split('\n')
        .map((l) => (l === '' ? l : `  ${l}`)),
    );
  else lines.push(`  store: ${c.storeError}`);
  return lines.join('\n');
}

/** Flags of `lab up` that are also lab config file fields (commander option name = file field name). */
const FILE_FLAGS = [
  'prefix',
  'gateways',
  'hosts',
  'backendsPerHost',
  'clients',
  'ipv6',
  'routing',
  'gatewayDatapath',
] as const;

/**
 * The lab config of `lab up`: the file (`--config`, YAML or JSON) when given, with the flags the user typed
 * overriding it (commander's value source `cli`); flag defaults apply only where the file says nothing. Throws
 * before anything is built: SLUICE_E_IO (unreadable), SLUICE_E_CONFIG_PARSE (syntax), SLUICE_E_CONFIG_INVALID (every
 * problem with its path) or SLUICE_E_USAGE (bad flags without a file).
 */
export function labUpConfig(
  cmd: Pick<Command, 'getOptionValueSource'>,
  o: Record<string, unknown> & { config?: string; runRoot: string },
): LabConfig {
  if (o.config === undefined) {
    const input: Record<string, unknown> = { runRoot: o.runRoot };
    for (const k of FILE_FLAGS) input[k] = o[k];
    return resolveLabConfig(input as LabConfigInput);
  }
  let text: string;
  try {
    text = readFileSync(o.config, 'utf8');
  } catch (e) {
    throw new SluiceError('SLUICE_E_IO', `cannot read ${o.config}: ${(e as Error).message}`);
  }
  const overrides: Record<string, unknown> = { runRoot: o.runRoot };
  for (const k of FILE_FLAGS) if (cmd.getOptionValueSource(k) === 'cli') overrides[k] = o[k];
  const doc = decodeConfigText(text, o.config);
  // `lab up` routes with BGP unless the flag or the file says otherwise (the library's default stays static).
  const fileRouting = typeof doc === 'object' && doc !== null && 'routing' in doc;
  if (!fileRouting && o.routing !== undefined) overrides.routing = o.routing;
  return parseLabConfigFile(doc, o.config, overrides as LabConfigInput);
}

export function registerLabCommands(program: Command): void {
  const lab = program
    .command('lab')
    .description(
      'the one-machine lab: namespaces, an ECMP router, gateways and hosts with their own OVS (root)',
    );
  labUpCommand(lab);
  labDownCommand(lab);
  labStatusCommand(lab);
}

type LabUpOptions = {
  config?: string;
  prefix: string;
  gateways: number;
  hosts: number;
  backendsPerHost: number;
  clients: number;
  ipv6: boolean;
  gatewayDatapath: string;
  replace: boolean;
  runRoot: string;
  controlPlane: boolean;
  planners: number;
  json: boolean;
};

/** `sluice lab up`: its options; the work is runLabUp. */
function labUpCommand(lab: Command): void {
  lab
    .command('up')
    .description('build the lab (installs missing Debian packages first)')
    .option(
      '-f, --config <file>',
      'lab config file (YAML or JSON: sizes and VIPs; flags given explicitly override it)',
    )
    .option('--prefix <prefix>', 'namespace prefix', DEFAULT_PREFIX)
    .option('--gateways <n>', 'gateway nodes', int('gateways'), 2)
    .option('--hosts <n>', 'host nodes', int('hosts'), 3)
    .option('--backends-per-host <n>', 'backends on each host', int('backends-per-host'), 2)
    .option('--clients <n>', 'client namespaces', int('clients'), 2)
    .option('--ipv6', 'add the IPv6 VIP 2001:db8::10', false)
    .option(
      '--routing <mode>',
      'bgp (BIRD on the router and every gateway, BFD; the agents announce) or static (a script edits the ECMP routes)',
      'bgp',
    )
    .option(
      '--gateway-datapath <kind>',
      'ovs, xdp (every gateway runs the XDP program on its uplink) or mixed (gw1 ovs, gw2 xdp, ...)',
      'ovs',
    )
    .option('--replace', 'tear down an existing lab with the same prefix first', false)
    .option('--run-root <dir>', 'parent of the lab run directory', DEFAULT_RUN_ROOT)
    .option('--no-control-plane', 'build only the data plane (no store, planners or agents)')
    .option('--planners <n>', 'planner processes (one active, the others standby)', int('planners'), 2)
    .option('--json', 'print the lab facts as JSON', false)
    .action(runLabUp);
}

/** Builds the lab (and its control plane unless --no-control-plane) and prints what it made. */
async function runLabUp(o: LabUpOptions, cmd: Command): Promise<void> {
  const input = labUpConfig(cmd, o);
  // On a terminal one progress line says what is being done and how far along; log lines print above it.
  const labProgress = o.json ? undefined : terminalProgress('lab up', 5);
  let current = labProgress;
  const log = o.json
    ? undefined
    : (m: string) => {
        current?.clear();
        process.stderr.write(`lab: ${m}\n`);
      };
  let l: Awaited<ReturnType<typeof labUp>>;
  try {
    l = await labUp(input, { replace: o.replace, log, progress: labProgress });
  } finally {
    labProgress?.end();
  }
  let db: string | undefined;
  let page: string | undefined;
  // Without agents nobody announces over BGP: the lab does it for every gateway (static routes start like that too).
  if (!o.controlPlane && l.routing === 'bgp') await l.setEcmpGateways(l.gateways.map((g) => g.name));
  if (o.controlPlane) {
    const cpProgress = o.json ? undefined : terminalProgress('control plane', 4);
    current = cpProgress;
    try {
      const cp = await startControlPlane(l, { planners: o.planners, log, progress: cpProgress });
      db = cp.db;
      // The active planner's HTTP endpoint serves the status page (its log says where).
      const address = cp
        .records(cp.activePlanner() ?? 'planner-a')
        .filter((r) => r.event === 'metrics')
        .at(-1)?.address;
      page = typeof address === 'string' ? `http://${address}/` : undefined;
    } catch (e) {
      await labDown(l.prefix, { runRoot: o.runRoot }).catch(() => {});
      throw e;
    } finally {
      cpProgress?.end();
    }
  }
  if (o.json) {
    process.stdout.write(`${JSON.stringify({ ...l.facts, db }, null, 2)}\n`);
    return;
  }
  process.stdout.write(`${labUpSummary(l, o.planners, db, page).join('\n')}\n`);
}

/** What `lab up` prints: nodes, VIPs, clients and how to reach the control plane (`db` undefined: none). */
function labUpSummary(
  l: Awaited<ReturnType<typeof labUp>>,
  planners: number,
  db: string | undefined,
  page: string | undefined,
): string[] {
  const out = [`lab ${l.prefix} up in ${l.facts.upMs} ms (run dir ${l.facts.runDir})`];
  for (const n of l.nodes) {
    out.push(
      `  ${n.name.padEnd(7)} ${n.role.padEnd(7)} ns ${n.netns.padEnd(14)} tunnel ${n.tunnelIp.padEnd(15)} ` +
        `br-phy ${n.brPhyMac}  ports eth0=${n.ports.eth0} phy-to-int=${n.ports.phyToInt} ` +
        `int-to-phy=${n.ports.intToPhy} geneve0=${n.ports.geneve}` +
        (n.backends.length > 0 ? ` ${n.backends.map((b) => `${b.vmPort}=${b.ofport}`).join(' ')}` : ''),
    );
  }
  for (const v of l.config.vips) {
    out.push(`  VIP ${v.name} ${v.vip} ${v.protocol}/${v.port} -> ${v.backends.join(', ')}`);
  }
  out.push(`  clients: ${l.clients.map((c) => `${c.netns} (${c.ip})`).join(', ')}`);
  if (db !== undefined) {
    out.push(
      `  control plane: store + ${planners} planner(s) + ${l.nodes.length} agents; every node applied the lab's config`,
      `  store: --db ${db}   e.g. sluice status --db ${db}`,
      `                      sluice rollout status --watch --db ${db}`,
      `                      sluice backend drain ${l.config.vips[0]?.name ?? 'web'} ` +
        `${l.backend(l.config.vips[0]?.backends[0] ?? 'host1-b1').ip} --db ${db}`,
    );
    if (page !== undefined) out.push(`  status page: ${page} (the active planner's; read-only)`);
  } else {
    out.push(
      '  no control plane (--no-control-plane): no load-balancing flows; program the nodes yourself (LabController)',
    );
  }
  return out;
}

/** A `sluice lab` subcommand about a lab that exists: it is found by --prefix under --run-root. */
function namedLabCommand(lab: Command, name: string, description: string): Command {
  return lab
    .command(name)
    .description(description)
    .option('--prefix <prefix>', 'namespace prefix', DEFAULT_PREFIX)
    .option('--run-root <dir>', 'parent of the lab run directory', DEFAULT_RUN_ROOT);
}

/** `sluice lab down`. */
function labDownCommand(lab: Command): void {
  namedLabCommand(
    lab,
    'down',
    'remove everything the lab made (its processes by pid file, its namespaces); also after a crash',
  ).action(async (o: { prefix: string; runRoot: string }) => {
    const r = await labDown(o.prefix, { runRoot: o.runRoot });
    process.stdout.write(
      `lab ${o.prefix} down in ${r.ms} ms: ${r.killed.length} processes stopped, ${r.namespaces.length} namespaces deleted\n`,
    );
  });
}

/** `sluice lab status`. */
function labStatusCommand(lab: Command): void {
  namedLabCommand(
    lab,
    'status',
    'namespaces, node processes, OVS versions, the router ECMP set, the control-plane processes and what each node applied',
  )
    .option('--json', 'print JSON', false)
    .action(async (o: { prefix: string; runRoot: string; json: boolean }) => {
      const s = await labStatus(o.prefix, { runRoot: o.runRoot });
      const cp = s.exists ? await labControlPlaneStatus(`${o.runRoot}/${o.prefix}`) : undefined;
      process.stdout.write(
        o.json
          ? `${JSON.stringify({ ...s, controlPlane: cp }, null, 2)}\n`
          : `${formatLabStatus(s)}${s.exists ? `\n${formatControlPlaneStatus(cp)}` : ''}\n`,
      );
      if (!s.exists) process.exitCode = 1;
    });
}
