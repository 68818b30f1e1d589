// The simulator's engine against its previous version, same run, same machine: the strategies became objects
// (src/sim/strategies.ts, sluice-strategy.ts) instead of integer codes tested in the hot loops. This measures
// what that costs in run time and checks that both versions give the same numbers.
//
//   node --import tsx bench/sim-engine.ts      # runs, prints, writes docs/benchmarks.md (section sim-engine)
//
// The baseline is src/ at commit SIM_BASELINE_COMMIT (default: the last commit with integer strategy codes),
// extracted with `git archive` into node_modules/.cache (so its imports resolve); it needs the git history.
// Options (environment): SIM_BENCH_SCALE (small | full, default small), SIM_BENCH_REPS (default 5),
// SIM_BENCH_NO_WRITE=1 (print only).

import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { runSim as RunSim } from '../src/sim/engine.ts';
import { runSim } from '../src/sim/engine.ts';
import { findScenario } from '../src/sim/scenarios.ts';
import type { Scale } from '../src/sim/trace.ts';
import { finish, machine, machineLine, median, ratio, say, writeSection } from './perf/common.ts';

const BASELINE = process.env.SIM_BASELINE_COMMIT ?? '83eb1f78464eaa001af9d779e636dcc8ee81aa40';
const SCALE = (process.env.SIM_BENCH_SCALE ?? 'small') as Scale;
const REPS = Number(process.env.SIM_BENCH_REPS ?? 5);
const SCENARIOS = ['churn', 'rolling-update', 'gateway-crash-kernel'];

const root = fileURLToPath(new URL('..', import.meta.url));

/** Extracts src/ at `commit` and imports its runSim. */
async function baselineRunSim(commit: string): Promise<typeof RunSim> {
  const dir = `${root}node_modules/.cache/sluice-sim-baseline/${commit}`;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const tar = execFileSync('git', ['-C', root, 'archive', commit, 'src'], { maxBuffer: 1 << 28 });
  execFileSync('tar', ['-x', '-C', dir], { input: tar });
  const mod = (await import(pathToFileURL(`${dir}/src/sim/engine.ts`).href)) as { runSim: typeof RunSim };
  return mod.runSim;
}

/** A result without its run time and trace: what must be equal between the two versions. */
function numbers(r: ReturnType<typeof RunSim>): string {
  const { runtimeMs: _t, trace: _tr, ...rest } = r;
  return JSON.stringify(rest);
}

interface Row {
  readonly scenario: string;
  readonly baselineMs: number;
  readonly objectsMs: number;
  readonly same: boolean;
}

async function main(): Promise<void> {
  const m = machine();
  const before = await baselineRunSim(BASELINE);
  const rows: Row[] = [];
  for (const name of SCENARIOS) {
    const trace = findScenario(name)!.build(SCALE);
    // Warm-up (JIT) of both, then interleaved runs so that load on the shared machine hits both alike.
    const same = numbers(before(trace, { seed: 1 })) === numbers(runSim(trace, { seed: 1 }));
    const a: number[] = [];
    const b: number[] = [];
    for (let k = 0; k < REPS; k++) {
      a.push(before(trace, { seed: 1 }).runtimeMs);
      b.push(runSim(trace, { seed: 1 }).runtimeMs);
    }
    const row = { scenario: name, baselineMs: median(a), objectsMs: median(b), same };
    say(
      `${name}: baseline ${row.baselineMs.toFixed(0)} ms, objects ${row.objectsMs.toFixed(0)} ms, same ${same}`,
    );
    rows.push(row);
  }
  finish(m);
  const body = [
    '## Simulator engine: strategies as objects vs integer codes',
    '',
    machineLine(m, 'node --import tsx bench/sim-engine.ts'),
    '',
    `Scale ${SCALE}, seed 1, median of ${REPS} interleaved runs after one warm-up each; baseline = src/ at ` +
      `${BASELINE.slice(0, 12)}.`,
    '',
    '| scenario | integer codes (ms) | objects (ms) | objects / codes | same numbers |',
    '| --- | ---: | ---: | ---: | --- |',
    ...rows.map(
      (r) =>
        `| ${r.scenario} | ${r.baselineMs.toFixed(0)} | ${r.objectsMs.toFixed(0)} | ` +
        `${ratio(r.objectsMs, r.baselineMs)} | ${r.same ? 'yes' : 'NO'} |`,
    ),
  ].join('\n');
  process.stdout.write(`${body}\n`);
  if (rows.some((r) => !r.same)) {
    process.exitCode = 1;
    say('the two engines disagree: not writing docs/benchmarks.md');
    return;
  }
  if (process.env.SIM_BENCH_NO_WRITE !== '1') writeSection('sim-engine', body);
}

await main();
