// A gateway agent's hold on its own BIRD (docs/design/routing.md): announce = enable the static protocols that hold
// the VIP routes, withdraw = disable them; BGP then adds or removes this gateway on the upstream router. Every call
// is `birdc -s <socket> ...` with arguments (no shell) and a deadline.

import { execFile } from 'node:child_process';
import { parseBfdSessions, parseBirdProtocols, VIP_PROTOCOLS } from '../routing/bird.ts';

export interface RoutingState {
  /** BGP sessions of this BIRD: name -> state (`Established`, `Active`, `down`...). */
  readonly bgp: Readonly<Record<string, string>>;
  /** BFD sessions: neighbour -> Up/Down/Init/AdminDown. */
  readonly bfd: Readonly<Record<string, string>>;
  /** The VIP routes are enabled (announced). */
  readonly announcing: boolean;
}

export class BirdControl {
  readonly socket: string;
  readonly timeoutMs: number;
  constructor(socket: string, timeoutMs = 3000) {
    this.socket = socket;
    this.timeoutMs = timeoutMs;
  }

  /** One birdc command; rejects on a non-zero exit, the deadline, or a reply that says it failed. */
  birdc(args: readonly string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile('birdc', ['-s', this.socket, ...args], { timeout: this.timeoutMs }, (err, stdout, stderr) => {
        const out = `${stdout}`;
        if (err || /^(Unable|syntax error)|There is no such protocol/m.test(out))
          reject(
            new Error(
              `birdc -s ${this.socket} ${args.join(' ')}: ${(stderr || out).trim() || (err as Error).message}`,
            ),
          );
        else resolve(out);
      });
    });
  }

  /** Enables the VIP routes (idempotent: "already enabled" is fine). */
  async announce(): Promise<void> {
    for (const p of Object.values(VIP_PROTOCOLS)) await this.birdc(['enable', p]);
  }

  /** Disables the VIP routes: BGP withdraws them from the router at once. */
  async withdraw(): Promise<void> {
    for (const p of Object.values(VIP_PROTOCOLS)) await this.birdc(['disable', p]);
  }

  async state(): Promise<RoutingState> {
    const protocols = parseBirdProtocols(await this.birdc(['show', 'protocols']));
    const sessions = parseBfdSessions(await this.birdc(['show', 'bfd', 'sessions']).catch(() => ''));
    const bgp: Record<string, string> = {};
    for (const p of protocols) if (p.proto === 'BGP') bgp[p.name] = p.info.split(/\s+/)[0] || p.state;
    const vips = protocols.filter((p) => (Object.values(VIP_PROTOCOLS) as string[]).includes(p.name));
    return {
      bgp,
      bfd: Object.fromEntries(sessions.map((s) => [s.ip, s.state])),
      announcing: vips.length > 0 && vips.every((p) => p.state === 'up'),
    };
  }
}

/** One line for status: `uplink Established, BFD 192.168.100.254 Up, announcing`. */
export function formatRoutingState(s: RoutingState): string {
  const bgp = Object.entries(s.bgp).map(([n, st]) => `${n} ${st}`);
  const bfd = Object.entries(s.bfd).map(([ip, st]) => `BFD ${ip} ${st}`);
  return [
    ...bgp,
    ...(bfd.length > 0 ? bfd : ['no BFD']),
    s.announcing ? 'announcing' : 'not announcing',
  ].join(', ');
}
