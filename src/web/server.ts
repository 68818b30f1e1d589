// The daemons' HTTP endpoint: `GET /metrics` (Prometheus text from a prom-client Registry) and `GET /status`
// (JSON from a callback that reads only what the daemon applied or published, never what was asked), plus any extra
// read-only routes a daemon adds (the planner's status page). node:http, no framework: a few routes do not need one.
//
// A daemon's HTTP endpoint must never take the daemon down: every handler runs inside try/catch (a failure is a
// 500 and the server keeps serving), connections are capped, and slow or idle clients are timed out.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { SluiceError } from '../model/errors.ts';

export interface MetricsServer {
  readonly server: Server;
  /** `host:port` actually bound (port 0 picks a free one). */
  readonly address: string;
  close(): Promise<void>;
}

/** What a route returns: a status code, a content type and a body. */
export interface RouteResponse {
  readonly status?: number;
  readonly type: string;
  readonly body: string;
  /** Extra headers (e.g. cache-control). */
  readonly headers?: Readonly<Record<string, string>>;
}

/** Extra GET routes by path; a route may throw or reject (the client gets a 500, the server keeps serving). */
export type Routes = Readonly<Record<string, () => RouteResponse | Promise<RouteResponse>>>;

export interface ServerLimits {
  /** Concurrent connections; more are refused by the kernel-level accept-and-close of node:http. Default 64. */
  readonly maxConnections?: number;
  /** Whole request (headers included) must arrive within this, ms. Default 10 000. */
  readonly requestTimeoutMs?: number;
  /** Headers must arrive within this, ms. Default 5 000. */
  readonly headersTimeoutMs?: number;
  /** An idle keep-alive connection is closed after this, ms. Default 5 000. */
  readonly keepAliveTimeoutMs?: number;
  /** A socket with no activity for this long is destroyed, ms. Default 30 000. */
  readonly socketTimeoutMs?: number;
  /** Called when a handler fails (the daemon logs it). */
  readonly onError?: (route: string, e: unknown) => void;
}

/** Parses `host:port` (`[v6]:port` allowed). */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || !Number.isInteger(port) || port < 0 || port > 65535)
    throw new SluiceError('SLUICE_E_USAGE', `--metrics: expected host:port, got "${text}"`);
  return { host: m[1] ?? m[2]!, port };
}

/** The routes every daemon serves: /metrics, /status (JSON); `extra` adds or overrides. */
function allRoutes(registry: Registry, status: () => unknown, extra: Routes): Routes {
  return {
    '/metrics': async () => ({ type: registry.contentType, body: await registry.metrics() }),
    '/status': () => ({ type: 'application/json', body: `${JSON.stringify(status(), null, 2)}\n` }),
    '/': () => ({ type: 'application/json', body: `${JSON.stringify(status(), null, 2)}\n` }),
    ...extra,
  };
}

function send(res: ServerResponse, r: RouteResponse): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(r.status ?? 200, {
    'content-type': r.type,
    'x-content-type-options': 'nosniff',
    ...r.headers,
  });
  res.end(r.body);
}

async function handle(req: IncomingMessage, res: ServerResponse, routes: Routes, limits: ServerLimits) {
  const url = (req.url ?? '/').split('?')[0]!;
  const route = Object.hasOwn(routes, url) ? routes[url] : undefined;
  if (req.method !== 'GET' || route === undefined) {
    send(res, { status: req.method === 'GET' ? 404 : 405, type: 'text/plain', body: 'not found\n' });
    return;
  }
  try {
    send(res, await route());
  } catch (e) {
    limits.onError?.(url, e);
    send(res, {
      status: 500,
      type: 'text/plain; charset=utf-8',
      body: `internal error serving ${url}: ${(e as Error)?.message ?? String(e)}\n`,
    });
  }
}

export async function startMetricsServer(
  listen: string,
  registry: Registry,
  status: () => unknown,
  extra: Routes = {},
  limits: ServerLimits = {},
): Promise<MetricsServer> {
  const { host, port } = parseListen(listen);
  const routes = allRoutes(registry, status, extra);
  const server = createServer({ requestTimeout: limits.requestTimeoutMs ?? 10_000 }, (req, res) => {
    handle(req, res, routes, limits).catch(() => res.destroy());
  });
  server.maxConnections = limits.maxConnections ?? 64;
  server.headersTimeout = limits.headersTimeoutMs ?? 5_000;
  server.keepAliveTimeout = limits.keepAliveTimeoutMs ?? 5_000;
  server.setTimeout(limits.socketTimeoutMs ?? 30_000, (socket) => socket.destroy());
  // A client error (malformed request, reset) is that client's problem, never the daemon's.
  server.on('clientError', (_e, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const a = server.address() as AddressInfo;
  return {
    server,
    address: a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
