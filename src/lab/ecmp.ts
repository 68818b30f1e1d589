// The lab's ECMP commands: how a gateway leaves or rejoins the lab router's ECMP set, for the gateway agents'
// `--withdraw-cmd`/`--announce-cmd` and the planners' `--fence-cmd` (scripts/lab-ecmp.sh does the work).

import { fileURLToPath } from 'node:url';
import { SluiceError } from '../model/errors.ts';
import { underlayIp6 } from './config.ts';
import { birdSocket, routerPeerName } from './routing.ts';
import type { Lab } from './topology.ts';

/**
 * The lab's fencing commands for a gateway agent (`--withdraw-cmd` / `--announce-cmd`): scripts/lab-ecmp.sh removes or
 * adds the gateway's next hop of every VIP route on the lab router (bash + ip: fast even when the machine is loaded,
 * which matters: the withdrawal must finish within the planner's margin).
 */
export function labEcmpCommand(lab: Lab, gateway: string, action: 'withdraw' | 'announce'): string {
  const gw = lab.node(gateway);
  if (gw.role !== 'gateway') throw new SluiceError('SLUICE_E_USAGE', `${gateway} is not a gateway`);
  const script = fileURLToPath(new URL('../../scripts/lab-ecmp.sh', import.meta.url));
  const pairs = lab.config.vips.map(
    (v) => `${v.vip}=${v.family === 6 ? underlayIp6(gw.tunnelIp) : gw.tunnelIp}`,
  );
  const lock = `${lab.facts.runDir}/lab-ecmp.lock`;
  return ['bash', script, lock, lab.facts.router.netns, action, ...pairs].map(shellQuote).join(' ');
}

/**
 * BGP routing: shuts (`withdraw`, the planner's fence) or re-opens (`announce`, the agent's --announce-cmd after it
 * rejoined) the router's session with the gateway: `birdc -s <router socket> disable|enable <peer>`. A shut session
 * withdraws every route the gateway announced, whatever state the gateway is in.
 */
export function labRouterSessionCommand(lab: Lab, gateway: string, action: 'withdraw' | 'announce'): string {
  const gw = lab.node(gateway);
  if (gw.role !== 'gateway') throw new SluiceError('SLUICE_E_USAGE', `${gateway} is not a gateway`);
  const sock = birdSocket(lab.facts.runDir, 'router');
  return ['birdc', '-s', sock, action === 'withdraw' ? 'disable' : 'enable', routerPeerName(gateway)]
    .map(shellQuote)
    .join(' ');
}

/** One POSIX shell word for `s` (single-quoted; a `'` inside closes, escapes and reopens): paths with spaces stay
 *  one argument. */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}

/**
 * The lab's planner fence template (`sluice planner --fence-cmd`): a shell `case` on the gateway's name (`$1`, never
 * pasted into the text: see hook-command.ts) that runs labEcmpCommand(lab, gw, 'withdraw') for the gateway named
 * (and fails for any other name).
 */
export function labFenceTemplate(lab: Lab): string {
  const fence = lab.routing === 'bgp' ? labRouterSessionCommand : labEcmpCommand;
  const arms = lab.gateways.map((gw) => `${gw.name}) ${fence(lab, gw.name, 'withdraw')};;`);
  return `case "$1" in ${arms.join(' ')} *) echo "not a lab gateway: $1" >&2; exit 1;; esac`;
}
