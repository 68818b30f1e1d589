// A TCP -> unix proxy to a store that an e2e test can cut: the agents given its remote reach the store only through
// it, so closing it cuts exactly them off (new connections refused, open ones dropped) while everything else keeps
// its session. The lab's daemons run in the root namespace and the store listens on a unix socket, which no
// packet filter inside the lab's namespaces could block.

import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';

export class StoreProxy {
  readonly #target: () => string;
  #server: Server | undefined;
  readonly #sockets = new Set<Socket>();
  port = 0;

  /** `target`: the store's unix socket path, read at each connection. */
  constructor(target: () => string) {
    this.#target = target;
  }

  /** `--db` for a daemon that must go through this proxy. */
  get remote(): string {
    return `tcp:127.0.0.1:${this.port}`;
  }

  /** Listens (again, on the same port after a cut). */
  async open(): Promise<void> {
    const server = createServer((c) => {
      const u = netConnect(this.#target());
      for (const x of [c, u]) {
        this.#sockets.add(x);
        x.on('error', () => {});
        x.on('close', () => {
          this.#sockets.delete(x);
          c.destroy();
          u.destroy();
        });
      }
      c.pipe(u);
      u.pipe(c);
    });
    this.#server = server;
    await new Promise<void>((r) => server.listen(this.port, '127.0.0.1', () => r()));
    this.port = (server.address() as { port: number }).port;
  }

  /** Stops listening and drops every connection through it. */
  cut(): void {
    this.#server?.close();
    this.#server = undefined;
    for (const x of this.#sockets) x.destroy();
  }
}
