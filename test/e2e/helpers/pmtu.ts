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

/** Locks the lab router's routes to the client at a smaller MTU than the backends' 1500 (1400 IPv4, 1280 IPv6), so
 *  a backend's full-size segment to the client draws a fragmentation-needed / packet-too-big addressed to the VIP.
 *  Returns the undo. */
export async function lockClientMtu(
  routerExec: (cmd: string, args: readonly string[]) => Promise<unknown>,
  client: { readonly ip: string; readonly ip6: string },
): Promise<() => Promise<void>> {
  const routes = [
    ['-4', `${client.ip}/32`, '1400'],
    ['-6', `${client.ip6}/128`, '1280'],
  ] as const;
  for (const [fam, dst, mtu] of routes)
    await routerExec('ip', [fam, 'route', 'replace', dst, 'dev', 'brc', 'mtu', 'lock', mtu]);
  return async () => {
    for (const [fam, dst] of routes) await routerExec('ip', [fam, 'route', 'del', dst, 'dev', 'brc']);
  };
}

/** Waits (3 s at most) until no backend in `backendNs` holds a socket with the client, forgets cached path MTUs,
 *  and checks that both are gone: a transfer after this has to discover the path MTU itself. */
export async function cleanPaths(
  backendNs: readonly string[],
  client: { readonly ip: string; readonly ip6: string },
  when: string,
): Promise<void> {
  const paths = () => Promise.all(backendNs.map((ns) => pathState(ns, client.ip, client.ip6)));
  for (let i = 0; i < 30 && (await paths()).some((p) => p.sockets.length > 0); i++)
    await new Promise((r) => setTimeout(r, 100));
  await Promise.all(backendNs.map((ns) => flushPathMtu(ns)));
  const left = await paths();
  if (!left.every((p) => p.sockets.length === 0 && p.mtu4 === null && p.mtu6 === null))
    throw new Error(`${when}: the backends still hold state towards the client: ${JSON.stringify(left)}`);
}

export interface TransferResult {
  readonly done: boolean;
  readonly got: number;
  readonly ms: number;
  readonly error?: string;
}

/** From `clientNs`, one connection to vip:80 (a lab backend: greeting line, then echo) that sends `total` bytes and
 *  reads the echo, then resets (a stalled echo left in CLOSE-WAIT would keep retransmitting full-size segments and
 *  teach the backend the path MTU before the next transfer); gives up after `ms`. */
export async function echoTransfer(
  clientNs: string,
  vip: string,
  total: number,
  ms: number,
): Promise<TransferResult> {
  const script = `const net=require('net');const s=net.connect({host:process.argv[1],port:80});
    const total=+process.argv[2];let got=-1;const t0=Date.now();
    const end=(o)=>{s.resetAndDestroy();process.stdout.write(JSON.stringify({...o,got,ms:Date.now()-t0}));process.exit(0)};
    s.on('data',(d)=>{if(got<0){const i=d.indexOf(10);if(i<0)return;got=d.length-i-1;s.write(Buffer.alloc(total,120));}
      else got+=d.length;if(got>=total)end({done:true});});
    s.on('error',(e)=>end({done:false,error:e.message}));setTimeout(()=>end({done:false}),+process.argv[3]);`;
  const r = await nsRun(clientNs, process.execPath, ['-e', script, vip, String(total), String(ms)]);
  return JSON.parse(r.stdout) as TransferResult;
}
