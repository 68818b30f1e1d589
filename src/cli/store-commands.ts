// The operator CLI against the store, in the style of ovn-nbctl and kubectl: `lb`, `backend`, `node`, `apply`,
// `status`, `show` (and `explain` without -f, from main.ts). Every edit reads the desired state, changes the
// config document, validates the would-be config with parseConfig and only then writes it with desiredStateOps
// (a transaction guarded by a wait on Global.desired_cfg): a bad edit changes nothing and prints every problem with
// its path; a concurrent writer makes the guard fail, and the edit is redone on the fresh state (a few times).
// `status` reads only what agents reported (Node_Status, Backend_Status), never what was asked.
// Reference: docs/cli.md.

import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { Document, type Node as YamlNode } from 'yaml';
import { type ErrorCode, SluiceError } from '../model/errors.ts';
import { parseConfigText } from '../model/load.ts';
import { backendKey, type Config, healthCheckOf, healthCheckText } from '../model/types.ts';
import { isOvsdbErrorCode } from '../ovsdb/errors.ts';
import { planRolloutDetailed } from '../rollout/planner.ts';
import { formatRollout, summarizeRollout } from '../rollout/summary.ts';
import { configWarnings, formatWarnings } from '../rollout/warnings.ts';
import {
  type ConfigDocument,
  configDocument,
  countChanges,
  diffConfigs,
  formatChanges,
} from '../store/config-diff.ts';
import {
  DB_NAME,
  DESIRED_STATE_MONITOR,
  PLAN_HEAD_MONITOR,
  publishedGeneration,
  STATUS_DB_NAME,
} from '../store/db/index.ts';
import {
  accessControlOps,
  ackDeniedHint,
  DEFAULT_INACTIVITY_PROBE_MS,
  heartbeatAckDenied,
  ROLES_MONITOR,
  type StoreRemote,
  type StoreRole,
  statusAccessOps,
} from '../store/db/rbac.ts';
import {
  type BackendReport,
  backendReports,
  confirmFenced,
  type EditableDocument,
  editDesiredState,
  editLoadBalancer,
  edits,
  FENCE_MONITOR,
  formatStatus,
  parseInteger,
  parsePorts,
  STATUS_MONITOR,
  statusReport,
  storedConfig,
  tableOr,
  withStore,
} from '../store/operator.ts';
import { tlsFiles, tlsOptions } from './daemons.ts';

export const DEFAULT_DB = 'unix:/run/sluice/db.sock';

/** `--db` default: $SLUICE_DB, else the embedded default socket. */
export function defaultDb(): string {
  const env = process.env.SLUICE_DB;
  return env !== undefined && env.trim() !== '' ? env : DEFAULT_DB;
}

export type OutputFormat = 'text' | 'json';

/** Exit code for a failure: 1 for runtime and store failures, 2 for invalid input or usage. */
export function exitCodeFor(code: ErrorCode): 1 | 2 {
  return code === 'SLUICE_E_IO' || code === 'SLUICE_E_STORE_CONFLICT' || isOvsdbErrorCode(code) ? 1 : 2;
}

// ---------------------------------------------------------------------------------------------------------
// Commands

interface Output {
  readonly json: unknown;
  readonly text: string;
}

interface Ctx {
  readonly db: string;
  readonly format: OutputFormat;
}

function print(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

/** Prints a failure (stderr; and a JSON object on stdout with --format json) and sets the exit code. */
export function reportFailure(e: unknown, format: OutputFormat): void {
  if (e instanceof SluiceError) {
    if (format === 'json')
      print(JSON.stringify({ error: { code: e.code, message: e.message, issues: e.issues } }, null, 2));
    const [first, ...rest] = e.message.split('\n');
    process.stderr.write(`sluice: ${first} [${e.code}]\n${rest.map((l) => `${l}\n`).join('')}`);
    process.exitCode = exitCodeFor(e.code);
    return;
  }
  if (format === 'json') print(JSON.stringify({ error: { message: String(e) } }));
  process.exitCode = reportInternal(e);
}

/**
 * A failure that is not a SluiceError (a bug, or a limit of the runtime such as a RangeError): one line on stderr,
 * exit 1. The stack trace only with SLUICE_DEBUG=1: it means nothing to an operator and leaks paths.
 */
export function reportInternal(e: unknown): 1 {
  const err = e instanceof Error ? e : new Error(String(e));
  process.stderr.write(
    `sluice: internal error: ${err.name}: ${err.message.split('\n')[0]} [SLUICE_E_INTERNAL]\n`,
  );
  if (process.env.SLUICE_DEBUG === '1') process.stderr.write(`${err.stack ?? ''}\n`);
  return 1;
}

function storeOptions(cmd: Command): Command {
  return tlsOptions(cmd)
    .option(
      '--db <remotes>',
      'OVSDB remotes, comma separated (default: $SLUICE_DB, else unix:/run/sluice/db.sock)',
    )
    .option('--format <format>', 'text | json', 'text');
}

/** Wraps an action: parses --db/--format, prints the output in the chosen format, reports failures. */
function action(
  fn: (ctx: Ctx, args: string[], opts: Record<string, string | boolean | undefined>) => Promise<Output>,
) {
  return async (...all: unknown[]) => {
    const cmd = all[all.length - 1] as Command;
    const opts = cmd.opts() as Record<string, string | boolean | undefined>;
    const args = all.slice(0, -2) as string[];
    const format = (opts.format as string | undefined) ?? 'text';
    try {
      if (format !== 'text' && format !== 'json')
        throw new SluiceError('SLUICE_E_USAGE', `--format: expected text or json, got "${format}"`);
      // One command per process: the TLS flags become the SLUICE_SSL_* variables every store session reads.
      const tls = tlsFiles(opts as { privateKey?: string; certificate?: string; caCert?: string });
      if (tls !== undefined)
        Object.assign(process.env, {
          SLUICE_SSL_PRIVATE_KEY: tls.privateKey,
          SLUICE_SSL_CERTIFICATE: tls.certificate,
          SLUICE_SSL_CA_CERT: tls.caCert,
        });
      const out = await fn({ db: (opts.db as string | undefined) ?? defaultDb(), format }, args, opts);
      print(format === 'json' ? JSON.stringify(out.json, null, 2) : out.text);
    } catch (e) {
      reportFailure(e, format === 'json' ? 'json' : 'text');
    }
  };
}

/** An edit command. `oneLb`: it changes only the load balancer named by its first argument (the backend commands),
 *  so it reads and writes only that one (editLoadBalancer) instead of the whole desired state. */
function editCommand(
  what: string,
  edit: (
    args: string[],
    opts: Record<string, string | boolean | undefined>,
  ) => (doc: EditableDocument) => EditableDocument,
  oneLb = false,
) {
  return action(async (ctx, args, opts) => {
    const fn = edit(args, opts); // usage errors before connecting
    const r = oneLb
      ? await editLoadBalancer(ctx.db, args[0]!, fn)
      : await withStore(ctx.db, DESIRED_STATE_MONITOR, (s) => editDesiredState(s, fn));
    return {
      json: {
        ok: true,
        command: what,
        changed: r.changed,
        desiredCfg: r.desiredCfg,
        attempts: r.attempts,
        changes: r.changes,
      },
      text: r.changed
        ? `${formatChanges(r.changes)}\ndesired_cfg ${r.desiredCfg}${r.attempts > 1 ? ` (after ${r.attempts - 1} concurrent change(s))` : ''}`
        : `no change (desired_cfg ${r.desiredCfg})`,
    };
  });
}

/** Reads and validates a config file (YAML or JSON); SLUICE_E_IO if it cannot be read. */
export function readConfigFile(file: string): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new SluiceError('SLUICE_E_IO', `cannot read ${file}: ${(e as Error).message}`);
  }
  return parseConfigText(text, file);
}

/** The operator's commands against the store: lb, backend, node, apply, show, status (one function each). */
export function registerStoreCommands(program: Command): void {
  const lb = program.command('lb').description('load balancers (VIPs) in the desired state');
  lbAddCommand(lb);
  lbDelCommand(lb);
  lbListCommand(lb);
  const backend = program.command('backend').description('backends of a load balancer');
  backendAddCommand(backend);
  backendDelCommand(backend);
  backendStateCommand(
    backend,
    'drain',
    'drain a backend: it gives up its slots, its connections continue through second chance',
    'draining',
  );
  backendStateCommand(backend, 'undrain', 'make a drained (or down) backend active again', 'active');
  const node = program.command('node').description('gateway and host nodes in the desired state');
  nodeAddCommand(node);
  nodeDelCommand(node);
  nodeConfirmFencedCommand(node);
  nodeListCommand(node);
  applyCommand(program);
  showCommand(program);
  statusCommand(program);
  storeAccessCommand(program);
}

/** `sluice lb add`. */
function lbAddCommand(lb: Command): void {
  storeOptions(
    lb
      .command('add')
      .description('add a load balancer (no backends yet)')
      .argument('<name>')
      .argument('<vip>', 'IPv4 or IPv6 address')
      .requiredOption('--port <ports>', 'port or comma-separated ports, e.g. 80,443')
      .option('--protocol <protocol>', 'tcp | udp', 'tcp'),
  ).action(
    editCommand('lb add', ([name, vip], o) =>
      edits.lbAdd(name!, vip!, parsePorts(o.port as string), o.protocol as string),
    ),
  );
}

/** `sluice lb del`. */
function lbDelCommand(lb: Command): void {
  storeOptions(
    lb.command('del').description('delete a load balancer and its backends').argument('<name>'),
  ).action(editCommand('lb del', ([name]) => edits.lbDel(name!)));
}

/** `sluice lb list`. */
function lbListCommand(lb: Command): void {
  listCommand(lb, 'list load balancers', {
    rows: (config) =>
      config.loadBalancers.map((l) => ({
        name: l.name,
        vip: l.vip,
        protocol: l.protocol,
        ports: [...l.ports],
        backends: l.backends.length,
        active: l.backends.filter((b) => b.state === 'active').length,
      })),
    none: 'no load balancers',
    header: ['NAME', 'VIP', 'PROTOCOL', 'PORTS', 'BACKENDS'],
    cells: (r) => [r.name, r.vip, r.protocol, r.ports.join(','), `${r.backends} (${r.active} active)`],
  });
}

/** `sluice backend add`. */
function backendAddCommand(backend: Command): void {
  storeOptions(
    backend
      .command('add')
      .description('add a backend to a load balancer (state active)')
      .argument('<lb>')
      .argument('<address>')
      .requiredOption('--host <node>', 'the host node it runs on')
      .option('--port <port>', 'target port (default: the port the client dialled)')
      .option('--weight <weight>', 'relative share of the slots, 1..1000', '1'),
  ).action(
    editCommand(
      'backend add',
      ([lbName, address], o) =>
        edits.backendAdd(
          lbName!,
          address!,
          o.host as string,
          o.port === undefined ? undefined : parseInteger('--port', o.port as string),
          parseInteger('--weight', o.weight as string),
        ),
      true,
    ),
  );
}

/** `sluice backend del`. */
function backendDelCommand(backend: Command): void {
  storeOptions(
    backend.command('del').description('remove a backend').argument('<lb>').argument('<address[:port]>'),
  ).action(editCommand('backend del', ([lbName, ref]) => edits.backendDel(lbName!, ref!), true));
}

/** `sluice backend drain` and `sluice backend undrain`: set a backend's admin state. */
function backendStateCommand(
  backend: Command,
  name: 'drain' | 'undrain',
  description: string,
  state: 'draining' | 'active',
): void {
  storeOptions(
    backend.command(name).description(description).argument('<lb>').argument('<address[:port]>'),
  ).action(editCommand(`backend ${name}`, ([lbName, ref]) => edits.backendState(lbName!, ref!, state), true));
}

/** `sluice node add`. */
function nodeAddCommand(node: Command): void {
  storeOptions(
    node
      .command('add')
      .description('add a node')
      .argument('<name>')
      .requiredOption('--role <role>', 'gateway | host')
      .requiredOption('--tunnel-ip <ip>', "the node's Geneve tunnel endpoint (IPv4)"),
  ).action(
    editCommand('node add', ([name], o) => edits.nodeAdd(name!, o.role as string, o.tunnelIp as string)),
  );
}

/** `sluice node del`. */
function nodeDelCommand(node: Command): void {
  storeOptions(node.command('del').description('delete a node').argument('<name>')).action(
    editCommand('node del', ([name]) => edits.nodeDel(name!)),
  );
}

/** `sluice node confirm-fenced`. */
function nodeConfirmFencedCommand(node: Command): void {
  storeOptions(
    node
      .command('confirm-fenced')
      .description(
        'confirm that a gateway is out of the upstream ECMP set (taken out by hand when the fence command cannot): the planner stops waiting for it',
      )
      .argument('<name>'),
  ).action(
    action(async (ctx, [name]) => {
      const r = await withStore(ctx.db, FENCE_MONITOR, (s) => confirmFenced(s, name!));
      return {
        json: { ok: true, command: 'node confirm-fenced', node: r.node, already: r.already },
        text: r.already
          ? `${r.node}: already confirmed fenced`
          : `${r.node}: confirmed fenced by the operator; the planner no longer waits for it (its agent rejoins when it comes back)`,
      };
    }),
  );
}

/** `sluice node list`. */
function nodeListCommand(node: Command): void {
  listCommand(node, 'list nodes', {
    rows: (config) =>
      config.nodes.map((n) => ({
        name: n.name,
        role: n.role,
        tunnelIp: n.tunnelIp,
        backends: config.loadBalancers.reduce(
          (a, l) => a + l.backends.filter((b) => b.host === n.name).length,
          0,
        ),
      })),
    none: 'no nodes',
    header: ['NAME', 'ROLE', 'TUNNEL IP', 'BACKENDS'],
    cells: (r) => [r.name, r.role, r.tunnelIp, String(r.backends)],
  });
}

/** A `list` subcommand: rows of the stored config, printed as JSON, or as a table (`none` when there are none). */
function listCommand<R>(
  parent: Command,
  description: string,
  list: { rows: (config: Config) => R[]; none: string; header: string[]; cells: (row: R) => string[] },
): void {
  storeOptions(parent.command('list').description(description)).action(
    action(async (ctx) =>
      withStore(ctx.db, DESIRED_STATE_MONITOR, async (s) => {
        const rows = list.rows(storedConfig(s.replica).config);
        return { json: rows, text: tableOr(list.none, list.header, rows.map(list.cells)) };
      }),
    ),
  );
}

/** `sluice apply`. */
function applyCommand(program: Command): void {
  storeOptions(
    program
      .command('apply')
      .description('make the desired state in the store equal to a config file (declarative)')
      .requiredOption('-f, --file <lb.yaml>', 'desired state (YAML or JSON)')
      .option('--dry-run', 'print the diff and the generations it would roll out in; write nothing', false),
  ).action(
    action(async (ctx, _args, o) => {
      const want = readConfigFile(o.file as string);
      const warnings = configWarnings(want);
      process.stderr.write(formatWarnings(warnings));
      return withStore(ctx.db, { ...DESIRED_STATE_MONITOR, ...PLAN_HEAD_MONITOR }, async (s) => {
        if (o.dryRun === true) {
          const { desiredCfg, config: current } = storedConfig(s.replica);
          const changes = diffConfigs(current, want);
          const published = publishedGeneration(s.replica);
          const plan = planRolloutDetailed(current, want);
          const more = plan.generations.length - 1;
          return {
            json: {
              dryRun: true,
              desiredCfg,
              changes,
              counts: countChanges(changes),
              publishedGeneration: published,
              generations: summarizeRollout(plan.generations),
              notes: plan.notes,
              warnings,
            },
            text: [
              formatChanges(changes),
              '',
              `rollout: generation 1 below is the current desired state (published now: generation ${published});` +
                ` this change rolls out in ${more} more generation(s), each published after every live gateway acknowledged the previous one`,
              formatRollout(want, plan.generations),
              '(dry run: nothing written)',
            ].join('\n'),
          };
        }
        const r = await editDesiredState(s, () => structuredClone(configDocument(want)));
        return {
          json: {
            ok: true,
            command: 'apply',
            changed: r.changed,
            desiredCfg: r.desiredCfg,
            attempts: r.attempts,
            changes: r.changes,
            counts: countChanges(r.changes),
            warnings,
          },
          text: r.changed
            ? `${formatChanges(r.changes)}\ndesired_cfg ${r.desiredCfg}`
            : `no change (desired_cfg ${r.desiredCfg})`,
        };
      });
    }),
  );
}

/**
 * `sluice show`'s YAML: the desired state, with each load balancer's health check and each backend's health (as its
 * host last reported it) as comments, so that the output still applies as is.
 */
export function showYaml(
  config: Config,
  doc: ConfigDocument,
  reports: readonly BackendReport[],
  desiredCfg: number,
): string {
  const y = new Document(doc);
  const at = (...path: number[]) =>
    y.getIn(
      path.flatMap((i, k) => [k === 0 ? 'loadBalancers' : 'backends', i]),
      true,
    );
  const byBackend = new Map<string, BackendReport>();
  for (const r of reports)
    if (!byBackend.has(`${r.lb} ${r.backend}`)) byBackend.set(`${r.lb} ${r.backend}`, r);
  config.loadBalancers.forEach((lb, i) => {
    const own = lb.healthCheck === undefined ? ` (the default for ${lb.protocol})` : '';
    (at(i) as YamlNode).commentBefore = ` health check: ${healthCheckText(healthCheckOf(lb))}${own}`;
    lb.backends.forEach((b, j) => {
      const rep = byBackend.get(`${lb.name} ${backendKey(b)}`);
      if (rep === undefined) return;
      const conns = rep.connections === null ? 'not reported' : `${rep.connections} connections`;
      (at(i, j) as YamlNode).commentBefore =
        ` health ${rep.health}, last probe ${rep.lastProbe ?? '-'}, ${conns}`;
    });
  });
  return `# sluice desired state, desired_cfg ${desiredCfg}\n${y.toString({ flowCollectionPadding: true })}`;
}

/** `sluice show`. */
function showCommand(program: Command): void {
  storeOptions(
    program
      .command('show')
      .description(
        'the desired state as YAML (feeds back into `sluice apply -f`), backend health as comments',
      ),
  ).action(
    action(async (ctx) =>
      withStore(ctx.db, { ...DESIRED_STATE_MONITOR, Backend_Status: {} }, async (s) => {
        const { desiredCfg, config } = storedConfig(s.replica);
        const doc = configDocument(config);
        return { json: doc, text: showYaml(config, doc, backendReports(s.replica, config), desiredCfg) };
      }),
    ),
  );
}

/** `sluice status`. */
function statusCommand(program: Command): void {
  storeOptions(
    program
      .command('status')
      .description('what every node applied (generation, lag, heartbeat), backend health and connections'),
  ).action(
    action(async (ctx) =>
      withStore(ctx.db, STATUS_MONITOR, async (s) => {
        // Sluice_Status's roles: an upgrade that skipped `sluice store access` shows here, not only in agents' logs.
        const denied = heartbeatAckDenied((await s.client.monitor(STATUS_DB_NAME, ROLES_MONITOR)).replica);
        const report = {
          ...statusReport(s.replica),
          ...(denied.length === 0 ? {} : { rolesWarning: ackDeniedHint(denied) }),
        };
        return { json: report, text: formatStatus(report) };
      }),
    ),
  );
}

/** The `--<role>-remote` option of `sluice store access` for each RBAC role. */
const ACCESS_OPTIONS: ReadonlyArray<readonly [StoreRole, string]> = [
  ['sluice-agent', 'agentRemote'],
  ['sluice-planner', 'plannerRemote'],
  ['sluice-operator', 'operatorRemote'],
];

/** The TLS remotes `sluice store access` writes: each `pssl:` target with the role of its clients. */
export function accessRemotes(opts: Record<string, string | boolean | undefined>): StoreRemote[] {
  const remotes = ACCESS_OPTIONS.flatMap(([role, key]) => {
    const value = opts[key];
    if (typeof value !== 'string') return [];
    return value.split(',').map((target) => {
      if (!/^pssl:\d{1,5}(:[^,\s]+)?$/.test(target))
        throw new SluiceError(
          'SLUICE_E_USAGE',
          `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}: expected pssl:PORT[:ADDRESS], got "${target}"`,
        );
      return { target, role };
    });
  });
  if (remotes.length === 0)
    throw new SluiceError(
      'SLUICE_E_USAGE',
      'store access: give at least one of --agent-remote, --planner-remote, --operator-remote',
    );
  return remotes;
}

/** `--inactivity-probe SECONDS` of `sluice store access`, in ms: whole seconds, 0 (never probe) to an hour (a
 *  planner whose machine vanished holds the lock for up to twice this). */
export function accessProbeMs(opts: Record<string, string | boolean | undefined>): number {
  const value = opts.inactivityProbe;
  if (value === undefined) return DEFAULT_INACTIVITY_PROBE_MS;
  if (typeof value !== 'string' || !/^\d{1,4}$/.test(value) || Number(value) > 3600)
    throw new SluiceError(
      'SLUICE_E_USAGE',
      `--inactivity-probe: expected whole seconds from 0 to 3600, got ${JSON.stringify(value)}`,
    );
  return Number(value) * 1000;
}

/**
 * `sluice store access`: writes the store's RBAC roles and its TLS remotes, one role per remote (docs/security.md).
 * Run it once per cluster through the administrator's unix socket: a role's own remote cannot change roles.
 */
function storeAccessCommand(program: Command): void {
  const store = program.command('store').description('the store itself');
  storeOptions(
    store
      .command('access')
      .description(
        "write the store's RBAC roles and TLS remotes (mutual TLS; each remote's clients get one role); run through the unix socket",
      )
      .option('--agent-remote <pssl>', 'remote(s) for agents, e.g. pssl:6642:10.0.0.1 (comma separated)')
      .option('--planner-remote <pssl>', 'remote(s) for planners, e.g. pssl:6643:10.0.0.1')
      .option('--operator-remote <pssl>', 'remote(s) for operators (the CLI), e.g. pssl:6645:10.0.0.1')
      .option(
        '--inactivity-probe <seconds>',
        "how long the store lets a client of these remotes send nothing before it probes it (ovsdb-server's own default: 5); 0 = never",
        String(DEFAULT_INACTIVITY_PROBE_MS / 1000),
      ),
  ).action(
    action(async (ctx, _args, opts) => {
      const remotes = accessRemotes(opts); // usage errors before connecting
      const probeMs = accessProbeMs(opts);
      // Sluice_Status first: its roles must be in place before the remotes that let roles in open.
      await withStore(ctx.db, DESIRED_STATE_MONITOR, async (s) => {
        if (s.schema.tables.Connection?.columns.inactivity_probe === undefined)
          throw new SluiceError(
            'SLUICE_E_OVSDB_VALUE',
            "store access: the store's Sluice has no Connection.inactivity_probe (schema before 3.1.0): convert " +
              'it first (docs/deploy.md, "Upgrades"); nothing was written',
          );
        await s.client.transact(STATUS_DB_NAME, ...statusAccessOps());
        await s.client.transact(DB_NAME, ...accessControlOps(remotes, probeMs));
      });
      const probe = `inactivity probe ${probeMs / 1000} s`;
      return {
        json: { ok: true, command: 'store access', remotes, inactivityProbeMs: probeMs },
        text: remotes.map((r) => `${r.target}: ${r.role}, ${probe}`).join('\n'),
      };
    }),
  );
}
