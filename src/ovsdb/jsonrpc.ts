// One JSON-RPC 1.0 connection to an OVSDB server over a unix or TCP stream socket (RFC 7047 section 4).
// No reconnection here: client.ts owns the session (state machine, backoff, resync).
//
// RFC 7047 4: "request ... "method": <string>, "params": [<value>*], "id": <nonnull-json-value>"
//             "response ... "result": <value>, "error": <error>, "id": <the request's id>"
//             "notification ... "method": <string>, "params": [<value>*], "id": null"
// Both peers may send requests: ovsdb-server sends "echo" requests to keep the session alive and expects the
// reply to carry "the same params" (4.1.11).

import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { OvsdbError } from './errors.ts';
import { FramingError, JsonSplitter } from './framing.ts';

export type Remote =
  | { readonly kind: 'unix'; readonly path: string }
  | { readonly kind: 'tcp' | 'ssl'; readonly host: string; readonly port: number };

/**
 * The client's TLS credentials for `ssl:` remotes (PEM files, as `ovs-pki` writes them; read at every connect so a
 * renewed certificate is picked up): its private key and certificate (the server authorizes by the certificate's
 * CN) and the CA certificate the server's certificate must chain to. As in Open vSwitch, the server is verified
 * against the CA only, not against a host name.
 */
export interface TlsFiles {
  readonly privateKey: string;
  readonly certificate: string;
  readonly caCert: string;
}

/** Parses an ovsdb remote in the form ovs tools use: `unix:/path/to/sock`, `tcp:host:port` (`tcp:[::1]:port`) or
 *  `ssl:host:port`. */
export function parseRemote(s: string): Remote {
  if (s.startsWith('unix:')) {
    const path = s.slice(5);
    if (path === '') throw new OvsdbError('SLUICE_E_USAGE', `empty unix socket path in remote ${s}`);
    return { kind: 'unix', path };
  }
  const m = /^(tcp|ssl):(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(s);
  if (m !== null) {
    const port = Number(m[4]);
    if (port < 1 || port > 65535) throw new OvsdbError('SLUICE_E_USAGE', `bad port in remote ${s}`);
    return { kind: m[1] as 'tcp' | 'ssl', host: m[2] ?? m[3]!, port };
  }
  throw new OvsdbError(
    'SLUICE_E_USAGE',
    `unsupported OVSDB remote ${s} (use unix:/path, tcp:host:port or ssl:host:port)`,
  );
}

export function formatRemote(r: Remote): string {
  return r.kind === 'unix'
    ? `unix:${r.path}`
    : `${r.kind}:${r.host.includes(':') ? `[${r.host}]` : r.host}:${r.port}`;
}

function connectSocket(r: Remote, remote: string, creds: TlsFiles | undefined): net.Socket {
  if (r.kind === 'unix') return net.connect({ path: r.path });
  if (r.kind === 'tcp') return net.connect({ host: r.host, port: r.port });
  if (creds === undefined)
    throw new OvsdbError(
      'SLUICE_E_USAGE',
      `${remote}: an ssl: remote needs a private key, a certificate and a CA certificate (--private-key, --certificate, --ca-cert)`,
    );
  let pem: { key: Buffer; cert: Buffer; ca: Buffer };
  try {
    pem = {
      key: readFileSync(creds.privateKey),
      cert: readFileSync(creds.certificate),
      ca: readFileSync(creds.caCert),
    };
  } catch (e) {
    throw new OvsdbError('SLUICE_E_IO', `${remote}: cannot read TLS files: ${(e as Error).message}`);
  }
  return tls.connect({
    host: r.host,
    port: r.port,
    ...pem,
    rejectUnauthorized: true,
    // Open vSwitch PKI: certificates name a role or node (CN), not a host; the CA is what is checked.
    checkServerIdentity: () => undefined,
  });
}

interface Pending {
  readonly method: string;
  readonly resolve: (v: unknown) => void;
  readonly reject: (e: Error) => void;
  readonly timer: NodeJS.Timeout | undefined;
}

export interface JsonRpcHandlers {
  /** A notification ("id": null) from the server, e.g. update2, locked, stolen. */
  onNotification(method: string, params: readonly unknown[]): void;
  /** The connection ended; `error` says why when it was not a close we asked for. */
  onClose(error: Error | undefined): void;
  /** The server sent an "echo" request (its inactivity probe) and we answered it. */
  onEcho?(): void;
}

export class JsonRpcConnection {
  readonly remote: string;
  readonly #socket: net.Socket;
  readonly #splitter = new JsonSplitter();
  readonly #pending = new Map<number | string, Pending>();
  readonly #handlers: JsonRpcHandlers;
  #nextId = 1;
  #closed = false;
  /** Time (ms, monotonic) the last message arrived; the keepalive reads it. */
  lastReceived = performance.now();
  /** Counts server-initiated echo requests answered (observability and tests). */
  echoesAnswered = 0;
  /** Bytes received so far (a monitor measures its snapshot with it; the keepalive scales with that). */
  bytesReceived = 0;

  private constructor(remote: string, socket: net.Socket, handlers: JsonRpcHandlers) {
    this.remote = remote;
    this.#socket = socket;
    this.#handlers = handlers;
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (e: Error) => this.#shutdown(e));
    socket.on('close', () =>
      this.#shutdown(new OvsdbError('SLUICE_E_OVSDB_DISCONNECTED', `${remote}: connection closed`)),
    );
  }

  /** Opens a connection; rejects with SLUICE_E_OVSDB_CONNECT when the socket cannot be opened in `timeoutMs`. */
  static open(
    remote: string,
    handlers: JsonRpcHandlers,
    timeoutMs: number,
    creds?: TlsFiles,
  ): Promise<JsonRpcConnection> {
    const r = parseRemote(remote);
    return new Promise((resolve, reject) => {
      const socket = connectSocket(r, remote, creds);
      const ready = r.kind === 'ssl' ? 'secureConnect' : 'connect';
      const timer = setTimeout(() => {
        socket.destroy();
        reject(
          new OvsdbError('SLUICE_E_OVSDB_CONNECT', `${remote}: connect timed out after ${timeoutMs} ms`),
        );
      }, timeoutMs);
      const onError = (e: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(new OvsdbError('SLUICE_E_OVSDB_CONNECT', `${remote}: ${e.message}`));
      };
      socket.once('error', onError);
      socket.once(ready, () => {
        clearTimeout(timer);
        socket.off('error', onError);
        socket.setNoDelay(true);
        resolve(new JsonRpcConnection(remote, socket, handlers));
      });
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Sends a request; resolves with "result", rejects with OvsdbError when "error" is non-null. */
  request(method: string, params: readonly unknown[], timeoutMs = 0): Promise<unknown> {
    if (this.#closed) {
      return Promise.reject(
        new OvsdbError('SLUICE_E_OVSDB_DISCONNECTED', `${this.remote}: not connected`, { method }),
      );
    }
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer =
        timeoutMs > 0
          ? setTimeout(() => {
              this.#pending.delete(id);
              reject(
                new OvsdbError(
                  'SLUICE_E_OVSDB_TIMEOUT',
                  `${this.remote}: ${method} got no reply in ${timeoutMs} ms`,
                  { method },
                ),
              );
            }, timeoutMs)
          : undefined;
      this.#pending.set(id, { method, resolve, reject, timer });
      this.#write({ method, params, id });
    });
  }

  /** Sends a notification (no reply expected). */
  notify(method: string, params: readonly unknown[]): void {
    this.#write({ method, params, id: null });
  }

  close(): void {
    this.#shutdown(undefined);
  }

  #write(msg: unknown): void {
    if (this.#closed) return;
    this.#socket.write(JSON.stringify(msg));
  }

  #onData(chunk: Buffer): void {
    // Any bytes mean the peer is alive: a large message (a monitor update of thousands of rows) from a server that is
    // short of CPU can take longer than the probe's silence limit to arrive complete.
    this.lastReceived = performance.now();
    this.bytesReceived += chunk.length;
    let texts: string[];
    try {
      texts = this.#splitter.push(chunk);
    } catch (e) {
      const msg = e instanceof FramingError ? e.message : String(e);
      this.#shutdown(new OvsdbError('SLUICE_E_OVSDB_PROTOCOL', `${this.remote}: ${msg}`));
      return;
    }
    for (const text of texts) {
      if (this.#closed) return;
      let msg: unknown;
      try {
        msg = JSON.parse(text);
      } catch (e) {
        this.#shutdown(
          new OvsdbError('SLUICE_E_OVSDB_PROTOCOL', `${this.remote}: invalid JSON: ${(e as Error).message}`),
        );
        return;
      }
      this.#dispatch(msg);
    }
  }

  #dispatch(msg: unknown): void {
    if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) {
      this.#shutdown(
        new OvsdbError('SLUICE_E_OVSDB_PROTOCOL', `${this.remote}: message is not a JSON object`),
      );
      return;
    }
    const m = msg as { method?: unknown; params?: unknown; id?: unknown; result?: unknown; error?: unknown };
    if (typeof m.method === 'string') {
      const params = Array.isArray(m.params) ? (m.params as unknown[]) : [];
      if (m.id === null || m.id === undefined) {
        this.#handlers.onNotification(m.method, params);
      } else if (m.method === 'echo') {
        // 4.1.11: "The "echo" method can be used by both clients and servers to verify the liveness of a
        // database connection. ... The reply ... "result": [same as "params"]".
        this.echoesAnswered++;
        this.#handlers.onEcho?.();
        this.#write({ id: m.id, result: params, error: null });
      } else {
        this.#write({ id: m.id, result: null, error: { error: 'unknown method', details: m.method } });
      }
      return;
    }
    const id = m.id as number | string;
    const p = this.#pending.get(id);
    if (p === undefined) return; // a reply to a request that already timed out
    this.#pending.delete(id);
    if (p.timer !== undefined) clearTimeout(p.timer);
    if (m.error !== null && m.error !== undefined) {
      const err = m.error as { error?: unknown; details?: unknown };
      const ovsdbError =
        typeof err === 'object' && typeof err.error === 'string' ? err.error : JSON.stringify(m.error);
      const details = typeof err === 'object' && typeof err.details === 'string' ? err.details : undefined;
      p.reject(
        new OvsdbError(
          'SLUICE_E_OVSDB_RPC',
          `${this.remote}: ${p.method}: ${ovsdbError}${details ? ` (${details})` : ''}`,
          {
            method: p.method,
            ovsdbError,
            details,
          },
        ),
      );
      return;
    }
    p.resolve(m.result);
  }

  #shutdown(error: Error | undefined): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.destroy();
    const why = error ?? new OvsdbError('SLUICE_E_OVSDB_DISCONNECTED', `${this.remote}: connection closed`);
    for (const [, p] of this.#pending) {
      if (p.timer !== undefined) clearTimeout(p.timer);
      p.reject(
        new OvsdbError(
          'SLUICE_E_OVSDB_DISCONNECTED',
          `${this.remote}: ${p.method}: connection lost (${why.message})`,
          {
            method: p.method,
          },
        ),
      );
    }
    this.#pending.clear();
    this.#handlers.onClose(error);
  }
}
