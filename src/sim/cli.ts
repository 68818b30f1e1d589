// `sluice sim`: runs a named scenario or a trace file through every strategy and prints the tables.
// The edge around the pure simulator: reads the trace file, prints. The lead wires registerSimCommands into
// src/cli/main.ts.

import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { SluiceError } from '../model/errors.ts';
import { runSim } from './engine.ts';
import { formatResult, resultJson } from './report.ts';
import { findScenario, SCENARIOS } from './scenarios.ts';
import { parseTrace, SCALES, type Scale, type Trace } from './trace.ts';

export interface SimCliOptions {
  readonly trace?: string;
  readonly json?: boolean;
  readonly scale?: string;
  readonly seed?: string;
  readonly list?: boolean;
}

/** Resolves the trace to run from a scenario name or a trace file. Throws SluiceError on bad input. */
export function loadTrace(scenario: string | undefined, opts: SimCliOptions): Trace {
  const scale = (opts.scale ?? 'small') as Scale;
  if (!SCALES.includes(scale)) {
    throw new SluiceError('SLUICE_E_USAGE', `--scale must be one of ${SCALES.join(', ')}, got ${opts.scale}`);
  }
  if (opts.trace !== undefined) {
    if (scenario !== undefined)
      throw new SluiceError('SLUICE_E_USAGE', 'give a scenario name or --trace, not both');
    let text: string;
    try {
      text = readFileSync(opts.trace, 'utf8');
    } catch (e) {
      throw new SluiceError('SLUICE_E_IO', `cannot read trace ${opts.trace}: ${(e as Error).message}`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new SluiceError(
        'SLUICE_E_USAGE',
        `trace ${opts.trace} is not valid JSON: ${(e as Error).message}`,
      );
    }
    return parseTrace(json, scale);
  }
  const name = scenario ?? 'churn';
  const s = findScenario(name);
  if (s === undefined) {
    throw new SluiceError(
      'SLUICE_E_USAGE',
      `unknown scenario ${name}; known: ${SCENARIOS.map((x) => x.name).join(', ')}`,
    );
  }
  return s.build(scale);
}

export function listScenarios(): string {
  const w = Math.max(...SCENARIOS.map((s) => s.name.length));
  return SCENARIOS.map((s) => `${s.name.padEnd(w)}  ${s.description}`).join('\n');
}

export function registerSimCommands(program: Command): void {
  program
    .command('sim')
    .description(
      'simulate every load-balancing strategy on a named scenario or a trace file (docs/evaluation.md)',
    )
    .argument('[scenario]', 'named scenario (see --list); default churn')
    .option('--trace <file>', 'run a trace file (JSON, format in docs/evaluation.md)')
    .option('--json', 'print JSON instead of tables')
    .option(
      '--scale <scale>',
      'small (20k connections, fast) or full (1M connections, 100 gateways, 1000 backends)',
      'small',
    )
    .option('--seed <n>', 'random seed (connections, apply delays)', '1')
    .option('--list', 'list the named scenarios')
    .action((scenario: string | undefined, opts: SimCliOptions) => {
      if (opts.list) {
        process.stdout.write(`${listScenarios()}\n`);
        return;
      }
      const seed = Number(opts.seed ?? '1');
      if (!Number.isInteger(seed))
        throw new SluiceError('SLUICE_E_USAGE', `--seed must be an integer, got ${opts.seed}`);
      const trace = loadTrace(scenario, opts);
      const r = runSim(trace, { seed });
      process.stdout.write(
        opts.json ? `${JSON.stringify(resultJson(r), null, 2)}\n` : formatResult(r, 'text'),
      );
    });
}
