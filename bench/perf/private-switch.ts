// A private ovsdb-server + ovs-vswitchd for benchmarks that need a real switch but no lab (not root): 3.1 with
// `--enable-dummy`, a `dummy` userspace datapath and one dummy port, everything in a temporary directory, both daemons
// started and stopped by their pid files. Used by vswitchd-scale.ts and bundle-split.ts.

import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { TLV_OPTIONS } from '../../src/compile/registry.ts';
import { tlvMapArg } from '../../src/flowset/diff.ts';
import { sleep } from './common.ts';

const run = promisify(execFile);
const MiB = 2 ** 20;

/** A private ovsdb-server + ovs-vswitchd in `dir` (every command runs with the OVS_* directories set to it). */
export class PrivateSwitch {
  readonly dir = mkdtempSync(join(tmpdir(), 'sluice-vsw-'));
  readonly env = {
    ...process.env,
    OVS_RUNDIR: this.dir,
    OVS_DBDIR: this.dir,
    OVS_LOGDIR: this.dir,
    OVS_SYSCONFDIR: this.dir,
  };
  vswitchdPid = 0;

  async cmd(file: string, args: readonly string[], timeout = 120_000): Promise<string> {
    return (await run(file, args, { env: this.env, timeout, maxBuffer: 64 * MiB })).stdout;
  }
  appctl(args: readonly string[], timeout = 120_000): Promise<string> {
    return this.cmd(
      'ovs-appctl',
      ['-t', `${this.dir}/ovs-vswitchd.${this.vswitchdPid}.ctl`, ...args],
      timeout,
    );
  }
  async start(): Promise<void> {
    const d = this.dir;
    await this.cmd('ovsdb-tool', ['create', `${d}/conf.db`, '/usr/share/openvswitch/vswitch.ovsschema']);
    await this.cmd('ovsdb-server', [
      `${d}/conf.db`,
      `--remote=punix:${d}/db.sock`,
      '--pidfile',
      '--detach',
      '--no-chdir',
      '--log-file',
    ]);
    await this.cmd('ovs-vsctl', ['--no-wait', 'init']);
    await this.cmd('ovs-vswitchd', [
      `unix:${d}/db.sock`,
      '--enable-dummy',
      '--pidfile',
      '--detach',
      '--no-chdir',
      '--log-file',
    ]);
    this.vswitchdPid = Number(readFileSync(`${d}/ovs-vswitchd.pid`, 'utf8').trim());
    await this.cmd('ovs-vsctl', [
      '--timeout=20',
      'add-br',
      'br-int',
      '--',
      'set',
      'bridge',
      'br-int',
      'datapath_type=dummy',
      '--',
      'add-port',
      'br-int',
      'p0',
      '--',
      'set',
      'interface',
      'p0',
      'type=dummy',
      'ofport_request=1',
    ]);
    await this.cmd('ovs-ofctl', ['-O', 'OpenFlow15', 'add-tlv-map', 'br-int', tlvMapArg(TLV_OPTIONS)]);
  }
  /** Stops the two daemons this object started (by their pid files), removes the directory. */
  async stop(): Promise<void> {
    for (const name of ['ovs-vswitchd', 'ovsdb-server']) {
      try {
        const pid = Number(readFileSync(`${this.dir}/${name}.pid`, 'utf8').trim());
        if (pid > 0) process.kill(pid, 'SIGTERM');
      } catch {
        /* not started */
      }
    }
    await sleep(500);
    rmSync(this.dir, { recursive: true, force: true });
  }
  status(field: 'VmRSS' | 'VmHWM'): number {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(
      readFileSync(`/proc/${this.vswitchdPid}/status`, 'utf8'),
    );
    return m ? Number(m[1]) / 1024 : Number.NaN;
  }
  /** utime + stime of ovs-vswitchd (all threads), ms. */
  cpuMs(): number {
    const f = readFileSync(`/proc/${this.vswitchdPid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
  }
  /** One bundle from `lines` through `/usr/bin/time ovs-ofctl bundle br-int -`; resolves with ovs-ofctl's peak RSS. */
  bundle(lines: readonly string[]): Promise<number> {
    return new Promise((resolve, reject) => {
      const child: ChildProcess = spawn(
        '/usr/bin/time',
        ['-f', 'maxrss=%M', 'ovs-ofctl', '-O', 'OpenFlow15', 'bundle', 'br-int', '-'],
        { env: this.env, stdio: ['pipe', 'ignore', 'pipe'] },
      );
      let err = '';
      child.stderr!.on('data', (d: Buffer) => {
        err += d.toString();
      });
      child.on('error', reject);
      child.on('exit', (code) => {
        const m = /maxrss=(\d+)/.exec(err);
        if (code === 0 && m) resolve(Number(m[1]) / 1024);
        else reject(new Error(`ovs-ofctl bundle: exit ${code}: ${err.slice(0, 500)}`));
      });
      child.stdin!.end(`${lines.join('\n')}\n`);
    });
  }
}
