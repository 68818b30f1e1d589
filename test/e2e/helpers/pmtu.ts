// What a backend namespace remembers about the path to one client, for the Path MTU tests (dataplane): the path MTU
// the kernel cached from an ICMP error (an IPv4 next-hop exception or an IPv6 cached route, shown by `ip route get`
// as `mtu N`) and the TCP sockets that still have data to send to that client. A backend that still (re)transmits
// to the client learns the path MTU from the next error, so a test that needs a backend to discover it must first
// see both empty. A socket with at most LEAK_FREE_QUEUE bytes queued (an idle one, or an earlier test's echo of a few
// bytes) cannot send a packet above the smallest path MTU here (IPv6 1280 >= 1200 + 40 IPv6 + 32 TCP header bytes),
// so it cannot draw an error and does not count.

import { nsRun } from '../../../src/lab/exec.ts';

export type PathState = {
  /** The path MTU cached towards the client's IPv4 / IPv6 address, or null when none is. */
  readonly mtu4: number | null;
  readonly mtu6: number | null;
  /** `ss` lines of TCP sockets with either client address and more than LEAK_FREE_QUEUE bytes queued to send. */
  readonly sockets: readonly string[];
};

/** Bytes a socket may hold queued without being able to send a segment that draws an ICMP error. */
const LEAK_FREE_QUEUE = 1200;

const cachedMtu = (out: string): number | null => {
  const m = /\bmtu (\d+)/.exec(out);
  return m ? Number(m[1]) : null;
};

/** The path state of namespace `netns` towards a client at `ip4` / `ip6`. */
export async function pathState(netns: string, ip4: string, ip6: string): Promise<PathState> {
  const [r4, r6, ss] = await Promise.all([
    nsRun(netns, 'ip', ['-4', 'route', 'get', ip4]),
    nsRun(netns, 'ip', ['-6', 'route', 'get', ip6]),
    nsRun(netns, 'ss', ['-Htna']),
  ]);
  const peer = [`${ip4}]:`, ` ${ip4}:`, `[${ip6}]:`];
  const sockets = ss.stdout
    .split('\n')
    .filter((l) => Number(l.split(/\s+/)[2]) > LEAK_FREE_QUEUE && peer.some((a) => l.includes(a)));
  return { mtu4: cachedMtu(r4.stdout), mtu6: cachedMtu(r6.stdout), sockets };
}

/** Forgets every cached path MTU of namespace `netns` (IPv4 exceptions and IPv6 cached routes). */
export async function flushPathMtu(netns: string): Promise<void> {
  await nsRun(netns, 'ip', ['-4', 'route', 'flush', 'cache']);
  await nsRun(netns, 'ip', ['-6', 'route', 'flush', 'cache']);
}
