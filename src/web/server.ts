// The daemons' HTTP endpoint: `GET /metrics` (Prometheus text from a prom-client Registry) and `GET /status`
// (JSON from a callback that reads only what the daemon applied or published: STYLE item 14). node:http, no
// framework: two routes do not need one.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { SluiceError } from '../model/errors.ts';

export interface MetricsServer {
  readonly server: Server;
  /** `host:port` actually bound (port 0 picks a free one). */
  readonly address: string;
  close(): Promise<void>;
}

/** Parses `host:port` (`[v6]:port` allowed). */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || !Number.isInteger(port) || port < 0 || port > 65535)
    throw new SluiceError('SLUICE_E_USAGE', `--metrics: expected host:port, got "${text}"`);
  return { host: m[1] ?? m[2]!, port };
}

export async function startMetricsServer(
  listen: string,
  registry: Registry,
  status: () => unknown,
): Promise<MetricsServer> {
  const { host, port } = parseListen(listen);
  const server = createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && url === '/metrics') {
      registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(text);
        },
        (e: unknown) => {
          res.writeHead(500);
          res.end(String(e));
        },
      );
      return;
    }
    if (req.method === 'GET' && (url === '/status' || url === '/')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(`${JSON.stringify(status(), null, 2)}\n`);
      return;
    }
    res.writeHead(404);
    res.end('not found\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const a = server.address() as AddressInfo;
  return {
    server,
    address: a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`,
    close: () => new Promise((r) => server.close(() => r())),
  };
}
