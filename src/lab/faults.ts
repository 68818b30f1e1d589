// Real faults of a lab gateway, no withdraw first (the e2e routing test and bench/failover.ts inject them):
// - kill:   SIGKILL every process of the gateway at once (ovs-vswitchd, its agent, its BIRD);
// - cut:    its link down (the fabric side of its veth: nothing passes either way, like a pulled cable);
// - freeze: SIGSTOP every process (a hung machine: it holds its lease and its sockets, answers nothing).
// Each returns how to heal it: restart the processes, bring the link up, SIGCONT. Only pids the lab started (pid
// files of the lab and its control plane) are signalled.

import { SluiceError } from '../model/errors.ts';
import { type ControlPlane, startAgent } from './control-plane.ts';
import { nsRun, readPidFile } from './exec.ts';
import { birdPidFile, startGatewayBird } from './routing.ts';
import type { Lab } from './topology.ts';

export type GatewayFaultKind = 'kill' | 'cut' | 'freeze';
export const GATEWAY_FAULTS: readonly GatewayFaultKind[] = ['kill', 'cut', 'freeze'];

export interface GatewayFault {
  readonly kind: GatewayFaultKind;
  readonly gateway: string;
  /** The pids signalled (none for a cut). */
  readonly pids: readonly number[];
  /** performance.now() right after the fault took effect. */
  readonly at: number;
  /** Undoes the fault (restarts what was killed). The gateway rejoins ECMP once its agent announces again. */
  heal(): Promise<void>;
}

/** The gateway's processes: ovs-vswitchd, its agent and (routing `bgp`) its BIRD; throws if one is missing. */
export function gatewayPids(lab: Lab, cp: ControlPlane, gateway: string): number[] {
  const want: Array<[string, number | undefined]> = [
    ['ovs-vswitchd', lab.node(gateway).vswitchdPid()],
    ['agent', cp.pid(`agent-${gateway}`)],
  ];
  if (lab.routing === 'bgp') want.push(['bird', readPidFile(birdPidFile(lab.facts.runDir, gateway))]);
  const missing = want.filter(([, p]) => p === undefined).map(([n]) => n);
  if (missing.length)
    throw new SluiceError('SLUICE_E_LAB_COMMAND', `${gateway}: no running ${missing.join(', ')}`);
  return want.map(([, p]) => p as number);
}

/**
 * Cuts (`down`) or restores gw's link at the fabric: its veth end there goes down. The switch keeps gw's MAC on that
 * port meanwhile (a static entry): otherwise the bridge forgets it and floods gw's frames to every port. Before
 * 2026-12-05 the other gateway forwarded such copies (its VIP flows did not match the destination MAC), which hid
 * the cut; it drops them now (PHY_VIP_NOT_MINE), and the entry keeps the cut a plain cut.
 */
async function setLink(lab: Lab, gateway: string, state: 'up' | 'down'): Promise<void> {
  const node = lab.node(gateway);
  // The fabric namespace names each node's veth end after the node (topology.ts).
  const port = node.name;
  const fdb = ['fdb', state === 'down' ? 'replace' : 'del', node.brPhyMac, 'dev', port, 'master', 'static'];
  const link = ['link', 'set', 'dev', port, state];
  const steps: Array<[string, string[]]> =
    state === 'down'
      ? [
          ['bridge', fdb],
          ['ip', link],
        ]
      : [
          ['ip', link],
          ['bridge', fdb],
        ];
  for (const [cmd, args] of steps) await nsRun(lab.facts.fabricNetns, cmd, args, { timeoutMs: 5000 });
}

/** Injects `kind` on `gateway` now. */
export async function injectGatewayFault(
  lab: Lab,
  cp: ControlPlane,
  gateway: string,
  kind: GatewayFaultKind,
): Promise<GatewayFault> {
  if (kind === 'cut') {
    await setLink(lab, gateway, 'down');
    return {
      kind,
      gateway,
      pids: [],
      at: performance.now(),
      heal: async () => void (await setLink(lab, gateway, 'up')),
    };
  }
  const pids = gatewayPids(lab, cp, gateway);
  for (const p of pids) process.kill(p, kind === 'kill' ? 'SIGKILL' : 'SIGSTOP');
  const at = performance.now();
  const heal =
    kind === 'freeze'
      ? async () => {
          for (const p of pids) process.kill(p, 'SIGCONT');
        }
      : async () => {
          const node = lab.node(gateway);
          await node.restartVswitchd();
          if (lab.routing === 'bgp') startGatewayBird(lab.facts.runDir, lab.config, node);
          startAgent(cp, gateway);
        };
  return { kind, gateway, pids, at, heal };
}

/** Polls the router's kernel routes (every ~10 ms) until `gateway` is out of `vip`'s ECMP route, or `withinMs` after
 *  `since` (performance.now()). Returns the ms from `since` (undefined: still there). */
export async function waitEcmpWithout(
  lab: Lab,
  vip: string,
  gateway: string,
  since: number,
  withinMs: number,
): Promise<number | undefined> {
  while (performance.now() - since < withinMs) {
    if (!(await lab.ecmpGateways())[vip]?.includes(gateway)) return performance.now() - since;
    await new Promise((r) => setTimeout(r, 10));
  }
  return undefined;
}

/**
 * Waits until every gateway of the lab is in `vip`'s ECMP route again (after a heal) and, with BGP, the router's BFD
 * session with each is Up: BGP can be Established and the route back before BFD is, and until then only the BGP hold
 * timer (3 s) would notice the next fault (measured once: 2.5 s instead of ~0.3 s). Throws after `timeoutMs`.
 */
export async function waitEcmpAll(lab: Lab, vip: string, timeoutMs = 60_000): Promise<void> {
  const want = lab.gateways.map((g) => g.name).sort();
  const deadline = Date.now() + timeoutMs;
  let state = '';
  while (Date.now() < deadline) {
    const now = [...((await lab.ecmpGateways())[vip] ?? [])].sort();
    const view = await lab.routingView();
    const bfdUp = lab.routing !== 'bgp' || want.every((g) => view[g]?.bfd === 'Up');
    state = `ECMP over ${JSON.stringify(now)}, sessions ${JSON.stringify(view)}`;
    if (JSON.stringify(now) === JSON.stringify(want) && bfdUp) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new SluiceError(
    'SLUICE_E_LAB_COMMAND',
    `${vip}: not every gateway back in ECMP with BFD up ${timeoutMs} ms after the heal: ${state}`,
  );
}
