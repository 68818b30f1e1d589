// A lab backend ("VM"): greets each TCP connection with `<name>\n`, then echoes every byte back; with --udp it also
// answers each UDP datagram with `<name>`. Listens on all addresses (IPv4 and IPv6) of its namespace.
//
//   ip netns exec sl-host1-b1 node --import tsx src/lab/backend-server.ts --name host1-b1 --port 80 [--udp]
//
// Self-contained (node: builtins only) so the lab can run it as plain JS (see scripts.ts). Memory stays small:
// no buffering beyond what the socket holds, and the lab starts it with a small heap.

import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const name = arg('--name');
const port = Number(arg('--port') ?? '80');
const udp = process.argv.includes('--udp');
if (!name || !/^[A-Za-z0-9_.-]{1,64}$/.test(name) || !Number.isInteger(port) || port < 1 || port > 65535) {
  process.stderr.write('usage: backend-server --name NAME --port PORT [--udp]\n');
  process.exit(2);
}

let open = 0;
let total = 0;
const server = createServer({ noDelay: true }, (sock) => {
  open++;
  total++;
  sock.on('error', () => {});
  sock.on('close', () => {
    open--;
  });
  sock.write(`${name}\n`);
  sock.pipe(sock);
});
server.on('error', (err) => {
  process.stderr.write(`backend ${name}: tcp: ${err.message}\n`);
  process.exit(1);
});
const listen = () =>
  server.listen({ port, host: '::', ipv6Only: false, backlog: 4096 }, () => {
    process.stdout.write(`backend ${name}: listening on tcp port ${port}\n`);
  });
listen();

// SIGUSR1: refuse new connections (close the listening socket: new SYNs are reset, health probes fail) while the
// established ones keep working, as an overloaded server or a misfiring probe looks; SIGHUP: accept again.
process.on('SIGUSR1', () => {
  if (!server.listening) return;
  server.close();
  process.stdout.write(`backend ${name}: refusing new tcp connections (open=${open})\n`);
});
process.on('SIGHUP', () => {
  if (!server.listening) listen();
});

if (udp) {
  const reply = Buffer.from(name);
  const sock6 = createSocket({ type: 'udp6', ipv6Only: false });
  sock6.on('message', (_msg, rinfo) => {
    sock6.send(reply, rinfo.port, rinfo.address);
  });
  sock6.on('error', (err) => {
    process.stderr.write(`backend ${name}: udp: ${err.message}\n`);
    process.exit(1);
  });
  sock6.bind(port, '::', () => process.stdout.write(`backend ${name}: listening on udp port ${port}\n`));
}

process.on('SIGUSR2', () => process.stdout.write(`backend ${name}: open=${open} total=${total}\n`));
process.on('SIGTERM', () => process.exit(0));
