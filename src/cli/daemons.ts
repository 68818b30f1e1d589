// `sluice planner`, `sluice agent` and the lab's fencing helper `sluice lab-ecmp withdraw|announce`. The daemons run
// until SIGTERM/SIGINT; structured JSON logs (pino) go to stderr; `--metrics host:port` serves /metrics and /status.

import { closeSync, existsSync, openSync, readFileSync, unlinkSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { pino } from 'pino';
import { idleHeartbeatProblem } from '../agent/beat-cadence.ts';
import { AgentDaemon } from '../agent/daemon.ts';
import { checkNodeFacts, readNodeFacts } from '../agent/facts.ts';
import { netnsProbe } from '../agent/health.ts';
import { agentXdpGateway } from '../agent/xdp-gateway.ts';
import type { NodeFacts } from '../compile/facts.ts';
import { labEcmpCommand } from '../lab/ecmp.ts';
import { attachLab } from '../lab/topology.ts';
import { SluiceError } from '../model/errors.ts';
import { parseIp } from '../model/ip.ts';
import { localRunner } from '../openflow/runner.ts';
import type { TlsFiles } from '../ovsdb/jsonrpc.ts';
import { PlannerDaemon } from '../planner/daemon.ts';
import { statusPageRoutes } from '../web/page.ts';
import { startMetricsServer } from '../web/server.ts';

/** `--private-key`/`--certificate`/`--ca-cert` (else SLUICE_SSL_PRIVATE_KEY, _CERTIFICATE, _CA_CERT): the
 *  credentials for `ssl:` remotes; all three or none. */
export function tlsFiles(o: {
  privateKey?: string;
  certificate?: string;
  caCert?: string;
}): TlsFiles | undefined {
  const privateKey = o.privateKey ?? process.env.SLUICE_SSL_PRIVATE_KEY;
  const certificate = o.certificate ?? process.env.SLUICE_SSL_CERTIFICATE;
  const caCert = o.caCert ?? process.env.SLUICE_SSL_CA_CERT;
  const given = [privateKey, certificate, caCert].filter((x) => x !== undefined && x !== '').length;
  if (given === 0) return undefined;
  if (given !== 3)
    throw new SluiceError(
      'SLUICE_E_USAGE',
      'TLS needs all of --private-key, --certificate and --ca-cert (or SLUICE_SSL_PRIVATE_KEY, SLUICE_SSL_CERTIFICATE, SLUICE_SSL_CA_CERT)',
    );
  return { privateKey: privateKey!, certificate: certificate!, caCert: caCert! };
}

/** The TLS options of every command that talks to the store. */
export function tlsOptions(cmd: Command): Command {
  return cmd
    .option('--private-key <file>', 'PEM private key for ssl: remotes (mutual TLS; docs/security.md)')
    .option('--certificate <file>', 'PEM certificate for ssl: remotes (its CN is who the store sees)')
    .option('--ca-cert <file>', "PEM CA certificate the store's certificate must chain to");
}

function remotes(text: string): string[] {
  const r = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (r.length === 0)
    throw new SluiceError('SLUICE_E_USAGE', '--db: expected unix:/path or tcp:host:port[,...]');
  return r;
}

function num(name: string, text: string, min = 0): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n < min)
    throw new SluiceError('SLUICE_E_USAGE', `${name}: expected a number >= ${min}, got "${text}"`);
  return n;
}

/** --idle-heartbeat, checked against the heartbeat and the lease (src/agent/beat-cadence.ts). */
function idleHeartbeat(o: { idleHeartbeat?: string; heartbeat: string; lease: string }): {
  idleHeartbeatMs?: number;
} {
  if (o.idleHeartbeat === undefined) return {};
  const idleMs = num('--idle-heartbeat', o.idleHeartbeat, 50);
  const problem = idleHeartbeatProblem(
    idleMs,
    num('--heartbeat', o.heartbeat, 50),
    num('--lease', o.lease) * 1000,
  );
  if (problem !== undefined) throw new SluiceError('SLUICE_E_USAGE', problem);
  return { idleHeartbeatMs: idleMs };
}

function integer(name: string, text: string): number {
  const n = num(name, text);
  if (!Number.isInteger(n) || n > 0xffffffff)
    throw new SluiceError(
      'SLUICE_E_USAGE',
      `${name}: expected a whole number of packets per second, got "${text}"`,
    );
  return n;
}

function logger(name: string, level: string, node?: string) {
  return pino({ name, level, base: { pid: process.pid, ...(node ? { node } : {}) } }, pino.destination(2));
}

/** Resolves on SIGTERM/SIGINT after `stop()`. */
function untilSignal(stop: () => Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    const on = () => {
      process.off('SIGTERM', on);
      process.off('SIGINT', on);
      stop().finally(resolve);
    };
    process.on('SIGTERM', on);
    process.on('SIGINT', on);
  });
}

/** Starts a daemon, serves its metrics and status if asked, and runs until SIGTERM/SIGINT stops both. */
async function runDaemon(
  d: PlannerDaemon | AgentDaemon,
  log: ReturnType<typeof logger>,
  metrics: string | undefined,
): Promise<void> {
  await d.start();
  const onError = (route: string, e: unknown) =>
    log.error(
      { event: 'http-error', route, err: (e as Error)?.message },
      `GET ${route} failed: ${(e as Error)?.message}`,
    );
  const web = metrics
    ? await startMetricsServer(
        metrics,
        d.registry,
        () => d.status(),
        d instanceof PlannerDaemon ? statusPageRoutes(() => d.pageState()) : {},
        { onError },
      )
    : undefined;
  if (web)
    log.info(
      { event: 'metrics', address: web.address },
      d instanceof PlannerDaemon
        ? `status page on http://${web.address}/, metrics on http://${web.address}/metrics`
        : `metrics on http://${web.address}/metrics`,
    );
  await untilSignal(async () => {
    log.info({ event: 'stop' }, 'stopping');
    await web?.close();
    await d.stop();
  });
}

/** A real node's facts file: NodeFacts (src/compile/facts.ts) plus, optionally, where to probe backends from. */
interface FactsFile extends NodeFacts {
  /** Backend address -> network namespace to run its TCP health probe in (the lab: the backend's own). */
  readonly probeNetns?: Readonly<Record<string, string>>;
}

/** Reads and checks a facts file exactly like facts read from OVS (checkNodeFacts), plus its probeNetns map. */
function readFactsFile(file: string): FactsFile {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new SluiceError('SLUICE_E_IO', `cannot read facts file ${file}: ${(e as Error).message}`);
  }
  const { probeNetns, ...facts } = (raw ?? {}) as Record<string, unknown>;
  const checked = checkNodeFacts(facts, `facts file ${file}`);
  if (probeNetns === undefined) return checked;
  const ok =
    typeof probeNetns === 'object' &&
    probeNetns !== null &&
    Object.entries(probeNetns).every(
      ([a, ns]) => parseIp(a) !== undefined && /^[A-Za-z0-9_.-]+$/.test(String(ns)),
    );
  if (!ok)
    throw new SluiceError(
      'SLUICE_E_NODE_FACTS',
      `facts file ${file}: probeNetns: expected {address: netns name ([A-Za-z0-9_.-])}`,
    );
  return { ...checked, probeNetns: probeNetns as Record<string, string> };
}

function pidOf(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 && existsSync(`/proc/${pid}`) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Serialises read-modify-write of the lab router's ECMP set across processes (an exclusive lock file). */
async function withLockFile<T>(path: string, fn: () => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      closeSync(openSync(path, 'wx'));
      break;
    } catch {
      if (i > 200) unlinkSync(path); // a holder that died: take it over after ~10 s
      await sleep(50);
    }
  }
  try {
    return await fn();
  } finally {
    try {
      unlinkSync(path);
    } catch {}
  }
}

/** The daemons: `sluice planner`, `sluice agent`, and the lab's fencing helper `sluice lab-ecmp`. */
export function registerDaemonCommands(program: Command): void {
  plannerCommand(program);
  agentCommand(program);
  labEcmpCliCommand(program);
}

/** `sluice planner`. */
function plannerCommand(program: Command): void {
  tlsOptions(program.command('planner'))
    .description(
      'compute and publish generations from the desired state in OVSDB (one active, others standby)',
    )
    .requiredOption('--db <remotes>', 'OVSDB remotes, comma separated (cluster members)')
    .option(
      '--lease <seconds>',
      "agents' lease: a gateway silent this long is fenced (--fence-cmd), a host dropped after lease + margin",
      '10',
    )
    .option(
      '--margin <seconds>',
      'extra wait beyond the lease before a silent host is dropped (a silent gateway is waited for until fenced)',
      '5',
    )
    .option('--keep-plans <n>', 'plans kept in the store', '5')
    .option(
      '--fence-cmd <cmd>',
      'shell command that takes gateway "$1" (also SLUICE_NODE) out of the upstream ECMP set; run for a gateway silent for the lease, never for a majority of the gateways',
    )
    .option('--metrics <host:port>', 'serve /metrics and /status')
    .option('--log-level <level>', 'pino level', 'info')
    .action(
      async (o: {
        db: string;
        lease: string;
        margin: string;
        keepPlans: string;
        fenceCmd?: string;
        metrics?: string;
        privateKey?: string;
        certificate?: string;
        caCert?: string;
        logLevel: string;
      }) => {
        const log = logger('sluice-planner', o.logLevel);
        const d = new PlannerDaemon({
          remotes: remotes(o.db),
          tls: tlsFiles(o),
          log,
          leaseMs: num('--lease', o.lease) * 1000,
          marginMs: num('--margin', o.margin) * 1000,
          keepPlans: num('--keep-plans', o.keepPlans, 2),
          fenceCmd: o.fenceCmd,
        });
        await runDaemon(d, log, o.metrics);
      },
    );
}

interface AgentCliOptions {
  role?: string;
  node?: string;
  db: string;
  facts?: string;
  ovsRundir?: string;
  lease: string;
  withdrawCmd?: string;
  announceCmd?: string;
  birdSocket?: string;
  withdrawOnStoreSilence?: boolean;
  heartbeat: string;
  idleHeartbeat?: string;
  healthInterval: string;
  healthTimeout: string;
  healthRise: string;
  healthFall: string;
  fullReconcile: string;
  commandTimeout: string;
  ctLimit: string;
  synRate: string;
  icmpRate: string;
  reportTimeout: string;
  slotAudit: string;
  xdpObject?: string;
  metrics?: string;
  privateKey?: string;
  certificate?: string;
  caCert?: string;
  logLevel: string;
}

/** `sluice agent`: its options; the daemon is `runAgent`. */
function agentCommand(program: Command): void {
  tlsOptions(program.command('agent'))
    .description("program this node's Open vSwitch from the store and acknowledge what it applied")
    .option('--role <role>', "gateway | host (default: the node's OVS, external_ids:sluice-role)")
    .option(
      '--node <name>',
      "this node, as named in the desired state (default: the node's OVS, external_ids:sluice-node)",
    )
    .requiredOption('--db <remotes>', 'OVSDB remotes, comma separated')
    .option(
      '--facts <file.json>',
      "the node's NodeFacts from a file instead of its OVS's sluice-* external_ids (docs/design/control-plane.md)",
    )
    .option('--ovs-rundir <dir>', "OVS_RUNDIR of the node's ovs-vswitchd (default: the system one)")
    .option(
      '--xdp-object <file>',
      'gateway with external_ids:sluice-gateway-datapath=xdp: the XDP program to attach (gateway.bpf.o of scripts/build-xdp.sh)',
    )
    .option(
      '--lease <seconds>',
      'gateway: withdraw after failing to apply for this long (a silent store alone is no reason to withdraw)',
      '10',
    )
    .option(
      '--withdraw-cmd <cmd>',
      'gateway: shell command that withdraws this gateway ("$1", SLUICE_NODE) from the upstream ECMP set',
    )
    .option('--announce-cmd <cmd>', 'gateway: shell command that (re-)announces it')
    .option(
      '--bird-socket <path>',
      "gateway: control socket of this gateway's BIRD; announce/withdraw = enable/disable its VIP routes (docs/design/routing.md)",
    )
    .option(
      '--withdraw-on-store-silence',
      'gateway: the old rule (withdraw after a lease without the store); for negative-control tests only',
    )
    .option('--heartbeat <ms>', 'heartbeat and connection report period', '1000')
    .option(
      '--idle-heartbeat <ms>',
      'heartbeat period once no plan, fence or health change was seen for 10 s (fewer store transactions; at most a quarter of --lease; default: --heartbeat)',
    )
    .option('--health-interval <ms>', 'host: health check interval (LBs without their own)', '1000')
    .option('--health-timeout <ms>', 'host: health probe timeout (LBs without their own)', '500')
    .option('--health-rise <n>', 'host: successes to turn up (LBs without their own)', '2')
    .option('--health-fall <n>', 'host: failures to turn down (LBs without their own)', '3')
    .option(
      '--full-reconcile <seconds>',
      'read, diff and verify the whole switch at least this often (0 = on every generation: no incremental apply)',
      '900',
    )
    .option('--command-timeout <seconds>', 'timeout of one ovs-ofctl/ovs-appctl command', '30')
    .option(
      '--ct-limit <n>',
      "host: most entries in sluice's conntrack zone (dpctl/ct-set-limits; 0 = none)",
      '200000',
    )
    .option(
      '--syn-rate <n>',
      'host: TCP SYNs per second committed to conntrack, over the rest dropped (an OpenFlow meter; 0 = none)',
      '0',
    )
    .option(
      '--icmp-rate <n>',
      'gateway: ICMP errors to VIPs per second copied to hosts, over the rest dropped (an OpenFlow meter; 0 = none)',
      '1000',
    )
    .option(
      '--report-timeout <ms>',
      'host: abandon a connection report (conntrack read) after this long',
      '5000',
    )
    .option(
      '--slot-audit <ms>',
      "host: compare each live connection's committed slot with the model's this often (0 = off; docs/design/hash.md)",
      '10000',
    )
    .option('--metrics <host:port>', 'serve /metrics and /status')
    .option('--log-level <level>', 'pino level', 'info')
    .action(runAgent);
}

/** Runs `sluice agent` until a signal: this node's facts, its runner, then the daemon. */
async function runAgent(o: AgentCliOptions): Promise<void> {
  const idle = idleHeartbeat(o); // checked before anything is read or started
  if (o.role !== undefined && o.role !== 'gateway' && o.role !== 'host')
    throw new SluiceError('SLUICE_E_USAGE', `--role: expected gateway or host, got "${o.role}"`);
  const rundir = o.ovsRundir ?? '/var/run/openvswitch';
  const env = o.ovsRundir
    ? {
        OVS_RUNDIR: o.ovsRundir,
        OVS_DBDIR: o.ovsRundir,
        OVS_LOGDIR: o.ovsRundir,
        OVS_SYSCONFDIR: o.ovsRundir,
      }
    : undefined;
  const timeoutMs = num('--command-timeout', o.commandTimeout, 1) * 1000;
  const runner = localRunner(env ? { env, timeoutMs } : { timeoutMs });
  const nf = await agentFacts(o, runner, rundir);
  const node = nf.facts.name;
  const log = logger('sluice-agent', o.logLevel, node);
  log.info({ event: 'facts', source: nf.source, facts: nf.facts }, `node facts from ${nf.source}`);
  const xdp = nf.facts.role === 'gateway' ? await agentXdpGateway(runner, o.xdpObject) : undefined;
  if (xdp) log.info({ event: 'datapath', datapath: 'xdp' }, 'gateway datapath: xdp');
  const d = new AgentDaemon({
    role: nf.facts.role,
    node,
    remotes: remotes(o.db),
    tls: tlsFiles(o),
    runner,
    facts: nf.facts,
    readFacts: nf.readFacts,
    log,
    leaseMs: num('--lease', o.lease) * 1000,
    heartbeatMs: num('--heartbeat', o.heartbeat, 50),
    ...idle,
    withdrawCmd: o.withdrawCmd || undefined,
    announceCmd: o.announceCmd || undefined,
    birdSocket: o.birdSocket || undefined,
    withdrawOnStoreSilence: o.withdrawOnStoreSilence === true,
    vswitchdPid: () => pidOf(`${rundir}/ovs-vswitchd.pid`),
    health: {
      intervalMs: num('--health-interval', o.healthInterval, 10),
      timeoutMs: num('--health-timeout', o.healthTimeout, 10),
      rise: num('--health-rise', o.healthRise, 1),
      fall: num('--health-fall', o.healthFall, 1),
    },
    probe: netnsProbe((a) => nf.probeNetns[a]),
    fullReconcileMs: num('--full-reconcile', o.fullReconcile) * 1000,
    ctLimit: num('--ct-limit', o.ctLimit),
    synRate: integer('--syn-rate', o.synRate),
    icmpRate: integer('--icmp-rate', o.icmpRate),
    reportTimeoutMs: num('--report-timeout', o.reportTimeout, 1),
    slotAuditMs: num('--slot-audit', o.slotAudit),
    xdp,
  });
  await runDaemon(d, log, o.metrics);
}

/** This node's facts and where they come from; `readFacts` reads them again before every apply (OVSDB only). */
interface AgentFacts {
  readonly source: string;
  readonly facts: NodeFacts;
  readonly readFacts: (() => Promise<NodeFacts>) | undefined;
  /** Backend address -> namespace of its health probes (updated by `readFacts`). */
  probeNetns: Readonly<Record<string, string>>;
}

/**
 * The node's facts: from --facts, else from its own OVSDB. Throws a usage error if they describe another node or
 * role than --node/--role, and (later, from `readFacts`) if the node's OVSDB starts describing another one.
 */
async function agentFacts(
  o: AgentCliOptions,
  runner: ReturnType<typeof localRunner>,
  rundir: string,
): Promise<AgentFacts> {
  const source = o.facts ? `facts file ${o.facts}` : `the OVSDB in ${rundir}`;
  const mismatch = (f: NodeFacts, node = o.node, role = o.role) =>
    (node !== undefined && f.name !== node) || (role !== undefined && f.role !== role)
      ? `${source} describes ${f.name} (${f.role}), not ${node ?? f.name} (${role ?? f.role})`
      : undefined;
  let probeNetns: Readonly<Record<string, string>>;
  let facts: NodeFacts;
  if (o.facts) {
    const file = readFactsFile(o.facts);
    probeNetns = file.probeNetns ?? {};
    facts = file;
  } else {
    const fromOvs = await readNodeFacts(runner);
    probeNetns = fromOvs.probeNetns;
    facts = fromOvs.facts;
  }
  const bad = mismatch(facts);
  if (bad) throw new SluiceError('SLUICE_E_USAGE', bad);
  const node = facts.name;
  const role = facts.role;
  const out: AgentFacts = {
    source,
    facts,
    probeNetns,
    readFacts: o.facts
      ? undefined
      : async (): Promise<NodeFacts> => {
          const r = await readNodeFacts(runner);
          const changed = mismatch(r.facts, node, role);
          if (changed) throw new SluiceError('SLUICE_E_NODE_FACTS', changed);
          out.probeNetns = r.probeNetns;
          return r.facts;
        },
  };
  return out;
}

/** `sluice lab-ecmp`. */
function labEcmpCliCommand(program: Command): void {
  program
    .command('lab-ecmp')
    .description("lab fencing helper: withdraw a gateway from (or announce it to) the lab router's ECMP set")
    .argument('<action>', 'withdraw | announce')
    .argument('<gateway>', 'gateway name (gw1, ...)')
    .option('--prefix <prefix>', 'lab prefix', 'sl-')
    .option('--run-root <dir>', 'lab run root')
    .option(
      '--print-cmd',
      'print the fast shell command (for --withdraw-cmd / --announce-cmd) instead of running',
    )
    .action(
      async (
        action: string,
        gateway: string,
        o: { prefix: string; runRoot?: string; printCmd?: boolean },
      ) => {
        if (action !== 'withdraw' && action !== 'announce')
          throw new SluiceError('SLUICE_E_USAGE', `lab-ecmp: expected withdraw or announce, got "${action}"`);
        const lab = o.runRoot ? attachLab(o.prefix, o.runRoot) : attachLab(o.prefix);
        lab.node(gateway);
        if (o.printCmd) {
          process.stdout.write(`${labEcmpCommand(lab, gateway, action)}\n`);
          return;
        }
        await withLockFile(`${lab.facts.runDir}/ecmp.lock`, async () => {
          const cur = new Set(Object.values(await lab.ecmpGateways()).flat());
          if (action === 'withdraw') cur.delete(gateway);
          else cur.add(gateway);
          await lab.setEcmpGateways([...cur].sort());
        });
      },
    );
}
