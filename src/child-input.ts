// Feeding a child process its stdin without letting the child's early exit crash this process.

import type { ChildProcess } from 'node:child_process';

/**
 * Text for a child's stdin: one string, or chunks rendered as they are written (a large `ovs-ofctl bundle` file is
 * streamed that way, never held whole: src/flowset/diff.ts bundleChunks).
 */
export type ChildInput = string | Iterable<string | Uint8Array>;

/**
 * Writes `input` to a child's stdin and closes it; chunks are taken from the iterable only as fast as the pipe
 * drains, so at most about one chunk waits in memory. A child that exits without reading its stdin (a probe that
 * fails at once, `ip netns exec` on a namespace that is gone) makes the write fail with EPIPE. That is not the
 * child's error (its exit status says how it went), and a stdin 'error' event with no listener would end this whole
 * process: a health probe once took a host agent down that way. After such an error no more chunks are rendered.
 */
export function endStdin(child: ChildProcess, input: ChildInput = ''): void {
  const stdin = child.stdin;
  if (!stdin) return;
  let failed = false;
  stdin.on('error', () => {
    failed = true;
  });
  if (typeof input === 'string') {
    stdin.end(input);
    return;
  }
  const chunks = input[Symbol.iterator]();
  const pump = (): void => {
    for (;;) {
      if (failed || stdin.destroyed) return;
      const next = chunks.next();
      if (next.done) {
        stdin.end();
        return;
      }
      if (!stdin.write(next.value)) {
        stdin.once('drain', pump);
        return;
      }
    }
  };
  pump();
}
