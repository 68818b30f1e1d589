// The `sluice` command. Reads files and arguments, calls the pure core, prints, sets the exit code.

import { Command, CommanderError } from 'commander';
import { registerLabCommands } from '../lab/cli.ts';
import { registerDemoCommand } from '../lab/demo.ts';
import { SluiceError } from '../model/errors.ts';
import { planRolloutDetailed } from '../rollout/planner.ts';
import { formatPool, formatRollout, summarizePool, summarizeRollout } from '../rollout/summary.ts';
import { configWarnings, formatWarnings } from '../rollout/warnings.ts';
import { registerSimCommands } from '../sim/cli.ts';
import { registerDaemonCommands } from './daemons.ts';
import { initialGeneration, registerExplainCommand } from './explain.ts';
import { generationJson } from './json.ts';
import { registerOvnCommands } from './ovn.ts';
import { registerRolloutCommand } from './rollout.ts';
import { exitCodeFor, readConfigFile, registerStoreCommands, reportInternal } from './store-commands.ts';

export function buildProgram(): Command {
  const program = new Command('sluice')
    .description('stateless L4 load balancer for Open vSwitch')
    .version('0.1.0')
    .showHelpAfterError()
    .exitOverride();

  program
    .command('plan')
    .description('print the slot tables of a config, and the generations a change from --from rolls out in')
    .requiredOption('-f, --file <lb.yaml>', 'desired state (YAML or JSON)')
    .option('--from <old.yaml>', 'the current state the change starts from')
    .option('--json', 'machine-readable output', false)
    .action((o: { file: string; from?: string; json: boolean }) => {
      const to = readConfigFile(o.file);
      const from = o.from === undefined ? undefined : readConfigFile(o.from);
      const warnings = configWarnings(to);
      process.stderr.write(formatWarnings(warnings));
      if (from === undefined) {
        const gen = initialGeneration(to);
        if (o.json) {
          const pools = [...gen.pools.values()].map((p) =>
            summarizePool(
              p,
              to.loadBalancers.find((lb) => lb.name === p.lb),
            ),
          );
          print(JSON.stringify({ generation: generationJson(gen), summary: pools, warnings }, null, 2));
        } else {
          for (const p of gen.pools.values())
            print(
              formatPool(
                summarizePool(
                  p,
                  to.loadBalancers.find((lb) => lb.name === p.lb),
                ),
              ),
            );
        }
        return;
      }
      const plan = planRolloutDetailed(from, to);
      if (o.json) {
        print(
          JSON.stringify(
            {
              generations: plan.generations.map(generationJson),
              steps: summarizeRollout(plan.generations),
              notes: plan.notes,
              warnings,
            },
            null,
            2,
          ),
        );
      } else {
        print(formatRollout(to, plan.generations));
      }
    });

  registerExplainCommand(program);
  registerLabCommands(program);
  registerDemoCommand(program);
  registerSimCommands(program);
  registerDaemonCommands(program);
  registerStoreCommands(program);
  registerRolloutCommand(program);
  registerOvnCommands(program);
  return program;
}

function print(text: string): void {
  process.stdout.write(`${text}\n`);
}

export async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv as string[], { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    if (e instanceof SluiceError) {
      // The code goes on the first line: after the last line of a multi-line message (one line per config
      // problem) it read as a second code of the last problem.
      const nl = e.message.indexOf('\n');
      const head = nl < 0 ? e.message : e.message.slice(0, nl);
      process.stderr.write(`sluice: ${head} [${e.code}]${nl < 0 ? '' : e.message.slice(nl)}\n`);
      return exitCodeFor(e.code);
    }
    return reportInternal(e);
  }
}
