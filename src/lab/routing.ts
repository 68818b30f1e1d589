// The lab's BGP (routing `bgp`, docs/design/routing.md): one BIRD in the router namespace with a session to every
// gateway, one BIRD in every gateway namespace, BFD on every session. Config files, control sockets and logs live under
// `<runDir>/bird/`, pid files under `<runDir>/pids/bird-<who>.pid` (labDown kills them like any lab process). The
// agents announce (`--bird-socket`); the planners fence by shutting the gateway's session on the router.

import { mkdirSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { SluiceError } from '../model/errors.ts';
import {
  type BfdTimers,
  gatewayBirdConfig,
  parseBfdSessions,
  parseBirdProtocols,
  routerBirdConfig,
} from '../routing/bird.ts';
import { type LabConfig, ROUTER_UNDERLAY_IP, underlayIp6 } from './config.ts';
import { run, startInNetns } from './exec.ts';

export const LAB_ROUTER_AS = 65000;
export const LAB_GATEWAY_AS = 65001;

/** Who runs a BIRD: the router or a gateway (by name). */
export type BirdOwner = 'router' | string;

export interface LabGatewayRef {
  readonly name: string;
  readonly netns: string;
  readonly tunnelIp: string;
}

export function birdDir(runDir: string): string {
  return `${runDir}/bird`;
}
export function birdSocket(runDir: string, who: BirdOwner): string {
  return `${birdDir(runDir)}/${who}.ctl`;
}
export function birdPidFile(runDir: string, who: BirdOwner): string {
  return `${runDir}/pids/bird-${who}.pid`;
}

/** The router's BGP protocol for a gateway (`birdc disable <it>` shuts the session: the lab's fence). */
export function routerPeerName(gateway: string): string {
  return gateway.replaceAll('-', '_');
}

function confPath(runDir: string, who: BirdOwner): string {
  return `${birdDir(runDir)}/${who}.conf`;
}

/** Writes the router's config (also to change BFD on a running lab: then `birdc configure`). */
export function writeRouterBirdConfig(
  runDir: string,
  config: LabConfig,
  gateways: readonly LabGatewayRef[],
  bfd?: BfdTimers | false,
): string {
  mkdirSync(birdDir(runDir), { recursive: true });
  const path = confPath(runDir, 'router');
  const text = routerBirdConfig({
    routerId: ROUTER_UNDERLAY_IP,
    localAs: LAB_ROUTER_AS,
    peers: gateways.map((g) => ({ name: routerPeerName(g.name), ip: g.tunnelIp, as: LAB_GATEWAY_AS })),
    vips: config.vips,
    bfd,
    logFile: `${birdDir(runDir)}/router.log`,
  });
  writeFileSync(path, text);
  return path;
}

function writeGatewayBirdConfig(runDir: string, config: LabConfig, gw: LabGatewayRef): string {
  mkdirSync(birdDir(runDir), { recursive: true });
  const path = confPath(runDir, gw.name);
  writeFileSync(
    path,
    gatewayBirdConfig({
      localIp: gw.tunnelIp,
      localIp6: underlayIp6(gw.tunnelIp),
      localAs: LAB_GATEWAY_AS,
      routerIp: ROUTER_UNDERLAY_IP,
      routerAs: LAB_ROUTER_AS,
      vips: config.vips,
      logFile: `${birdDir(runDir)}/${gw.name}.log`,
    }),
  );
  return path;
}

/** Starts one BIRD in the foreground of its namespace (detached from us; pid file). */
function startBird(runDir: string, netns: string, who: BirdOwner, conf: string): number {
  return startInNetns(netns, 'bird', ['-f', '-c', conf, '-s', birdSocket(runDir, who)], {
    pidFile: birdPidFile(runDir, who),
    logFile: `${birdDir(runDir)}/${who}.out`,
  });
}

/** Starts the router's BIRD. */
export function startRouterBird(
  runDir: string,
  config: LabConfig,
  routerNetns: string,
  gateways: readonly LabGatewayRef[],
): number {
  return startBird(runDir, routerNetns, 'router', writeRouterBirdConfig(runDir, config, gateways));
}

/** Starts a gateway's BIRD (also to restart it): its VIP routes start disabled until its agent announces. */
export function startGatewayBird(runDir: string, config: LabConfig, gw: LabGatewayRef): number {
  return startBird(runDir, gw.netns, gw.name, writeGatewayBirdConfig(runDir, config, gw));
}

/** One `birdc` call on a lab BIRD, with a deadline. */
export async function labBirdc(runDir: string, who: BirdOwner, args: readonly string[]): Promise<string> {
  const r = await run('birdc', ['-s', birdSocket(runDir, who), ...args], { timeoutMs: 5000 });
  return r.stdout;
}

export interface GatewayRouting {
  /** The router's BGP session with this gateway: Established, Active, Connect, down (fenced), ... */
  readonly bgp: string;
  /** The router's BFD session with it: Up, Down, Init, or `-` (none). */
  readonly bfd: string;
}

/** The router's view of every gateway's session; unreadable (no BIRD) = {}. */
export async function routerView(
  runDir: string,
  gateways: readonly LabGatewayRef[],
): Promise<Record<string, GatewayRouting>> {
  let protocols: ReturnType<typeof parseBirdProtocols>;
  let sessions: ReturnType<typeof parseBfdSessions>;
  try {
    protocols = parseBirdProtocols(await labBirdc(runDir, 'router', ['show', 'protocols']));
    sessions = parseBfdSessions(await labBirdc(runDir, 'router', ['show', 'bfd', 'sessions']));
  } catch {
    return {};
  }
  const out: Record<string, GatewayRouting> = {};
  for (const g of gateways) {
    const p = protocols.find((x) => x.name === routerPeerName(g.name));
    out[g.name] = {
      bgp: p === undefined ? '-' : p.info.split(/\s+/)[0] || p.state,
      bfd: sessions.find((s) => s.ip === g.tunnelIp)?.state ?? '-',
    };
  }
  return out;
}

/** Waits until the router has an established session with every gateway (BFD up too, unless it is off). */
export async function waitForSessions(
  runDir: string,
  gateways: readonly LabGatewayRef[],
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let view: Record<string, GatewayRouting> = {};
  while (Date.now() < deadline) {
    view = await routerView(runDir, gateways);
    if (gateways.every((g) => view[g.name]?.bgp === 'Established' && view[g.name]?.bfd !== 'Down')) return;
    await sleep(100);
  }
  throw new SluiceError(
    'SLUICE_E_LAB_COMMAND',
    `BGP sessions not established after ${timeoutMs} ms: ${JSON.stringify(view)}`,
  );
}

/** `bgp` routing: starts the router's BIRD and every gateway's, and waits until every session is up. */
export async function startLabRouting(
  runDir: string,
  config: LabConfig,
  routerNetns: string,
  nodes: readonly (LabGatewayRef & { readonly role: string })[],
): Promise<void> {
  if (config.routing !== 'bgp') return;
  const gateways = nodes.filter((n) => n.role === 'gateway');
  startRouterBird(runDir, config, routerNetns, gateways);
  for (const g of gateways) startGatewayBird(runDir, config, g);
  await waitForSessions(runDir, gateways);
}
