// Feeding a child process its stdin without letting the child's early exit crash this process.

import type { ChildProcess } from 'node:child_process';

/**
 * Writes `input` to a child's stdin and closes it. A child that exits without reading its stdin (a probe that fails
 * at once, `ip netns exec` on a namespace that is gone) makes the write fail with EPIPE. That is not the child's
 * error (its exit status says how it went), and a stdin 'error' event with no listener would end this whole process:
 * a health probe once took a host agent down that way.
 */
export function endStdin(child: ChildProcess, input = ''): void {
  child.stdin?.on('error', () => {});
  child.stdin?.end(input);
}
