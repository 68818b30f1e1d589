// A lab backend ("VM"): greets each TCP connection with `<name>\n`, then echoes every byte back; with --udp it also
// answers each UDP datagram with `<name>`; with --http-port P it answers every HTTP GET on port P with 200 and
// `<name>\n` (a health endpoint; 503 while refusing, below). Listens on all addresses (IPv4 and IPv6) of its
// namespace.
//
//   ip netns exec sl-host1-b1 node --import tsx src/lab/backend-server.ts --name host1-b1 --port 80 [--udp] \
//     [--http-port 8081]
//
// Self-contained (node: builtins only) so the lab can run it as plain JS (see scripts.ts). Memory stays small:
// no buffering beyond what the socket holds, and the lab starts it with a small heap.

import { createSocket, type Socket as DgramSocket } from 'node:dgram';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const name = arg('--name');
const port = Number(arg('--port') ?? '80');
const udp = process.argv.includes('--udp');
const httpPort = arg('--http-port') === undefined ? undefined : Number(arg('--http-port'));
const validPort = (p: number) => Number.isInteger(p) && p >= 1 && p <= 65535;
if (
  !name ||
  !/^[A-Za-z0-9_.-]{1,64}$/.test(name) ||
  !validPort(port) ||
  (httpPort !== undefined && (!validPort(httpPort) || httpPort === port))
) {
  process.stderr.write('usage: backend-server --name NAME --port PORT [--udp] [--http-port P]\n');
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
// established ones keep working, as an overloaded server or a misfiring probe looks; the UDP socket closes too (the
// kernel answers datagrams with ICMP port-unreachable) and HTTP answers 503. SIGHUP: accept again.
let refusing = false;
process.on('SIGUSR1', () => {
  if (refusing) return;
  refusing = true;
  server.close();
  udpSocket?.close();
  udpSocket = undefined;
  process.stdout.write(`backend ${name}: refusing new tcp connections and udp (open=${open})\n`);
});
process.on('SIGHUP', () => {
  if (!refusing) return;
  refusing = false;
  listen();
  if (udp) udpSocket = bindUdp();
});

/** Answers each datagram with the backend's name. */
function bindUdp(): DgramSocket {
  const reply = Buffer.from(name!);
  const sock6 = createSocket({ type: 'udp6', ipv6Only: false });
  sock6.on('message', (_msg, rinfo) => {
    sock6.send(reply, rinfo.port, rinfo.address);
  });
  sock6.on('error', (err) => {
    process.stderr.write(`backend ${name}: udp: ${err.message}\n`);
    process.exit(1);
  });
  sock6.bind(port, '::', () => process.stdout.write(`backend ${name}: listening on udp port ${port}\n`));
  return sock6;
}
let udpSocket: DgramSocket | undefined = udp ? bindUdp() : undefined;

if (httpPort !== undefined) {
  const web = createHttpServer((_req, res) => {
    res.statusCode = refusing ? 503 : 200;
    res.end(`${name}\n`);
  });
  web.on('error', (err) => {
    process.stderr.write(`backend ${name}: http: ${err.message}\n`);
    process.exit(1);
  });
  web.listen({ port: httpPort, host: '::', ipv6Only: false }, () =>
    process.stdout.write(`backend ${name}: listening on http port ${httpPort}\n`),
  );
}

process.on('SIGUSR2', () => process.stdout.write(`backend ${name}: open=${open} total=${total}\n`));
process.on('SIGTERM', () => process.exit(0));
