// `sluice rollout status [--watch]`: how far the latest change has rolled out, like `kubectl rollout status`.
// With --watch it follows the store until every node acknowledged the latest generation and the planner has nothing
// more to publish, printing a line whenever progress changes; a rollout that does not finish within --timeout is
// stuck: exit 1, naming what it waits for.

import type { Command } from 'commander';
import { SluiceError } from '../model/errors.ts';
import { PlanCache } from '../rollout/plan-cache.ts';
import { STATUS_MONITOR, StoreSession } from '../store/operator.ts';
import { formatProgress, type RolloutProgress, rolloutProgress } from '../store/rollout-progress.ts';
import { defaultDb, reportFailure } from './store-commands.ts';

function seconds(name: string, text: string): number {
  const n = Number(text.endsWith('s') ? text.slice(0, -1) : text);
  if (!Number.isFinite(n) || n <= 0)
    throw new SluiceError('SLUICE_E_USAGE', `${name}: expected a number of seconds > 0, got "${text}"`);
  return n;
}

interface Options {
  readonly db?: string;
  readonly format: string;
  readonly watch: boolean;
  readonly timeout: string;
}

function output(p: RolloutProgress, json: boolean, stuck = false): string {
  if (json) return JSON.stringify({ ...p, ...(stuck ? { stuck: true } : {}) });
  return formatProgress(p);
}

/** Follows the store until the rollout is done (resolves true) or `timeoutMs` passes (false). */
async function watch(s: StoreSession, json: boolean, timeoutMs: number): Promise<RolloutProgress> {
  let last = '';
  // One planner's memory across the watch: each re-evaluation steps what changed, not every pool.
  const cache = new PlanCache();
  let current = rolloutProgress(s.replica, Date.now(), cache);
  const show = () => {
    current = rolloutProgress(s.replica, Date.now(), cache);
    const line = output(current, json);
    if (line !== last) process.stdout.write(`${line}\n`);
    last = line;
    return current.done;
  };
  if (show()) return current;
  // Updates drive progress; a 1 s tick re-evaluates what depends on the clock (connection reports, drain windows).
  await new Promise<void>((resolve) => {
    const finish = () => {
      clearTimeout(timer);
      clearInterval(tick);
      s.monitor.off('update', onUpdate);
      resolve();
    };
    const onUpdate = () => {
      if (show()) finish();
    };
    const timer = setTimeout(finish, timeoutMs);
    const tick = setInterval(onUpdate, 1000);
    s.monitor.on('update', onUpdate);
  });
  return current;
}

export function registerRolloutCommand(program: Command): void {
  const rollout = program.command('rollout').description('follow the rollout of desired-state changes');
  rollout
    .command('status')
    .description(
      'how far the latest change has rolled out: generations, acknowledgements per gateway and host, phases',
    )
    .option(
      '--db <remotes>',
      'OVSDB remotes, comma separated (default: $SLUICE_DB, else unix:/run/sluice/db.sock)',
    )
    .option('--format <format>', 'text | json (one JSON object per line with --watch)', 'text')
    .option('-w, --watch', 'follow until every node acknowledged the latest change', false)
    .option('--timeout <seconds>', 'with --watch: a rollout not done by then is stuck (exit 1)', '300')
    .action(async (o: Options) => {
      const json = o.format === 'json';
      try {
        if (o.format !== 'text' && !json)
          throw new SluiceError('SLUICE_E_USAGE', `--format: expected text or json, got "${o.format}"`);
        const timeoutMs = seconds('--timeout', o.timeout) * 1000;
        const s = await StoreSession.open(o.db ?? defaultDb(), STATUS_MONITOR);
        try {
          if (!o.watch) {
            process.stdout.write(`${output(rolloutProgress(s.replica), json)}\n`);
            return;
          }
          const p = await watch(s, json, timeoutMs);
          if (p.done) return;
          if (json) process.stdout.write(`${output(p, true, true)}\n`);
          process.stderr.write(
            `sluice: rollout stuck: generation ${p.generation} not done after ${timeoutMs / 1000} s; waiting for ${p.waitingFor} [SLUICE_E_ROLLOUT_STUCK]\n`,
          );
          process.exitCode = 1;
        } finally {
          s.close();
        }
      } catch (e) {
        reportFailure(e, json ? 'json' : 'text');
      }
    });
}
