// `sluice ovn sync`: serve OVN's load balancers (those with external_ids:sluice=true) from sluice's store. A daemon
// by default; `--once` syncs once and exits, `--dry-run` prints the diff and what would be skipped, writing nothing.
// The work is in src/ovn (translate.ts pure, sync.ts the I/O); docs/ovn.md.

import type { Command } from 'commander';
import { pino } from 'pino';
import { SluiceError } from '../model/errors.ts';
import { OvnSync, type SyncResult } from '../ovn/sync.ts';
import { formatNote, formatSkipped, UNBOUND_HOLD_MS } from '../ovn/translate.ts';
import { formatChanges } from '../store/config-diff.ts';
import { tlsFiles, tlsOptions } from './daemons.ts';
import { defaultDb } from './store-commands.ts';

interface OvnSyncCliOptions {
  nb: string;
  sb: string;
  db?: string;
  once: boolean;
  dryRun: boolean;
  timeout: string;
  unboundHold: string;
  format: string;
  logLevel: string;
  privateKey?: string;
  certificate?: string;
  caCert?: string;
}

function resultText(r: SyncResult, dryRun: boolean): string {
  const head = dryRun
    ? `dry run: nothing written (desired_cfg ${r.desiredCfg})`
    : r.changed
      ? `desired_cfg ${r.desiredCfg}`
      : `no change (desired_cfg ${r.desiredCfg})`;
  return [formatChanges(r.changes), ...r.skipped.map(formatSkipped), ...r.notes.map(formatNote), head].join(
    '\n',
  );
}

function resultJson(r: SyncResult, dryRun: boolean) {
  return { ok: true, dryRun, ...r };
}

/** The daemon: logs every write, and the skipped rows and notes whenever they change. */
async function runSyncDaemon(sync: OvnSync, logLevel: string, holdMs: number): Promise<void> {
  const log = pino(
    { name: 'sluice-ovn-sync', level: logLevel, base: { pid: process.pid } },
    pino.destination(2),
  );
  let lastReport = '';
  const stop = sync.watch(
    (r) => {
      if (r.changed)
        log.info(
          { event: 'synced', desiredCfg: r.desiredCfg, changes: r.changes },
          `wrote desired_cfg ${r.desiredCfg}:\n${formatChanges(r.changes)}`,
        );
      const report = JSON.stringify([r.skipped, r.notes]);
      if (report === lastReport) return;
      lastReport = report;
      for (const s of r.skipped) log.warn({ event: 'skipped', ...s }, formatSkipped(s));
      for (const n of r.notes) log.info({ event: 'note', ...n }, formatNote(n));
      log.info(
        { event: 'serving', skipped: r.skipped.length, notes: r.notes.length },
        `in sync; ${r.skipped.length} row(s) skipped`,
      );
    },
    (e) =>
      log.error(
        { event: 'sync-failed', err: e.message },
        `sync failed (retried on the next change): ${e.message}`,
      ),
    holdMs,
  );
  log.info({ event: 'start' }, 'watching OVN Northbound and Southbound');
  await new Promise<void>((resolve) => {
    const on = () => {
      process.off('SIGTERM', on);
      process.off('SIGINT', on);
      resolve();
    };
    process.on('SIGTERM', on);
    process.on('SIGINT', on);
  });
  stop();
  log.info({ event: 'stop' }, 'stopping');
}

export function registerOvnCommands(program: Command): void {
  const ovn = program.command('ovn').description("OVN integration: serve OVN's load balancers");
  tlsOptions(ovn.command('sync'))
    .description(
      'keep the desired state equal to the OVN load balancers with external_ids:sluice=true (docs/ovn.md)',
    )
    .requiredOption(
      '--nb <remotes>',
      "OVN Northbound database: unix:/path or tcp:host:port (ovn-nbctl's --db)",
    )
    .requiredOption('--sb <remotes>', 'OVN Southbound database: unix:/path or tcp:host:port')
    .option('--db <remotes>', "sluice's store (default: $SLUICE_DB, else unix:/run/sluice/db.sock)")
    .option('--once', 'sync once and exit', false)
    .option('--dry-run', 'print the diff and what would be skipped; write nothing', false)
    .option('--timeout <seconds>', 'deadline of connecting and of every request', '10')
    .option(
      '--unbound-hold <seconds>',
      "daemon: how long a backend stays on its host after its port lost its chassis (a live migration's switch-over); 0 = none",
      String(UNBOUND_HOLD_MS / 1000),
    )
    .option('--format <format>', 'text | json (--once, --dry-run)', 'text')
    .option('--log-level <level>', 'pino level (daemon)', 'info')
    .action(async (o: OvnSyncCliOptions) => {
      const timeout = Number(o.timeout);
      if (!Number.isFinite(timeout) || timeout <= 0)
        throw new SluiceError('SLUICE_E_USAGE', `--timeout: expected seconds > 0, got "${o.timeout}"`);
      const hold = Number(o.unboundHold);
      if (!Number.isFinite(hold) || hold < 0 || hold > 300)
        throw new SluiceError(
          'SLUICE_E_USAGE',
          `--unbound-hold: expected seconds from 0 to 300, got "${o.unboundHold}"`,
        );
      if (o.format !== 'text' && o.format !== 'json')
        throw new SluiceError('SLUICE_E_USAGE', `--format: expected text or json, got "${o.format}"`);
      const sync = await OvnSync.open({
        nb: o.nb,
        sb: o.sb,
        db: o.db ?? defaultDb(),
        timeoutMs: timeout * 1000,
        tls: tlsFiles(o),
      });
      try {
        if (!o.once && !o.dryRun) return await runSyncDaemon(sync, o.logLevel, hold * 1000);
        const r = await sync.syncOnce(o.dryRun);
        process.stdout.write(
          `${o.format === 'json' ? JSON.stringify(resultJson(r, o.dryRun)) : resultText(r, o.dryRun)}\n`,
        );
      } finally {
        sync.close();
      }
    });
}
