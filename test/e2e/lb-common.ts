// Shared by the lb-*.test.ts end-to-end tests (not a test file itself): lab + LabController setup, second-chance
// and slot-table packet counters read from the hosts' and gateways' flows, and a wait helper. Root, real OVS.

import * as assert from 'node:assert/strict';
import { after, before } from 'node:test';
import type { LabConfigInput } from '../../src/lab/config.ts';
import { type ChangeResult, LabController, type LabControllerOptions } from '../../src/lab/controller.ts';
import { packetsByKind as flowPacketsByKind, secondChancePackets } from '../../src/lab/flow-counters.ts';
import type { Lab } from '../../src/lab/topology.ts';
import { labDown, labUp } from '../../src/lab/topology.ts';
import { startTraffic, type Traffic, type TrafficCounters } from '../../src/lab/traffic.ts';
import type { Config } from '../../src/model/types.ts';
import { planNext } from '../../src/rollout/planner.ts';
import type { Generation } from '../../src/rollout/types.ts';

export { secondChancePackets };
export const isRoot = process.getuid?.() === 0;

import { setTimeout as sleep } from 'node:timers/promises';

export { sleep };
export const WEB = { vip: '203.0.113.10', port: 80 } as const;
export const API = { vip: '203.0.113.20', port: 80 } as const;
/** Echo timeout of the harness: a black-holed connection fails within it. */
export const TIMEOUT_MS = 2000;
/** Echo period and timeout of the lb tests' traffic. */
export const ECHO = { intervalMs: 300, timeoutMs: 3000 } as const;

/** Traffic options of the lb tests: any backend of the lab may answer; ECHO timing. */
export function expectAll(lab: Lab): { expectBackends: string[]; intervalMs: 300; timeoutMs: 3000 } {
  return { expectBackends: lab.backends().map((b) => b.name), ...ECHO };
}

/**
 * `count` connections to `to` (WEB, API, ...) at `rate` per second, any backend of the lab may answer, ECHO timing;
 * resolves once every one is open. A traffic group that fails to open is stopped before the promise rejects.
 */
export async function openTraffic(
  lab: Lab,
  to: { readonly vip: string; readonly port: number },
  count: number,
  rate: number,
): Promise<Traffic> {
  const t = await startTraffic(lab, { ...to, count, rate, ...expectAll(lab) });
  try {
    await t.waitOpened(count);
    return t;
  } catch (e) {
    await t.stop().catch(() => t.kill());
    throw e;
  }
}

export interface LabSetup {
  readonly lab: Lab;
  readonly ctl: LabController;
  readonly config: Config;
}

/** What a test may choose of its controller (the event log is setup's). */
export type ControllerChoice = Omit<LabControllerOptions, 'onEvent'>;

/**
 * Brings the lab up (setup) before the enclosing describe block's tests, hands it to `onSetup`, and tears it down
 * after them; the controller's event log is printed then when SLUICE_E2E_LOG is set. Returns that log.
 */
export function labHooks(
  prefix: string,
  onSetup: (s: LabSetup) => void,
  input: Omit<LabConfigInput, 'prefix'> = {},
  controller: ControllerChoice = {},
): string[] {
  const log: string[] = [];
  before(async () => onSetup(await setup(prefix, (s) => log.push(s), input, controller)));
  after(async () => {
    if (process.env.SLUICE_E2E_LOG) console.log(log.join('\n'));
    await labDown(prefix);
  });
  return log;
}

/** The default lab (2 gateways, 3 hosts x 2 backends, 2 clients, VIPs web + api) and a controller on generation 1.
 *  Drain window long enough that no second chance is ever given up during a test. */
export async function setup(
  prefix: string,
  log: (s: string) => void,
  input: Omit<LabConfigInput, 'prefix'> = {},
  controller: ControllerChoice = {},
): Promise<LabSetup> {
  const lab = await labUp({ ...input, prefix }, { replace: true });
  const ctl = new LabController(lab, {
    ...controller,
    onEvent: (e) => log(`[${(e.t / 1000).toFixed(1)}s] ${e.kind}: ${e.message}`),
  });
  const config = lab.sluiceConfig();
  await ctl.start(config);
  return { lab, ctl, config };
}

/** n_packets summed per cookie kind over the named nodes' br-int (src/lab/flow-counters.ts). */
export function packetsByKind(lab: Lab, nodes: readonly string[]): Promise<Record<string, number>> {
  return flowPacketsByKind(nodes.map((n) => lab.node(n)));
}

/** Packets each gateway tunnelled (GW_SLOT flows' n_packets). Reset by an ovs-vswitchd restart. */
export async function gatewayPackets(lab: Lab): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const g of lab.gateways) out[g.name] = (await packetsByKind(lab, [g.name])).GW_SLOT ?? 0;
  return out;
}

/** Aggregated fresh counters of several traffic groups. */
export async function report(...ts: Traffic[]): Promise<TrafficCounters[]> {
  return Promise.all(ts.map((t) => t.report()));
}

export function spread(c: TrafficCounters): string {
  return Object.entries(c.perBackend)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, b]) => `${k} ${b.opened}`)
    .join(', ');
}

/** Resolves once `pred()` holds (polled every 50 ms); throws after `timeoutMs`. */
export async function waitFor(pred: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** ~6 s of ECMP flips: {gw1}, {gw2}, both; opens `open` new connections on each of `ts` meanwhile. Flows cross
 *  between the gateways (on different generations when one is held). */
export async function ecmpFlips(lab: Lab, ts: readonly Traffic[], open: number): Promise<void> {
  for (const t of ts) t.open(open, 50);
  for (const set of [['gw1'], ['gw2'], ['gw1', 'gw2'], ['gw2'], ['gw1']]) {
    await lab.setEcmpGateways(set);
    await sleep(1200);
  }
  await lab.setEcmpGateways(['gw1', 'gw2']);
}

/**
 * A planner-driven change with gw1 held one generation behind gw2: `onWindow` runs in window A (gw1 on g, gw2 on
 * g+1: phase 1) and window B (gw1 on g+1, gw2 on g+2: phase 2), g = the latest generation before the change; then
 * gw1 is released and the change's result returned. The gating keeps gw2 from getting further ahead.
 */
export async function skewedChange(
  ctl: LabController,
  config: Config,
  onWindow: (window: 'A' | 'B', g: number) => Promise<void>,
): Promise<ChangeResult> {
  const g = ctl.latest!.number;
  ctl.holdGateway('gw1');
  const rollout = ctl.change(config, { timeoutMs: 90_000 });
  rollout.catch(() => {});
  await waitFor(() => ctl.acks.get('gw2') === g + 1, 'gw2 on g+1');
  await onWindow('A', g);
  await ctl.advanceHeld('gw1');
  await waitFor(() => ctl.acks.get('gw2') === g + 2, 'gw2 on g+2');
  await onWindow('B', g);
  await ctl.releaseGateway('gw1');
  return rollout;
}

/** n_packets of one cookie kind summed over every host's br-int (e.g. CHAIN_HOP, UDP_WALK_RETURN). */
export async function hostPackets(lab: Lab, kind: string): Promise<number> {
  return (
    (
      await packetsByKind(
        lab,
        lab.hosts.map((h) => h.name),
      )
    )[kind] ?? 0
  );
}

/** Broken connections with their reasons and backends, for assertion messages. */
export function brokenInfo(...ts: Traffic[]): string {
  return JSON.stringify(ts.flatMap((t) => t.brokenEvents()).map((e) => `${e.backend}:${e.reason}`)).slice(
    0,
    800,
  );
}

/** The stable table a phased rollout from the controller's latest generation to `target` ends in, every step taken
 *  at once (no second chance): what a negative control publishes. */
export function finalTable(ctl: LabController, target: Config): Generation {
  let fin: Generation = ctl.latest!;
  for (let i = 0; i < 10; i++) {
    const step = planNext({ config: target, latest: fin, connections: () => 0, now: Date.now() });
    if (!step.next) break;
    fin = step.next;
  }
  return fin;
}

/** Negative control: publishes `fin` at once, waits past the echo timeout, and requires broken connections on `tw`;
 *  returns the diagnostic line. */
export async function publishBreaks(
  ctl: LabController,
  tw: Traffic,
  fin: Generation,
  what: string,
): Promise<string> {
  await ctl.publish({ ...fin, number: ctl.latest!.number + 1 }, `negative control: ${what}`);
  await sleep(4500);
  const c = await tw.report();
  assert.ok(c.broken > 0, 'moving slots without phases and second chance must break connections');
  return `negative control: ${c.broken} of ${c.opened} broken (${JSON.stringify(c.brokenByReason)})`;
}
