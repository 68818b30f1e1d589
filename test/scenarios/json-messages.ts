// For FAKE OVSDB servers in unit tests: the clients under test write whole messages, so a naive scan that is
// independent of the real framer (src/ovsdb/framing.ts) is enough to split them.
import type { Socket } from 'node:net';

/** End of the first whole JSON object in `s` (just past its closing brace), or -1. */
export function jsonEnd(s: string): number {
  let depth = 0;
  let inStr = false;
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    if (inStr) {
      if (ch === '\\') i++;
      else if (ch === '"') inStr = false;
    } else if (ch === '"') inStr = true;
    else if (ch === '{') depth++;
    else if (ch === '}' && --depth === 0) return i + 1;
  }
  return -1;
}

/** Calls `handle` with each whole JSON message the socket receives, in order; an async handler is awaited. */
// biome-ignore lint/suspicious/noExplicitAny: messages are whatever JSON the client sent
export function onJsonMessages(socket: Socket, handle: (msg: any) => void | Promise<void>): void {
  let buf = '';
  socket.on('data', async (chunk) => {
    buf += chunk.toString();
    for (;;) {
      const end = jsonEnd(buf);
      if (end < 0) return;
      const msg = JSON.parse(buf.slice(0, end));
      buf = buf.slice(end);
      await handle(msg);
    }
  });
}
