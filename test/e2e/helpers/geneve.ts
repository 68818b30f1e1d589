// Shared by e2e tests (not a test file): a crafted-Geneve sender and a before/after snapshot of a bridge.

import { parseDumpFlows } from '../../../src/flowset/text.ts';
import type { BridgeState } from '../../../src/flowset/types.ts';
import { nsRun } from '../../../src/lab/exec.ts';
import type { Runner } from '../../../src/openflow/runner.ts';

/**
 * A node script (argv: source IP, destination IP, tun_metadata0, tun_metadata1, tun_metadata2, TCP flags,
 * first source port) that sends
 * ten Geneve packets to UDP 6081 with the three sluice options around an Ethernet/IPv4/TCP segment from
 * 10.200.0.11:<source port>+i to 203.0.113.10:80, checksums computed.
 */
export const GENEVE_SENDER = `
const dgram = require('node:dgram');
const [src, dst, o0, o1, o2, flags, sport] = process.argv.slice(1);
function sum(buf, acc = 0) { for (let i = 0; i < buf.length; i += 2) acc += (buf[i] << 8) + (buf[i + 1] ?? 0); return acc; }
function fold(acc) { while (acc > 0xffff) acc = (acc & 0xffff) + (acc >>> 16); return (~acc) & 0xffff; }
const ip4 = (s) => Buffer.from(s.split('.').map(Number));
function packet(sport) {
  const saddr = ip4('10.200.0.11'), daddr = ip4('203.0.113.10');
  const tcp = Buffer.alloc(20);
  tcp.writeUInt16BE(sport, 0); tcp.writeUInt16BE(80, 2); tcp.writeUInt32BE(12345, 4);
  tcp[12] = 5 << 4; tcp[13] = Number(flags); tcp.writeUInt16BE(64240, 14);
  const pseudo = Buffer.concat([saddr, daddr, Buffer.from([0, 6, 0, 20])]);
  tcp.writeUInt16BE(fold(sum(tcp, sum(pseudo))), 16);
  const ip = Buffer.alloc(20);
  ip[0] = 0x45; ip.writeUInt16BE(40, 2); ip[8] = 64; ip[9] = 6; saddr.copy(ip, 12); daddr.copy(ip, 16);
  ip.writeUInt16BE(fold(sum(ip)), 10);
  const eth = Buffer.from('02000a00010b' + '02000a00aa01' + '0800', 'hex');
  const opt = (type, value) => { const o = Buffer.alloc(8); o.writeUInt16BE(0xffff, 0); o[2] = type; o[3] = 1; o.writeUInt32BE(value >>> 0, 4); return o; };
  const gnv = Buffer.alloc(8);
  gnv[0] = 6; gnv.writeUInt16BE(0x6558, 2);
  return Buffer.concat([gnv, opt(0x80, Number(o0)), opt(0x81, Number(o1)), opt(0x82, Number(o2)), eth, ip, tcp]);
}
const s = dgram.createSocket('udp4');
s.bind({ address: src }, async () => {
  for (let i = 0; i < 10; i++) await new Promise((r) => s.send(packet(Number(sport) + i), 6081, dst, r));
  s.close();
});
`;

/** What the crafted packets carry: slot 0 of load balancer `lbId`, the hop counter, the second-chance host. */
export interface GenevePackets {
  readonly lbId: number;
  /** Hop counter (tun_metadata1); 0 = as a gateway sends. */
  readonly counter: number;
  /** Second-chance host's tunnel IPv4 address (tun_metadata2); none = 0. */
  readonly secondHost?: string;
  /** Inner TCP flags: 0x02 SYN, 0x10 ACK. */
  readonly flags: number;
  /** Inner source port of the first packet (the ten use the next ten). */
  readonly firstPort: number;
}

/** Runs GENEVE_SENDER in `netns`: ten crafted packets from `src` to UDP 6081 on `dst`. */
export async function sendGeneve(netns: string, src: string, dst: string, p: GenevePackets): Promise<void> {
  const second = (p.secondHost ?? '0.0.0.0').split('.').reduce((a, x) => a * 256 + Number(x), 0);
  const options = [p.lbId * 0x10000, p.counter, second, p.flags, p.firstPort].map(String);
  await nsRun(netns, process.execPath, ['-e', GENEVE_SENDER, src, dst, ...options]);
}

/** `want` plus one flow with `actions` in a table sluice does not use: a bundle for ovs-vswitchd to reject. */
export function withForeignFlow(want: BridgeState, actions: string): BridgeState {
  return { ...want, flows: [...want.flows, { ...want.flows[0]!, table: 40, match: 'ip', actions }] };
}

/** Everything installed on a bridge, volatile counters stripped, sorted: for before/after comparisons. */
export async function bridgeSnapshot(node: Runner, bridge: string): Promise<string> {
  const flows = parseDumpFlows((await node.ofctl(bridge, ['dump-flows'])).stdout)
    .map((f) => `${f.cookie.toString(16)} ${f.table} ${f.priority} ${f.match} ${f.actions}`)
    .sort();
  const groups = (await node.ofctl(bridge, ['dump-groups'])).stdout.split('\n').slice(1).sort();
  return [...flows, ...groups].join('\n');
}
