// Real TCP_USER_TIMEOUT for the traffic harness's clients. Node has no setsockopt, so conn-runner cannot set the
// option itself; instead the runner starts with a tiny LD_PRELOAD library (C, compiled here once with the clang that
// scripts/ensure-deps.sh installs for the XDP programs, and cached) that wraps libc's connect(): every TCP socket the
// runner connects gets IPPROTO_TCP/TCP_USER_TIMEOUT = $SLUICE_TCP_USER_TIMEOUT_MS before its SYN leaves. A connection
// whose sent data then stays unacknowledged that long fails in the kernel with ETIMEDOUT, which the runner counts as
// broken (reason `timeout`), as a real client with that option would see it. If the option cannot be set, connect()
// fails instead (the runner counts the connection as failed): no client runs silently without it.
//
// The C source is kept here, not in a .c file, so the compiled package (dist/) can build it too.

import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { dirname } from 'node:path';
import { DEFAULT_RUN_ROOT } from './config.ts';
import { run } from './exec.ts';

/** The environment variable the library reads (milliseconds; unset or 0: it leaves sockets alone). */
export const USER_TIMEOUT_ENV = 'SLUICE_TCP_USER_TIMEOUT_MS';

const SOURCE = `#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>

typedef int (*connect_fn)(int, const struct sockaddr *, socklen_t);

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
  static connect_fn real;
  if (!real) real = (connect_fn)dlsym(RTLD_NEXT, "connect");
  const char *env = getenv("${USER_TIMEOUT_ENV}");
  unsigned int ms = env ? (unsigned int)strtoul(env, NULL, 10) : 0;
  int proto = 0;
  socklen_t plen = sizeof proto;
  if (ms > 0 && addr && (addr->sa_family == AF_INET || addr->sa_family == AF_INET6) &&
      getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &plen) == 0 && proto == IPPROTO_TCP &&
      setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof ms) != 0) {
    return -1; /* errno from setsockopt: the caller sees the connection fail */
  }
  return real(fd, addr, len);
}
`;

/** Builds in progress, by output path: the runners of one traffic start ask at once and share one build. */
const building = new Map<string, Promise<string>>();

/** Path of the compiled library (built on first use into `<cacheRoot>/bin/`, keyed by its source). */
export function tcpUserTimeoutLibrary(cacheRoot: string = DEFAULT_RUN_ROOT): Promise<string> {
  const digest = createHash('sha256').update(SOURCE).digest('hex').slice(0, 12);
  const out = `${cacheRoot}/bin/tcp-user-timeout-${digest}.so`;
  if (existsSync(out)) return Promise.resolve(out);
  let p = building.get(out);
  if (p === undefined) {
    p = build(out).finally(() => building.delete(out));
    building.set(out, p);
  }
  return p;
}

async function build(out: string): Promise<string> {
  mkdirSync(dirname(out), { recursive: true });
  // A name of its own: another process may build the same library at the same time (rename is atomic).
  const tmp = `${out}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await run('clang', ['-O2', '-Wall', '-Werror', '-shared', '-fPIC', '-x', 'c', '-', '-o', tmp, '-ldl'], {
    input: SOURCE,
    timeoutMs: 60_000,
  });
  renameSync(tmp, out);
  return out;
}
