// Real OVN central for the e2e tests: Debian ovn-central's Northbound and Southbound ovsdb-servers on OVN's own
// schemas and ovn-northd, started in a directory of the test's own, driven with ovn-nbctl/ovn-sbctl (execFile, no
// shell, deadlines). Every process is stopped by its own PID.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type OvsdbServerProcess, startStandalone } from '../../../src/ovsdb/server.ts';

const run = promisify(execFile);
export const OVN_SHARE = '/usr/share/ovn';
export const haveOvnCentral =
  existsSync(join(OVN_SHARE, 'ovn-nb.ovsschema')) && existsSync('/usr/bin/ovn-northd');

export interface OvnCentral {
  readonly nb: OvsdbServerProcess;
  readonly sb: OvsdbServerProcess;
  nbctl(...args: string[]): Promise<string>;
  sbctl(...args: string[]): Promise<string>;
  stop(): Promise<void>;
}

async function ctl(cmd: string, db: string, args: readonly string[]): Promise<string> {
  const { stdout } = await run(cmd, [`--db=${db}`, '--timeout=10', ...args], { timeout: 15_000 });
  return stdout.trim();
}

/** NB and SB ovsdb-servers plus ovn-northd under `dir`. */
export async function startOvnCentral(dir: string): Promise<OvnCentral> {
  const nb = await startStandalone(dir, join(OVN_SHARE, 'ovn-nb.ovsschema'), 'nb');
  const sb = await startStandalone(dir, join(OVN_SHARE, 'ovn-sb.ovsschema'), 'sb');
  const northd: ChildProcess = spawn(
    'ovn-northd',
    [
      `--ovnnb-db=${nb.unixRemote}`,
      `--ovnsb-db=${sb.unixRemote}`,
      `--unixctl=${join(dir, 'northd.ctl')}`,
      `--log-file=${join(dir, 'northd.log')}`,
      '-vconsole:off',
    ],
    { stdio: 'ignore' },
  );
  return {
    nb,
    sb,
    nbctl: (...args) => ctl('ovn-nbctl', nb.unixRemote, args),
    sbctl: (...args) => ctl('ovn-sbctl', sb.unixRemote, args),
    async stop() {
      if (northd.pid !== undefined && northd.exitCode === null) {
        const exited = new Promise((r) => northd.once('exit', r));
        northd.kill('SIGTERM');
        await exited;
      }
      await Promise.all([nb.stop(), sb.stop()]);
    },
  };
}
