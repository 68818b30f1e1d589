// `sluice explain`: the hash, slot, backend, chain and host of one 5-tuple, in a config file's first generation or
// the generation the store published. Reads files/the store, calls the pure core (src/explain.ts), prints.

import type { Command } from 'commander';
import { DATAPATHS, type Datapath, explain, type TupleHash, tupleHash } from '../explain.ts';
import { SluiceError } from '../model/errors.ts';
import { parseIp } from '../model/ip.ts';
import type { Config, Protocol } from '../model/types.ts';
import { planNext } from '../rollout/planner.ts';
import type { Generation } from '../rollout/types.ts';
import { publishedState } from '../store/operator.ts';
import { defaultDb, readConfigFile } from './store-commands.ts';

function print(text: string): void {
  process.stdout.write(`${text}\n`);
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

function parseDatapath(text: string): Datapath {
  const d = DATAPATHS.find((x) => x === text);
  if (d === undefined)
    throw new SluiceError('SLUICE_E_USAGE', `--datapath: expected ${DATAPATHS.join(', ')}, got "${text}"`);
  return d;
}

export function initialGeneration(config: Config): Generation {
  return planNext({ config, latest: null, connections: () => 0, now: 0 }).next!;
}

export function registerExplainCommand(program: Command): void {
  program
    .command('explain')
    .description('which hash, slot, backend, second chance and host a packet with this 5-tuple takes')
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
    .option(
      '--hash <value>',
      "the data-plane hash (default: computed from the 5-tuple as the gateway's OVS does)",
    )
    .option('--datapath <kind>', `the gateways' datapath: ${DATAPATHS.join(' | ')}`, 'netdev')
    .option('--json', 'machine-readable output', false)
    .action(
      async (
        proto: string,
        src: string,
        sport: string,
        dst: string,
        dport: string,
        o: { file?: string; db?: string; format: string; hash?: string; datapath: string; json: boolean },
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
        const datapath = parseDatapath(o.datapath);
        const computed: TupleHash =
          o.hash === undefined
            ? tupleHash(config.hashMode, tuple, datapath)
            : { known: true, hash: parseHash(o.hash), how: 'given with --hash' };
        if (!computed.known) {
          print(`hash of this packet cannot be known in hashMode ${config.hashMode}: ${computed.why}`);
          process.exitCode = 1;
          return;
        }
        const result = explain(config, generation, tuple, computed.hash);
        if (o.json || o.format === 'json') {
          print(JSON.stringify(result.found ? { ...result, hashHow: computed.how } : result, null, 2));
        } else if (!result.found) {
          print(result.reason);
          process.exitCode = 1;
        } else {
          print(
            [
              `load balancer  ${result.lb} (generation ${result.generation}, k=${result.bits})`,
              `hash           0x${result.hash.toString(16).padStart(8, '0')} (${computed.how}) -> slot ${result.slot} (${result.phase})`,
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
}
