// The `sluice` command. Reads files and arguments, calls the pure core, prints, sets the exit code.

import { Command, CommanderError } from 'commander';
import { explain } from '../explain.ts';
import { registerLabCommands } from '../lab/cli.ts';
import { registerDemoCommand } from '../lab/demo.ts';
import { SluiceError } from '../model/errors.ts';
import { parseIp } from '../model/ip.ts';
import type { Config, Protocol } from '../model/types.ts';
import { planNext, planRolloutDetailed } from '../rollout/planner.ts';
import { formatPool, formatRollout, summarizePool, summarizeRollout } from '../rollout/summary.ts';
import type { Generation } from '../rollout/types.ts';
import { configWarnings, formatWarnings } from '../rollout/warnings.ts';
import { registerSimCommands } from '../sim/cli.ts';
import { publishedState } from '../store/operator.ts';
import { registerDaemonCommands } from './daemons.ts';
import { generationJson } from './json.ts';
import { registerOvnCommands } from './ovn.ts';
import { registerRolloutCommand } from './rollout.ts';
import {
  defaultDb,
  exitCodeFor,
  readConfigFile,
  registerStoreCommands,
  reportInternal,
} from './store-commands.ts';

function initialGeneration(config: Config): Generation {
  return planNext({ config, latest: null, connections: () => 0, now: 0 }).next!;
}

function parsePort(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new SluiceError('SLUICE_E_USAGE', `${name}: expected a port 0..65535, got "${text}"`);
  return n;
}

function parseAddress(name: string, text: string): string {
  if (parseIp(text) === undefined)
    throw new SluiceError('SLUICE_E_USAGE', `${name}: not an IPv4 or IPv6 address: "${text}"`);
  return text;
}

function parseHash(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff)
    throw new SluiceError(
      'SLUICE_E_USAGE',
      `--hash: expected an unsigned 32-bit integer (decimal or 0x..), got "${text}"`,
    );
  return n;
}

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

  program
    .command('explain')
    .description('which slot, backend, second chance and host a packet takes (for a given data-plane hash)')
    .option(
      '-f, --file <lb.yaml>',
      'desired state (YAML or JSON); without it: the latest generation in the store',
    )
    .option('--db <remotes>', 'OVSDB remotes (default: $SLUICE_DB, else unix:/run/sluice/db.sock)')
    .option('--format <format>', 'text | json (json = --json)', 'text')
    .argument('<proto>', 'tcp or udp')
    .argument('<src>', 'client address')
    .argument('<sport>', 'client port')
    .argument('<dst>', 'VIP')
    .argument('<dport>', 'VIP port')
    .option('--hash <value>', 'the data-plane hash of the packet (dp_hash or fields hash)', '0')
    .option('--json', 'machine-readable output', false)
    .action(
      async (
        proto: string,
        src: string,
        sport: string,
        dst: string,
        dport: string,
        o: { file?: string; db?: string; format: string; hash: string; json: boolean },
      ) => {
        if (proto !== 'tcp' && proto !== 'udp')
          throw new SluiceError('SLUICE_E_USAGE', `<proto>: expected tcp or udp, got "${proto}"`);
        const tuple = {
          proto: proto as Protocol,
          src: parseAddress('<src>', src),
          sport: parsePort('<sport>', sport),
          dst: parseAddress('<dst>', dst),
          dport: parsePort('<dport>', dport),
        };
        const { config, generation } =
          o.file === undefined
            ? await publishedState(o.db ?? defaultDb())
            : (() => {
                const c = readConfigFile(o.file);
                return { config: c, generation: initialGeneration(c) };
              })();
        const result = explain(config, generation, tuple, parseHash(o.hash));
        if (o.json || o.format === 'json') {
          print(JSON.stringify(result, null, 2));
        } else if (!result.found) {
          print(result.reason);
          process.exitCode = 1;
        } else {
          print(
            [
              `load balancer  ${result.lb} (generation ${result.generation}, k=${result.bits})`,
              `hash           0x${result.hash.toString(16).padStart(8, '0')} -> slot ${result.slot} (${result.phase})`,
              `primary        ${result.primary?.key ?? '(none: dropped)'}`,
              `second chance  ${result.second?.key ?? '(none)'}`,
              `chain          ${result.chain.length === 0 ? '(none)' : result.chain.map((m) => m.key).join(' -> ')}`,
              `host           ${result.host ?? '-'}${result.hostTunnelIp ? ` (tunnel ${result.hostTunnelIp})` : ''}`,
              `why            ${result.reason}`,
            ].join('\n'),
          );
        }
      },
    );

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
