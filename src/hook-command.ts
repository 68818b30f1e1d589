/**
 * Operator hook commands: the shell lines an operator hands the daemons (the planner's `--fence-cmd`, the
 * agent's `--withdraw-cmd`/`--announce-cmd`). One place so both daemons run them, time them out and report
 * their failure the same way.
 */
import { exec } from 'node:child_process';

/** Runs `cmd` through the shell; rejects with the command and its stderr (or the exit reason) on failure. */
export const runHookCommand = (cmd: string, timeoutMs = 30_000): Promise<void> =>
  new Promise<void>((resolve, reject) => {
    exec(cmd, { timeout: timeoutMs }, (err, _stdout, stderr) =>
      err ? reject(new Error(`${cmd}: ${stderr.trim() || err.message}`)) : resolve(),
    );
  });
