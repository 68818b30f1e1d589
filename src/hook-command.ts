/**
 * Operator hook commands: the shell lines an operator hands the daemons (the planner's `--fence-cmd`, the
 * agent's `--withdraw-cmd`/`--announce-cmd`). One place so both daemons run them, time them out and report
 * their failure the same way.
 *
 * Data never becomes shell text: the template is the operator's own line, run as `sh -c TEMPLATE sluice-hook NODE`,
 * so the node's name reaches it only as the positional parameter `$1` and the environment variable `SLUICE_NODE`
 * (a name read from the store cannot smuggle `;` or `$(...)` into the command). `{node}` in a template is kept for
 * existing command lines: it is rewritten to `"$1"` (a quoted parameter reference, never the name itself).
 */
import { execFile } from 'node:child_process';

/** `{node}` -> `"$1"`: the template refers to the node; the name itself stays out of the shell text. */
export function hookTemplate(template: string): string {
  return template.replaceAll('{node}', '"$1"');
}

/** Runs the operator's `template` through /bin/sh with `node` as `$1` and SLUICE_NODE; rejects with the template
 *  and its stderr (or the exit reason) on failure. */
export const runHookCommand = (template: string, node: string, timeoutMs = 30_000): Promise<void> =>
  new Promise<void>((resolve, reject) => {
    execFile(
      '/bin/sh',
      ['-c', hookTemplate(template), 'sluice-hook', node],
      { timeout: timeoutMs, env: { ...process.env, SLUICE_NODE: node } },
      (err, _stdout, stderr) =>
        err
          ? reject(new Error(`${template} (node ${JSON.stringify(node)}): ${stderr.trim() || err.message}`))
          : resolve(),
    );
  });
