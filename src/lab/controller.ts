// LabController: drives a running lab's data plane directly (no store, planner daemon or agents): holds the desired
// Config and the published generations, runs the rollout planner (src/rollout) with ack gating, programs every
// node through src/agent/node-ops.ts, and performs the lab's churn events (gateway withdrawn from ECMP, a gateway's
// ovs-vswitchd killed and restored, a gateway held one generation behind). A live event log says what happened.
//
// Rollout loop (docs/design/rollout.md):
//   1. wait until every live gateway acknowledged the latest generation (ack = bundle committed + revalidator pass);
//   2. read live connections per (lb, slot, backend) from every host's conntrack (taken after step 1);
//   3. planNext(config, latest, connections) -> next generation or null (done, or everything left waits);
//   4. publish: program every live HOST, then every live GATEWAY that is not held; go to 1.
// Gating: a held gateway keeps its generation; step 1 then blocks, so the others never get more than one generation
// ahead of it. A gateway withdrawn from the router's ECMP set (removeGateway, killGatewayVswitchd) first stops
// receiving traffic and only then leaves the ack set; it rejoins ECMP only after it was programmed with the latest
// generation.

import { setTimeout as sleep } from 'node:timers/promises';
import type { SlotConnections } from '../agent/node-ops.ts';
import {
  connectionCounts,
  mergeSlotConnections,
  NodeProgrammer,
  programNode,
  readSlotConnections,
} from '../agent/node-ops.ts';
import { XdpGateway } from '../agent/xdp-gateway.ts';
import type { NodeFacts } from '../compile/facts.ts';
import type { CompileOptions } from '../compile/index.ts';
import { lbIdsOf } from '../compile/registry.ts';
import { SluiceError } from '../model/errors.ts';
import { parseConfig } from '../model/schema.ts';
import type { Config } from '../model/types.ts';
import { type PlanNote, planNext, waitingGateways } from '../rollout/planner.ts';
import type { Generation } from '../rollout/types.ts';
import { deviceOps, XdpDatapath } from '../xdp/datapath.ts';
import type { Lab } from './topology.ts';
import { LAB_UPLINK, labDatapathStatus, labXdpObject, setLabDatapathFacts } from './xdp.ts';

export interface ControllerEvent {
  /** ms since the controller was created. */
  readonly t: number;
  readonly kind: string;
  readonly message: string;
}

export interface LabControllerOptions {
  /** Called for every event as it happens (the demo prints them). */
  readonly onEvent?: (e: ControllerEvent) => void;
  /** Poll interval of the rollout loop while gated or waiting, ms (default 200). */
  readonly pollMs?: number;
  /** Compiler switches for every node it programs (negative controls, e.g. `{ udpWalk: false }`). */
  readonly compile?: CompileOptions;
  /**
   * Program each node as its agent does (a NodeProgrammer per node): the switch read, diffed and verified on the
   * first apply, after its ovs-vswitchd restarted (another pid), after a failure and after `verifyNext()`; in
   * between, one bundle of only the changes, without reading the switch. Default false: every generation is read
   * back and verified on every node (programNode), which costs a few switch dumps per node and generation (seconds
   * per generation with tens of thousands of flows).
   */
  readonly incremental?: boolean;
}

export interface ChangeOptions {
  /** Give up after this long (SLUICE_E_LAB_COMMAND), ms. Default 60 s. */
  readonly timeoutMs?: number;
  /**
   * Keep going while slots wait for a second chance in use (until their connections close) instead of returning
   * when planNext first returns null. Default false.
   */
  readonly untilSettled?: boolean;
}

export interface ChangeResult {
  /** Generation numbers published by this call, in order. */
  readonly published: readonly number[];
  /** Notes of the last planner step (`waits` notes say what is still waiting and on how many connections). */
  readonly notes: readonly PlanNote[];
  /** `gave-up` notes of every step this call published (connections an operator's drain window dropped). */
  readonly gaveUp: readonly PlanNote[];
  /** True when nothing waits any more (no `waits` note). */
  readonly settled: boolean;
}

/** A short human summary of planner notes, e.g. `web: phase1 64 slots; api: waits 12 slots (40 conns)`. */
export function summarizeNotes(notes: readonly PlanNote[]): string {
  const agg = new Map<string, { slots: number; conns: number }>();
  for (const n of notes) {
    const k = `${n.lb}: ${n.kind}`;
    const a = agg.get(k) ?? { slots: 0, conns: 0 };
    a.slots += n.slots.length;
    a.conns += n.connections ?? 0;
    agg.set(k, a);
  }
  return [...agg]
    .map(([k, a]) => `${k}${a.slots ? ` ${a.slots} slots` : ''}${a.conns ? ` (${a.conns} conns)` : ''}`)
    .join('; ');
}

export class LabController {
  readonly lab: Lab;
  /** Every generation published, in order. */
  readonly published: Generation[] = [];
  /** Node -> the generation it last acknowledged (programmed + revalidated). */
  readonly acks = new Map<string, number>();
  readonly events: ControllerEvent[] = [];
  #desired: Config | undefined;
  readonly #held = new Set<string>();
  /** Gateways withdrawn from ECMP and excluded from the ack set (removed or down). */
  readonly #out = new Set<string>();
  /** Hosts whose ovs-vswitchd is down: not programmed, not asked for connections (theirs are lost). */
  readonly #downHosts = new Set<string>();
  readonly #t0 = Date.now();
  readonly #opts: LabControllerOptions;
  /** Gateways that run the XDP datapath (their OVS is programmed too: it handles what the program passes). */
  readonly #xdp = new Map<string, XdpGateway>();
  /** Serialises publications (a publish and a rejoin never interleave their bookkeeping). */
  #chain: Promise<unknown> = Promise.resolve();
  /** Per node, with `incremental`: what it installed last, and the ovs-vswitchd (pid) it installed it on. */
  readonly #programmers = new Map<string, { programmer: NodeProgrammer; pid: number | undefined }>();

  constructor(lab: Lab, opts: LabControllerOptions = {}) {
    this.lab = lab;
    this.#opts = opts;
  }

  get config(): Config {
    if (!this.#desired) throw new SluiceError('SLUICE_E_USAGE', 'LabController: start(config) first');
    return this.#desired;
  }

  get latest(): Generation | null {
    return this.published.at(-1) ?? null;
  }

  log(kind: string, message: string): void {
    const e = { t: Date.now() - this.#t0, kind, message };
    this.events.push(e);
    this.#opts.onEvent?.(e);
  }

  /** Gateways in the ack set (in ECMP, not down), sorted. */
  liveGateways(): string[] {
    return this.lab.gateways.map((g) => g.name).filter((n) => !this.#out.has(n));
  }

  /** Hosts that are programmed and report connections (not down), sorted. */
  liveHosts(): string[] {
    return this.lab.hosts.map((h) => h.name).filter((n) => !this.#downHosts.has(n));
  }

  /** Gateways currently held back (holdGateway). */
  heldGateways(): string[] {
    return [...this.#held].sort();
  }

  /** Live gateways that have not acknowledged the latest generation. */
  waiting(): string[] {
    const acks = new Map(this.liveGateways().map((g) => [g, this.acks.get(g) ?? 0]));
    return waitingGateways(acks, this.latest);
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#chain.then(fn, fn);
    this.#chain = p.catch(() => undefined);
    return p;
  }

  /** A node's compiler facts; on an XDP gateway its tc program copies ICMP errors, not OVS (as the agent does). */
  #facts(node: string): NodeFacts {
    const f = this.lab.compilerFacts(node);
    return this.#xdp.has(node) ? { ...f, icmpErrorsInXdp: true } : f;
  }

  async #program(node: string, gen: Generation): Promise<void> {
    const r = this.#opts.incremental
      ? await this.#programmer(node).program(this.config, gen, this.#facts(node))
      : await programNode(this.lab.node(node), this.config, gen, this.#facts(node), this.#opts.compile);
    // As the agent does: the XDP tables after the OVS flows, the acknowledgement after the flip.
    const x = await this.#xdp.get(node)?.install(this.config, gen, this.#facts(node));
    this.acks.set(node, gen.number);
    const lines = Object.entries(r.bundleLines)
      .filter(([, n]) => n > 0)
      .map(([b, n]) => `${b} ${n} lines`)
      .join(', ');
    const xdp = x ? `; xdp copy ${x.copy}, ${x.writes} writes${x.attached ? ', attached' : ''}` : '';
    const mode = this.#opts.incremental ? `, ${r.mode}` : '';
    this.log('ack', `${node} acked g${gen.number} (${lines || 'no change'}; ${r.ms} ms${mode}${xdp})`);
  }

  /** With `incremental`: the node's programmer; a new ovs-vswitchd (restarted, by the controller or behind its back:
   *  another pid) lost every flow, so its next apply reads the switch, as an agent's does. */
  #programmer(node: string): NodeProgrammer {
    const pid = this.lab.node(node).vswitchdPid();
    let p = this.#programmers.get(node);
    if (p === undefined) {
      // No periodic reconcile: a test's generations come seconds apart; the reads happen where the switch changed.
      const programmer = new NodeProgrammer(this.lab.node(node), {
        fullReconcileMs: Number.POSITIVE_INFINITY,
        ...(this.#opts.compile ? { compile: this.#opts.compile } : {}),
      });
      p = { programmer, pid };
      this.#programmers.set(node, p);
    } else if (p.pid !== pid) {
      p.programmer.invalidate('ovs-vswitchd restarted');
      p.pid = pid;
    }
    return p.programmer;
  }

  /** With `incremental`: the next generation is read back and verified on every node, as without it. */
  verifyNext(): void {
    for (const p of this.#programmers.values()) p.programmer.invalidate('verify requested');
  }

  /**
   * Publishes `gen` without asking the planner (start, and negative controls that bypass the phases): programs
   * every live host, then every live gateway that is not held. A node withdrawn meanwhile is skipped.
   */
  publish(gen: Generation, note = ''): Promise<void> {
    return this.#serial(async () => {
      this.published.push(gen);
      this.log('publish', `g${gen.number}${note ? `: ${note}` : ''}`);
      await Promise.all(
        this.liveHosts().map(async (h) => {
          try {
            await this.#program(h, gen);
          } catch (e) {
            // A host whose ovs-vswitchd died is left out (hosts do not gate publication); anything else is an error.
            if (this.lab.node(h).vswitchdPid() !== undefined) throw e;
            this.#downHosts.add(h);
            this.log('host-down', `${h}: ovs-vswitchd is not running: left out until restoreHost`);
          }
        }),
      );
      const gws = this.liveGateways().filter((g) => !this.#held.has(g));
      await Promise.all(
        gws.map(async (g) => {
          try {
            await this.#program(g, gen);
          } catch (e) {
            if (!this.#out.has(g)) throw e;
            this.log('skip', `${g} is down: not programmed (${(e as Error).message.split('\n')[0]})`);
          }
        }),
      );
    });
  }

  /** Publishes generation 1 of `config` to every node and puts every gateway in the ECMP set. */
  async start(config: Config): Promise<Generation> {
    this.#desired = config;
    for (const g of this.lab.gateways)
      if ((await labDatapathStatus(g)).datapath === 'xdp') this.#xdp.set(g.name, this.#xdpGateway(g.name));
    const step = planNext({ config, latest: null, connections: () => 0, now: Date.now() });
    await this.publish(step.next!, 'initial');
    await this.lab.setEcmpGateways(this.liveGateways());
    this.log('ecmp', `router ECMP set: ${this.liveGateways().join(', ')}`);
    return step.next!;
  }

  /** Live connections of every host, merged (read only after every live gateway acked the latest generation). */
  async connections(): Promise<SlotConnections> {
    const latest = this.latest;
    const ids = latest === null ? undefined : lbIdsOf(this.config, latest);
    const all = await Promise.all(
      this.liveHosts().map(async (h) => {
        try {
          return await readSlotConnections(this.lab.node(h), this.config, undefined, ids);
        } catch (e) {
          if (this.lab.node(h).vswitchdPid() !== undefined) throw e;
          // Its conntrack died with it: it holds no connection any more.
          this.#downHosts.add(h);
          this.log('host-down', `${h}: ovs-vswitchd is not running: its connections are lost, left out`);
          return mergeSlotConnections([]);
        }
      }),
    );
    return mergeSlotConnections(all);
  }

  /** Resolves once every live gateway acknowledged the latest generation. */
  async waitAcked(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let said = '';
    for (;;) {
      const w = this.waiting();
      if (w.length === 0) return;
      const msg = w.join(', ');
      if (msg !== said) {
        this.log(
          'gated',
          `g${this.latest?.number}: waiting for ${msg} to acknowledge before publishing more`,
        );
        said = msg;
      }
      if (Date.now() > deadline)
        throw new SluiceError('SLUICE_E_LAB_COMMAND', `gateways ${msg} did not acknowledge in time`);
      await sleep(this.#opts.pollMs ?? 200);
    }
  }

  /**
   * Makes `config` the desired state and rolls it out: repeatedly (gated on acks) reads connections, asks the
   * planner for the next generation and publishes it, until the planner returns null (done, or everything left
   * waits for connections to close; with `untilSettled`, until nothing waits).
   */
  async change(config: Config, opts: ChangeOptions = {}): Promise<ChangeResult> {
    this.#desired = config;
    this.log('change', 'desired state changed');
    return this.#rollout(opts);
  }

  /** Continues a rollout whose slots waited (e.g. after the connections they waited for were closed). */
  settle(opts: Omit<ChangeOptions, 'untilSettled'> = {}): Promise<ChangeResult> {
    return this.#rollout({ ...opts, untilSettled: true });
  }

  async #rollout(opts: ChangeOptions): Promise<ChangeResult> {
    const timeoutMs = opts.timeoutMs ?? 60_000;
    const deadline = Date.now() + timeoutMs;
    const published: number[] = [];
    const gaveUp: PlanNote[] = [];
    let lastWait = '';
    for (;;) {
      await this.waitAcked(Math.max(0, deadline - Date.now()));
      const conns = await this.connections();
      const step = planNext({
        config: this.config,
        latest: this.latest,
        connections: connectionCounts(conns),
        now: Date.now(),
      });
      const waits = step.notes.filter(
        (n) => n.kind === 'waits' || n.kind === 'chain-full' || n.kind === 'gave-up',
      );
      if (step.next === null) {
        if (waits.length === 0 || !opts.untilSettled) {
          const settled = waits.length === 0;
          this.log(
            settled ? 'settled' : 'waiting',
            settled
              ? `rollout done at g${this.latest?.number}`
              : `g${this.latest?.number}: ${summarizeNotes(waits)}`,
          );
          return { published, notes: step.notes, gaveUp, settled };
        }
        const w = summarizeNotes(waits);
        if (w !== lastWait) this.log('waiting', `g${this.latest?.number}: ${w}`);
        lastWait = w;
        if (Date.now() > deadline)
          throw new SluiceError('SLUICE_E_LAB_COMMAND', `rollout did not settle in ${timeoutMs} ms: ${w}`);
        await sleep(this.#opts.pollMs ?? 200);
        continue;
      }
      await this.publish(step.next, summarizeNotes(step.notes));
      published.push(step.next.number);
      gaveUp.push(...step.notes.filter((n) => n.kind === 'gave-up'));
    }
  }

  // ---- gateways ---------------------------------------------------------------------------------------------

  /** Keeps `name` on the generation it has: later publications skip it (the rollout then gates on it). */
  holdGateway(name: string): void {
    this.#requireGateway(name);
    this.#held.add(name);
    this.log('hold', `${name} held on g${this.acks.get(name) ?? 0}`);
  }

  /** Programs a held gateway with the latest generation and keeps it held (it acknowledges one step). */
  async advanceHeld(name: string): Promise<void> {
    if (!this.#held.has(name)) throw new SluiceError('SLUICE_E_USAGE', `${name} is not held`);
    const latest = this.latest;
    if (latest) await this.#serial(() => this.#program(name, latest));
    this.log('hold', `${name} advanced to g${latest?.number}, still held`);
  }

  /** Releases a held gateway: programs it with the latest generation. */
  async releaseGateway(name: string): Promise<void> {
    this.#held.delete(name);
    const latest = this.latest;
    if (latest && !this.#out.has(name)) await this.#serial(() => this.#program(name, latest));
    this.log('release', `${name} released at g${latest?.number}`);
  }

  #xdpGateway(name: string): XdpGateway {
    const node = this.lab.node(name);
    const object = labXdpObject(this.lab.facts.runDir);
    return new XdpGateway(node, new XdpDatapath(deviceOps(LAB_UPLINK, object, node.netns)));
  }

  /** The gateways running the XDP datapath, sorted. */
  xdpGateways(): string[] {
    return [...this.#xdp.keys()].sort();
  }

  /** Packets the XDP program of gateway `name` sent since it was attached (0: it runs none). */
  async xdpPackets(name: string): Promise<number> {
    const c = (await this.#xdp.get(name)?.counters()) ?? [];
    return c.reduce((n, v) => n + v.packets, 0);
  }

  /**
   * Switches a gateway's datapath in service (its node facts too): to `xdp` attaches the program and installs the
   * generation it has; to `ovs` detaches it (its OVS, programmed all along, takes the VIP packets). Both datapaths
   * agree slot for slot, so connections through it do not notice.
   */
  async setGatewayDatapath(name: string, datapath: 'ovs' | 'xdp'): Promise<void> {
    this.#requireGateway(name);
    await this.#serial(async () => {
      await setLabDatapathFacts(this.lab.node(name), datapath);
      const had = this.#xdp.get(name);
      const gen = this.published.find((g) => g.number === this.acks.get(name));
      if (datapath === 'ovs') {
        this.#xdp.delete(name);
        await had?.detach();
      } else if (had === undefined) {
        this.#xdp.set(name, this.#xdpGateway(name));
      }
      // Its OVS flows change too (ICMP errors move between OVS and the XDP datapath's tc program).
      if (gen) await this.#program(name, gen);
    });
    this.log('datapath', `${name} runs ${datapath}`);
  }

  #requireGateway(name: string): void {
    if (this.lab.node(name).role !== 'gateway')
      throw new SluiceError('SLUICE_E_USAGE', `${name} is not a gateway`);
  }

  async #setEcmp(): Promise<void> {
    const set = this.liveGateways();
    await this.lab.setEcmpGateways(set);
    this.log('ecmp', `router ECMP set: ${set.length ? set.join(', ') : '(none: unreachable)'}`);
  }

  /** Withdraws a gateway from the router's ECMP set, then stops waiting for its acknowledgements. */
  async removeGateway(name: string): Promise<void> {
    this.#requireGateway(name);
    this.#out.add(name);
    await this.#setEcmp();
    this.log('remove', `${name} withdrawn from ECMP and from the ack set`);
  }

  /** Programs a gateway with the latest generation (until it has it), then puts it back into the ack set and ECMP. */
  async addGateway(name: string): Promise<void> {
    this.#requireGateway(name);
    for (;;) {
      const latest = this.latest;
      if (!latest) break;
      await this.#serial(() => this.#program(name, latest));
      if (this.latest === latest) break; // no await between this check and the delete below
    }
    this.#out.delete(name);
    this.#held.delete(name);
    await this.#setEcmp();
    this.log('add', `${name} back in ECMP at g${this.acks.get(name)}`);
  }

  /**
   * Kills a gateway's ovs-vswitchd (SIGKILL), and on an XDP gateway detaches its program: the whole datapath is
   * gone. The router withdraws it at the same moment, as a real router's BFD/BGP session would: the next hop goes
   * first, then the process. Then it leaves the ack set. `withdraw: false` (negative controls) leaves the router's
   * ECMP set alone.
   */
  async killGatewayVswitchd(name: string, opts: { withdraw?: boolean } = {}): Promise<void> {
    this.#requireGateway(name);
    this.#out.add(name);
    if (opts.withdraw ?? true) await this.#setEcmp();
    const pid = await this.lab.node(name).killVswitchd('SIGKILL');
    await this.#xdp.get(name)?.detach();
    this.acks.delete(name);
    const xdp = this.#xdp.has(name) ? ' and its XDP program detached' : '';
    const ecmp = (opts.withdraw ?? true) ? 'withdrawn from ECMP and the ack set' : 'LEFT in ECMP';
    this.log('kill', `${name}: ovs-vswitchd (pid ${pid}) killed${xdp}; ${ecmp}`);
  }

  /** Restarts a host's ovs-vswitchd (its userspace conntrack, hence its connections, are lost), programs the
   *  latest generation, and counts it in again. */
  async restoreHost(name: string): Promise<void> {
    if (this.lab.node(name).role !== 'host') throw new SluiceError('SLUICE_E_USAGE', `${name} is not a host`);
    const node = this.lab.node(name);
    if (node.vswitchdPid() === undefined) await node.restartVswitchd();
    for (;;) {
      const latest = this.latest;
      if (!latest) break;
      await this.#serial(() => this.#program(name, latest));
      if (this.latest === latest) break;
    }
    this.#downHosts.delete(name);
    this.log('restore', `${name} back at g${this.acks.get(name)}`);
  }

  /** Restarts a killed gateway's ovs-vswitchd, restores every flow (latest generation), rejoins ECMP. */
  async restoreGateway(name: string): Promise<void> {
    const t = Date.now();
    const pid = await this.lab.node(name).restartVswitchd();
    this.log('restart', `${name}: ovs-vswitchd restarted (pid ${pid}), restoring flows`);
    await this.addGateway(name);
    this.log('restore', `${name} restored in ${Date.now() - t} ms`);
  }
}

// ---- desired-state edits (pure helpers the demo and tests use; every result goes through parseConfig) --------

/** The config as a plain document (the file format), so it can be edited and validated again. */
function configDocument(config: Config): Record<string, unknown> {
  return {
    hashMode: config.hashMode,
    slotBits: config.slotBits,
    ...(config.drainWindowSeconds !== undefined ? { drainWindowSeconds: config.drainWindowSeconds } : {}),
    ...(config.chainLength !== undefined ? { chainLength: config.chainLength } : {}),
    nodes: config.nodes.map((n) => ({ ...n })),
    loadBalancers: config.loadBalancers.map((lb) => ({
      name: lb.name,
      vip: lb.vip,
      protocol: lb.protocol,
      ports: [...lb.ports],
      backends: lb.backends.map((b) => ({ ...b })),
    })),
  };
}

type BackendDoc = { address: string; port?: number; host: string; weight?: number; state?: string };

/** Returns a validated copy of `config` with load balancer `lb`'s backend list replaced by `fn(backends)`. */
export function editBackends(
  config: Config,
  lb: string,
  fn: (backends: BackendDoc[]) => BackendDoc[],
): Config {
  const doc = configDocument(config);
  const lbs = doc.loadBalancers as Array<{ name: string; backends: BackendDoc[] }>;
  const l = lbs.find((x) => x.name === lb);
  if (!l) throw new SluiceError('SLUICE_E_USAGE', `no load balancer ${lb}`);
  l.backends = fn(l.backends);
  return parseConfig(doc, `edit of ${lb}`);
}

/** `config` with lab backend `name` added to `lb` (active, weight 1). */
export function addLabBackend(lab: Lab, config: Config, lb: string, name: string): Config {
  const b = lab.backend(name);
  return editBackends(config, lb, (bs) => [
    ...bs,
    { address: b.ip, port: lab.config.backendPort, host: b.host, weight: 1, state: 'active' },
  ]);
}

/** `config` with lab backend `name` of `lb` set to `state`. */
export function setLabBackendState(
  lab: Lab,
  config: Config,
  lb: string,
  name: string,
  state: 'active' | 'draining' | 'down',
): Config {
  const ip = lab.backend(name).ip;
  return editBackends(config, lb, (bs) => bs.map((b) => (b.address === ip ? { ...b, state } : b)));
}

/** `config` without lab backend `name` in `lb`. */
export function removeLabBackend(lab: Lab, config: Config, lb: string, name: string): Config {
  const ip = lab.backend(name).ip;
  return editBackends(config, lb, (bs) => bs.filter((b) => b.address !== ip));
}

/** `config` with backend `name`'s weight in `lb` set. */
export function setLabBackendWeight(
  lab: Lab,
  config: Config,
  lb: string,
  name: string,
  weight: number,
): Config {
  const ip = lab.backend(name).ip;
  return editBackends(config, lb, (bs) => bs.map((b) => (b.address === ip ? { ...b, weight } : b)));
}
